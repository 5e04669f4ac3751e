// Flash attention's per-(sample, head) kernel for one target (see
// attention.hpp for the schedule): included in namespace repshift::cpu
// and again per extra target (simd_targets.hpp), after target/simd.inl,
// math.inl and gemm_tile.inl. No include guard and no #include: the
// includer (flash_head.hpp) provides what it names from cpu::detail.

// Queries per block (whole register tiles) and keys per block: one key
// block's K^T (64 x Dh floats, 16 KiB at Dh = 64) stays in L1 while every
// query tile of the block streams past it, and so does its V. A sequence
// of up to kWholeKeys keys is one block instead: its K^T and V (64 KiB
// each at Dh = 64) stream from L2 one register-tile panel at a time, and
// the block's scores (kBlockQ x 256 floats) stay in L2. At DeiT-S's 197
// tokens, blocks of 64 left a last block of 5 keys that cost a whole
// block of softmax, and rescaled O at every block.
constexpr int kBlockQ = 16 * detail::kTileRows;
static_assert(kBlockQ % kVec == 0, "the softmax's per-row state is whole vectors");
constexpr int kBlockK = 64;
static_assert(kBlockK % (detail::kTileVecs * kVec) == 0, "key block must be whole register tiles");
constexpr int kWholeKeys = 256;


namespace detail {

// Keys per block for a sequence of n keys: all of them (padded to whole
// vectors) up to kWholeKeys, else kBlockK.
inline std::int64_t key_block(std::int64_t n) {
  return n <= kWholeKeys ? std::max<std::int64_t>(cpu::detail::round_up(n, kVec), kVec) : kBlockK;
}

// Scratch for one (sample, head) task: Q, K^T and V of the whole sequence
// (bias added, prepared in one pass and reused by every block) and one
// query block's state. O(N x head_dim) floats, never N x N.
// Laid out for the task's own sample of n tokens (block_k = key_block(n)),
// so a packed sample runs the blocks it has alone, whatever its batch.
struct FlashScratch {
  std::int64_t head_dim, head_dim_padded, block_k, ld_v;
  float* kt;     // [key blocks][Dh][block_k]: each key block's K^T contiguous, zero past N
  float* v;      // [N][ld_v]: Dh padded to whole vectors, zero past Dh
  float* q;      // [N][Dh], pre-scaled by scale * log2 e
  float* o;      // [kBlockQ][Dh padded]
  float* s;      // [kBlockQ][block_k]: scores, then probabilities
  float* m;      // [kBlockQ] running max
  float* l;      // [kBlockQ][kVec] running sum, in partial lanes
  float* alpha;  // [kBlockQ] rescale of o at this key block
  float* bias;   // [key blocks * block_k] key_bias of the sample times log2 e, zero past N
  static std::int64_t vectors(std::int64_t dh) { return (dh + kVec - 1) / kVec; }
  // V's row stride: an odd number of cache lines where whole lines, so that
  // a column panel of P V (one line from each of up to kWholeKeys rows)
  // spreads over every L1 set. At 64 floats (4 lines) it fell into 16 sets,
  // 128 lines, fewer than DeiT-S's 197 keys.
  static std::int64_t v_stride(std::int64_t dp) { return dp % 32 == 0 ? dp + 16 : dp; }
  static std::int64_t floats(std::int64_t n, std::int64_t dh) {
    const std::int64_t dp = vectors(dh) * kVec, bk = key_block(n), keys = cpu::detail::round_up(n, bk);
    return dh * keys + n * (v_stride(dp) + dh) + kBlockQ * (dp + bk + kVec + 2) + keys;
  }
  std::int64_t keys_padded(std::int64_t n) const { return cpu::detail::round_up(n, block_k); }
  FlashScratch(float* base, std::int64_t n, std::int64_t dh)
      : head_dim(dh), head_dim_padded(vectors(dh) * kVec), block_k(key_block(n)), ld_v(v_stride(head_dim_padded)) {
    kt = base;
    v = kt + dh * keys_padded(n);
    q = v + n * ld_v;
    o = q + n * dh;
    s = o + kBlockQ * head_dim_padded;
    m = s + kBlockQ * block_k;
    l = m + kBlockQ;
    alpha = l + kBlockQ * kVec;
    bias = alpha + kBlockQ;
  }
};

// One online-softmax step for `rows` query rows over one key block, in
// base 2. s[r][0..cols): raw scores (logits times log2 e), row stride ld,
// read up to whole vectors; bias: the keys' bias, in the same units (null:
// none). Afterwards s holds the block's unnormalised probabilities
// 2^(s - m_new) (~0 past cols: at most 1.2e-38, which the P V product
// skips and l cannot register), m the new running max, alpha
// 2^(m_old - m_new), by which o must be rescaled, and
// l_lanes the running sum of each row, kept as kVec partial lanes so that
// the horizontal sum runs once per query block and not once per key block.
// alpha's 2^x runs across rows, vector by vector.
inline void online_softmax_block(float* s, std::int64_t ld, int rows, const float* bias, int cols, float* m,
                                 float* l_lanes, float* alpha) {
  const int width = int(cpu::detail::round_up(cols, kVec));
  for (int r = 0; r < rows; ++r) {
    float* row = s + r * ld;
    vfloat mx = broadcast<vfloat>(-INFINITY);
    for (int c = 0; c < width; c += kVec) {
      vfloat x = loadv(row + c);
      if (bias) x += loadv(bias + c);
      if (c + kVec > cols) x = iotav(float(c)) < float(cols) ? x : broadcast<vfloat>(-INFINITY);
      storev(row + c, x);
      mx = maxv(mx, x);
    }
    alpha[r] = std::max(m[r], hmax(mx));  // m_new, for now
  }
  // A row that has seen only masked keys (-inf bias) keeps m = -inf; its
  // exponents are then taken against 0, so no inf - inf NaN appears.
  for (int r = 0; r < rows; r += kVec) {  // m and alpha hold kBlockQ, a whole number of vectors
    const vfloat m_new = loadv(alpha + r);
    const vfloat m_ref = m_new == broadcast<vfloat>(-INFINITY) ? vfloat{} : m_new;
    storev(alpha + r, exp2_nonpositive(loadv(m + r) - m_ref));  // ~0 on the first block, where o is overwritten
    storev(m + r, m_new);
  }
  for (int r = 0; r < rows; ++r) {
    float* row = s + r * ld;
    const vfloat m_ref = broadcast<vfloat>(m[r] == -INFINITY ? 0.0f : m[r]);
    vfloat sum{};
    for (int c = 0; c < width; c += kVec) {
      const vfloat e = exp2_nonpositive(loadv(row + c) - m_ref);
      storev(row + c, e);
      sum += e;
    }
    storev(l_lanes + r * kVec, loadv(l_lanes + r * kVec) * alpha[r] + sum);
  }
}

// One (sample, head): prepare K^T and V once, then stream every block of
// kBlockQ queries over the key blocks: S = Q K^T, the online softmax, and
// O = alpha O + P V, both products on register tiles (gemm_tile.hpp).
inline void flash_head(const AttentionParams& p, std::int64_t b, std::int64_t h, FlashScratch& w) {
  const std::int64_t dh = w.head_dim, dp = w.head_dim_padded, bk = w.block_k, keys = p.keys(b);
  const float* qb = cpu::detail::qkv_bias_row(p, 0, h);
  const float* kb = cpu::detail::qkv_bias_row(p, 1, h);
  const float* vb = cpu::detail::qkv_bias_row(p, 2, h);
  // One pass over the sample's tokens, kVec at a time; the next group's
  // rows are prefetched (prefetch_row: measured 1.1x on the whole kernel,
  // AVX2).
  // K^T is written a vector at a time from the group's K rows, staged in o
  // (free until the query loop): storing K element by element, block_k
  // floats apart, filled the store buffer and held up the loads behind it
  // (a third of the kernel's time at DeiT-S's shape, AVX2).
  const std::int64_t queries = p.queries(b), tokens = std::max(queries, keys);
  const std::int64_t row_bytes = dh * std::int64_t(sizeof(float));
  auto prefetch = [row_bytes](const float* row, bool for_write = false) {
    cpu::detail::prefetch_row(row, row_bytes, for_write);
  };
  auto biased = [dh](const float* src, const float* bias, float scale, float* dst) {
    if (bias) {  // omp simd: vectorised at -O2 too (see layer_norm_row)
#pragma omp simd
      for (std::int64_t d = 0; d < dh; ++d) dst[d] = (src[d] + bias[d]) * scale;
    } else {
#pragma omp simd
      for (std::int64_t d = 0; d < dh; ++d) dst[d] = src[d] * scale;
    }
  };
  float* k_rows = w.o;  // [kVec][dh]
  for (std::int64_t n0 = 0; n0 < tokens; n0 += kVec) {
    const std::int64_t group_end = std::min<std::int64_t>(n0 + kVec, tokens);
    for (std::int64_t n = n0; n < group_end; ++n) {
      if (n + kVec < queries) prefetch(cpu::detail::qkv_row(p, b, n + kVec, 0, h));
      if (n + kVec < keys) {
        prefetch(cpu::detail::qkv_row(p, b, n + kVec, 1, h));
        prefetch(cpu::detail::qkv_row(p, b, n + kVec, 2, h));
      }
      if (n < queries) biased(cpu::detail::qkv_row(p, b, n, 0, h), qb, p.scale * kLog2e, w.q + n * dh);
      if (n >= keys) continue;
      biased(cpu::detail::qkv_row(p, b, n, 1, h), kb, 1.0f, k_rows + (n - n0) * dh);
      float* vd = w.v + n * w.ld_v;
      biased(cpu::detail::qkv_row(p, b, n, 2, h), vb, 1.0f, vd);
      std::fill(vd + dh, vd + dp, 0.0f);
    }
    if (n0 >= keys) continue;
    // Keys past the last are zero: the scores of a last partial vector stay finite.
    std::fill(k_rows + (std::min(keys, n0 + kVec) - n0) * dh, k_rows + kVec * dh, 0.0f);
    float* kt = w.kt + (n0 / bk) * dh * bk + n0 % bk;  // bk is whole vectors: no group straddles two blocks
    for (std::int64_t d = 0; d < dh; ++d) {
      vfloat column;
      for (int i = 0; i < kVec; ++i) column[i] = k_rows[i * dh + d];
      storev(kt + d * bk, column);
    }
  }
  if (p.key_bias) {
    const float* bias = p.key_bias + p.key_bias_offset(b);
    std::transform(bias, bias + keys, w.bias, [](float x) { return x * kLog2e; });
    std::fill(w.bias + keys, w.bias + w.keys_padded(keys), 0.0f);
  }

  for (std::int64_t q0 = 0; q0 < queries; q0 += kBlockQ) {
    const int rows = int(std::min<std::int64_t>(kBlockQ, queries - q0));
    const float* q = w.q + q0 * dh;
    // Rows past `rows` up to a whole vector are computed on and ignored: finite, never read uninitialised.
    for (int r = 0; r < cpu::detail::round_up(rows, kVec); ++r) {
      w.m[r] = r < rows ? -INFINITY : 0.0f;
      w.alpha[r] = 0.0f;
      storev(w.l + r * kVec, vfloat{});
    }
    for (std::int64_t k0 = 0; k0 < keys; k0 += bk) {
      const int cols = int(std::min(bk, keys - k0));
      // Score columns past the last key are skipped, whole vectors at a time.
      gemm_tiled(rows, FlashScratch::vectors(cols), dh, q, dh, w.kt + k0 * dh, bk, w.s, bk, nullptr);
      const float* bias = p.key_bias ? w.bias + k0 : nullptr;
      online_softmax_block(w.s, bk, rows, bias, cols, w.m, w.l, w.alpha);
      // The first block overwrites o, so it needs no zeroing.
      gemm_tiled(rows, dp / kVec, cols, w.s, bk, w.v + k0 * w.ld_v, w.ld_v, w.o, dp, k0 == 0 ? nullptr : w.alpha);
    }
    float* out = p.out + p.out_offset(b) + q0 * p.out_token_stride + h * dh;
    constexpr int kOutAhead = 4;  // output rows prefetched for write ahead of the one being stored
    for (int r = 0; r < rows; ++r) {
      if (r + kOutAhead < rows) prefetch(out + (r + kOutAhead) * p.out_token_stride, /*for_write=*/true);
      // A query whose keys are all masked has no softmax: NaN, as on the map path.
      const float inv = w.m[r] == -INFINITY ? NAN : 1.0f / hsum(loadv(w.l + r * kVec));
      float* dst = out + r * p.out_token_stride;
      const float* o = w.o + r * dp;
#pragma omp simd
      for (std::int64_t d = 0; d < dh; ++d) dst[d] = o[d] * inv;
    }
  }
}

}  // namespace detail

// This copy's entries for flash_attention (attention.hpp), found through
// its SimdTarget: the scratch one task needs, and one (sample, head) task.
// tokens: the longest sample's, which bounds the scratch. Each task lays
// the scratch out for its own sample, so a packed sample's key blocks, and
// so its rounding, are those it has alone, whatever its batch.
inline std::int64_t flash_scratch_floats(SimdTarget, std::int64_t tokens, std::int64_t head_dim) {
  return cpu::detail::scratch_bound([head_dim](std::int64_t n) { return detail::FlashScratch::floats(n, head_dim); },
                                    tokens, kWholeKeys);
}
inline void flash_task(SimdTarget, const AttentionParams& p, std::int64_t bh, float* scratch) {
  const std::int64_t b = bh / p.heads;
  detail::FlashScratch w(scratch, std::max(p.queries(b), p.keys(b)), p.head_dim);
  detail::flash_head(p, b, bh % p.heads, w);
}
