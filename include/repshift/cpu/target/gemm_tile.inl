// gemm_tile.hpp's micro-kernel for one target: included in namespace
// repshift::cpu and again per extra target (simd_targets.hpp), after
// target/simd.inl. No include guard and no #include.

namespace detail {

constexpr int kTileRows = 6;
// Accumulators + one B row + the broadcast must fit the register file.
constexpr int kTileVecs = kVecRegisters >= 32 ? 4 : 2;
static_assert(kTileRows * kTileVecs + kTileVecs + 1 <= kVecRegisters, "tile must fit the vector registers");

template <int Rows, int Vecs>
inline void gemm_tile(std::int64_t k, const float* a, std::int64_t lda, const float* b, std::int64_t ldb, float* c,
                      std::int64_t ldc, const float* row_scale) {
  static_assert(Vecs >= 1 && Vecs <= 4, "one to four vectors of B per row");
  vfloat acc[Rows][Vecs];
  REPSHIFT_UNROLL for (int i = 0; i < Rows; ++i)
    REPSHIFT_UNROLL for (int j = 0; j < Vecs; ++j) acc[i][j] = row_scale ? loadv(c + i * ldc + j * kVec) * row_scale[i] : vfloat{};
  for (std::int64_t kk = 0; kk < k; ++kk) {
    // make_opaque keeps each B vector in a register: without it GCC folds
    // the B loads into every FMA that uses them, one load per FMA instead
    // of one per row of B. Named locals, not the array: the asm on an
    // array element kept the whole array in memory, one dead store per
    // vector of B per k.
    const float* brow = b + kk * ldb;
    vfloat b0 = loadv(brow), b1{}, b2{}, b3{};
    make_opaque(b0);
    if constexpr (Vecs > 1) { b1 = loadv(brow + kVec); make_opaque(b1); }
    if constexpr (Vecs > 2) { b2 = loadv(brow + 2 * kVec); make_opaque(b2); }
    if constexpr (Vecs > 3) { b3 = loadv(brow + 3 * kVec); make_opaque(b3); }
    const vfloat bv[4] = {b0, b1, b2, b3};
    REPSHIFT_UNROLL for (int i = 0; i < Rows; ++i) {
      const vfloat ai = broadcast<vfloat>(a[i * lda + kk]);
      REPSHIFT_UNROLL for (int j = 0; j < Vecs; ++j) acc[i][j] += ai * bv[j];
    }
  }
  REPSHIFT_UNROLL for (int i = 0; i < Rows; ++i)
    REPSHIFT_UNROLL for (int j = 0; j < Vecs; ++j) storev(c + i * ldc + j * kVec, acc[i][j]);
}

// The last rows < kTileRows of a panel: the tile of exactly that height.
template <int Vecs, int Rows = 1>
inline void gemm_rest_rows(int rows, std::int64_t k, const float* a, std::int64_t lda, const float* b,
                           std::int64_t ldb, float* c, std::int64_t ldc, const float* row_scale) {
  if constexpr (Rows < kTileRows) {
    if (rows == Rows) return gemm_tile<Rows, Vecs>(k, a, lda, b, ldb, c, ldc, row_scale);
    gemm_rest_rows<Vecs, Rows + 1>(rows, k, a, lda, b, ldb, c, ldc, row_scale);
  }
}

// Every row of one column panel: whole kTileRows blocks, then the rest.
template <int Vecs>
inline void gemm_panel(std::int64_t rows, std::int64_t k, const float* a, std::int64_t lda, const float* b,
                       std::int64_t ldb, float* c, std::int64_t ldc, const float* row_scale) {
  std::int64_t i = 0;
  for (; i + kTileRows <= rows; i += kTileRows)
    gemm_tile<kTileRows, Vecs>(k, a + i * lda, lda, b, ldb, c + i * ldc, ldc, row_scale ? row_scale + i : nullptr);
  if (i < rows)
    gemm_rest_rows<Vecs>(int(rows - i), k, a + i * lda, lda, b, ldb, c + i * ldc, ldc,
                         row_scale ? row_scale + i : nullptr);
}

// The last columns < kTileVecs vectors wide: the panel of exactly that width.
template <int Vecs = 1>
inline void gemm_rest_vecs(int vecs, std::int64_t rows, std::int64_t k, const float* a, std::int64_t lda,
                           const float* b, std::int64_t ldb, float* c, std::int64_t ldc, const float* row_scale) {
  if constexpr (Vecs < kTileVecs) {
    if (vecs == Vecs) return gemm_panel<Vecs>(rows, k, a, lda, b, ldb, c, ldc, row_scale);
    gemm_rest_vecs<Vecs + 1>(vecs, rows, k, a, lda, b, ldb, c, ldc, row_scale);
  }
}

}  // namespace detail

// C = row_scale (x) C + A B over `vecs` vectors of columns (C and B padded
// to whole vectors by the caller).
inline void gemm_tiled(std::int64_t rows, std::int64_t vecs, std::int64_t k, const float* a, std::int64_t lda,
                       const float* b, std::int64_t ldb, float* c, std::int64_t ldc, const float* row_scale) {
  std::int64_t j = 0;
  for (; j + detail::kTileVecs <= vecs; j += detail::kTileVecs)
    detail::gemm_panel<detail::kTileVecs>(rows, k, a, lda, b + j * kVec, ldb, c + j * kVec, ldc, row_scale);
  if (j < vecs) detail::gemm_rest_vecs(int(vecs - j), rows, k, a, lda, b + j * kVec, ldb, c + j * kVec, ldc, row_scale);
}
