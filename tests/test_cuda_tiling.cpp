// The CUDA path's device-independent logic, checked on the host: launch
// geometry, vector eligibility, the warp butterfly combine with a
// simulated shuffle (same code the kernels run with __shfl_xor_sync), and
// the attention kernels' shared-memory plans and bank conflicts.

#include <gtest/gtest.h>

#include <algorithm>
#include <array>

#include <repshift/cuda/tiling.hpp>

#include "test_support.hpp"

namespace T = repshift::cuda_detail;

TEST(CudaTiling, SelectItemsCoverTheTokens) {
  EXPECT_EQ(T::select_items_per_thread(1), 1);
  EXPECT_EQ(T::select_items_per_thread(256), 1);
  EXPECT_EQ(T::select_items_per_thread(257), 2);
  EXPECT_EQ(T::select_items_per_thread(197), 1);
  EXPECT_EQ(T::select_items_per_thread(1025), 8);
  EXPECT_EQ(T::select_items_per_thread(4096), 16);
  for (int n : {1, 100, 513, 2000, 4096}) EXPECT_GE(T::select_items_per_thread(n) * T::SelectTiling::kThreads, n);
}

// The scan's register buckets: the smallest compiled one that holds the
// state, every state the params accept (1..kMaxState) has one.
TEST(CudaTiling, ScanStateBuckets) {
  EXPECT_EQ(T::scan_state_bucket(0), 0);
  EXPECT_EQ(T::scan_state_bucket(65), 0);
  for (int state = 1; state <= 64; ++state) {
    const int bucket = T::scan_state_bucket(state);
    EXPECT_GE(bucket, state);
    if (bucket > 8) {
      EXPECT_LT(bucket / 2, state) << "state " << state << " fits a smaller bucket than " << bucket;
    }
  }
  EXPECT_EQ(T::scan_state_bucket(16), 16);  // Mamba's state: exact, no per-slot guard
}

TEST(CudaTiling, LaunchGridsAndVectorEligibility) {
  EXPECT_EQ(T::row_grid("t", 1), 1u);
  EXPECT_EQ(T::row_grid("t", 8), 1u);
  EXPECT_EQ(T::row_grid("t", 9), 2u);
  EXPECT_EQ(T::row_grid("t", 64 * 197), 1576u);  // 8 tokens per CTA, exact
  EXPECT_EQ(T::row_grid("t", 64 * 197 + 1), 1577u);
  EXPECT_EQ(T::grid_blocks("t", "n", 257, 256), 2u);
  EXPECT_EQ(T::grid_blocks("t", "tokens", 197, 64), 4u);  // the flash kernel's query blocks at DeiT's 197
  EXPECT_EQ(T::grid_blocks("t", "tokens", 64, 64), 1u);
  expect_refused([] { T::grid_blocks("gather_tokens", "batch * keep", std::int64_t(1) << 40, 8); },
                 {"gather_tokens", "batch * keep = 1099511627776", "one CUDA grid"});
  EXPECT_EQ(T::kVectorElems<float>, 4);
  EXPECT_EQ(T::kVectorElems<repshift::half>, 8);
  EXPECT_TRUE(T::rows_vectorisable<float>(256, 384, 197 * 384, 384));
  EXPECT_FALSE(T::rows_vectorisable<float>(256, 383, 197 * 383, 383));   // C % 4
  EXPECT_FALSE(T::rows_vectorisable<float>(260, 384, 197 * 384, 384));   // base misaligned
  EXPECT_FALSE(T::rows_vectorisable<float>(256, 384, 197 * 384, 386));   // token stride
  EXPECT_TRUE(T::rows_vectorisable<repshift::bf16>(0, 8, 16, 8));
  EXPECT_FALSE(T::rows_vectorisable<repshift::bf16>(0, 12, 24, 12));
}

// The register-row kernels: aligned rows of whole vectors, at most 1024
// channels, in every storage type; 32 floats a lane.
TEST(CudaTiling, WarpRowEligibility) {
  EXPECT_EQ(T::kWarpRowSlots<float> * T::kVectorElems<float>, T::kWarpRowFloats);
  EXPECT_EQ(T::kWarpRowSlots<repshift::half> * T::kVectorElems<repshift::half>, T::kWarpRowFloats);
  for (std::int64_t c : {4, 192, 384, 768, 1024}) EXPECT_TRUE(T::warp_row_fits<float>(c, 256, c)) << c;
  for (std::int64_t c : {8, 384, 1024}) EXPECT_TRUE(T::warp_row_fits<repshift::bf16>(c, 512, c)) << c;
  EXPECT_FALSE(T::warp_row_fits<float>(1028, 256, 1028));               // wider than a warp holds
  EXPECT_FALSE(T::warp_row_fits<float>(0, 256, 0));                     // nothing to hold
  EXPECT_FALSE(T::warp_row_fits<float>(383, 256, 383));                 // not whole vectors
  EXPECT_FALSE(T::warp_row_fits<repshift::half>(388, 256, 388));        // 388 % 8
  EXPECT_FALSE(T::warp_row_fits<float>(384, 256 | 8, 384));             // one operand 8-byte aligned
  EXPECT_FALSE(T::warp_row_fits<float>(384, 256, 384 | 2));             // a stride breaks alignment
  int x[8];
  const std::uintptr_t a = T::address_bits(&x[0]), b = T::address_bits(&x[1]);
  EXPECT_EQ(T::address_bits(nullptr), 0u);
  EXPECT_EQ((a | b) % 8 == 0, a % 8 == 0 && b % 8 == 0);
}

template <class M>
class CudaButterfly : public ::testing::Test {};
using Metrics = ::testing::Types<rs::policies::L1, rs::policies::L2, rs::policies::Cosine>;
TYPED_TEST_SUITE(CudaButterfly, Metrics);

TYPED_TEST(CudaButterfly, EveryLaneEndsWithTheFullCombination) {
  using M = TypeParam;
  using Accum = typename M::Accum;
  const auto a = ref::random_floats(32 * 5, 1), b = ref::random_floats(32 * 5, 2);
  std::array<Accum, 32> lanes;
  for (int l = 0; l < 32; ++l) {
    lanes[l] = M::init();
    for (int i = 0; i < 5; ++i) M::accumulate(lanes[l], a[l * 5 + i], b[l * 5 + i]);
  }
  // Simulate the warp: one butterfly step at a time, all lanes in lockstep.
  std::array<Accum, 32> result;
  for (int l = 0; l < 32; ++l) {
    int step = 0;
    std::array<std::array<Accum, 32>, 6> stage;
    stage[0] = lanes;
    for (int offset = 16; offset > 0; offset /= 2, ++step)
      for (int j = 0; j < 32; ++j) stage[step + 1][j] = M::combine(stage[step][j], stage[step][j ^ offset]);
    // The library's butterfly on lane l with a shuffle reading the stage.
    int s = 0;
    result[l] = T::butterfly_combine<M>(lanes[l], [&](Accum, int offset) { return stage[s++][l ^ offset]; });
    EXPECT_FLOAT_EQ(M::finalize(result[l]), M::finalize(stage[5][l]));
  }
  const double want = ref::score(ref_metric<M>(), a.data(), b.data(), 32 * 5);
  for (int l = 0; l < 32; ++l) EXPECT_NEAR(M::finalize(result[l]), want, 1e-5 * (1 + std::abs(want)));
}

// ---- flash attention (cuda/attention_tiling.hpp) ------------------------------

#include <repshift/cuda/attention_tiling.hpp>

#include <cmath>
#include <limits>
#include <random>
#include <set>
#include <vector>

// The kernel's per-row recurrence (fold a block max, rescale the output,
// add exp-weighted values) over random block splits equals softmax . v
// computed directly in double, with masked keys and huge logit ranges; in
// natural units (f32 kernel) and in log2 units with exp2 (tensor cores).
// The logits are converted to the softmax's units in float first, as the
// kernels do; the reference is the exact softmax of those floats (unit_log:
// the log of the exponent's base, 1 for e, ln 2 for 2).
template <class Softmax>
void check_online_softmax(float unit, double unit_log) {
  std::mt19937 gen(1);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (float range : {1.0f, 30.0f, 3000.0f}) {
    for (int trial = 0; trial < 20; ++trial) {
      const int n = 1 + int(gen() % 300);
      std::vector<float> logit(static_cast<std::size_t>(n)), value(static_cast<std::size_t>(n));
      for (int i = 0; i < n; ++i) {
        logit[std::size_t(i)] = range * u(gen);
        value[std::size_t(i)] = u(gen);
        if (gen() % 7 == 0) logit[std::size_t(i)] = -INFINITY;  // masked key
      }
      logit[std::size_t(gen() % std::uint32_t(n))] = range * u(gen);  // at least one key is live
      for (float& l : logit) l *= unit;
      double m = -INFINITY;
      for (float l : logit) m = std::max(m, double(l));
      double num = 0, den = 0;
      for (int i = 0; i < n; ++i) {
        const double e = std::exp((double(logit[std::size_t(i)]) - m) * unit_log);
        num += e * value[std::size_t(i)];
        den += e;
      }
      // Fold in random block sizes, leading all-masked blocks included.
      Softmax s;
      float out = 0.0f;
      int pos = 0;
      while (pos < n) {
        const int len = 1 + int(gen() % 64);
        const int end = std::min(n, pos + len);
        float block_max = -INFINITY;
        for (int i = pos; i < end; ++i) block_max = std::max(block_max, logit[std::size_t(i)]);
        out *= s.fold(block_max);
        for (int i = pos; i < end; ++i) {
          const float w = s.weight(logit[std::size_t(i)]);
          out += w * value[std::size_t(i)];
          s.sum += w;
        }
        pos = end;
      }
      ASSERT_TRUE(std::isfinite(out) && std::isfinite(s.sum)) << "range " << range;
      EXPECT_NEAR(out / s.sum, num / den, 1e-5) << "range " << range << " n " << n;
    }
  }
  // Only masked keys so far: nothing accumulated, no NaN.
  Softmax s;
  EXPECT_EQ(s.fold(-INFINITY), 0.0f);
  EXPECT_EQ(s.weight(-INFINITY), 0.0f);
  EXPECT_EQ(s.sum, 0.0f);
}

TEST(CudaAttentionTiling, OnlineSoftmaxFoldEqualsDirectSoftmax) {
  check_online_softmax<T::OnlineSoftmax>(1.0f, 1.0);
  check_online_softmax<T::BasicOnlineSoftmax<true>>(T::kLog2e, std::log(2.0));
}

TEST(CudaAttentionTiling, HeadDimBuckets) {
  EXPECT_EQ(T::attention_head_bucket(0), 0);
  EXPECT_EQ(T::attention_head_bucket(-3), 0);
  EXPECT_EQ(T::attention_head_bucket(1), 32);
  EXPECT_EQ(T::attention_head_bucket(16), 32);
  EXPECT_EQ(T::attention_head_bucket(32), 32);
  EXPECT_EQ(T::attention_head_bucket(33), 64);
  EXPECT_EQ(T::attention_head_bucket(40), 64);
  EXPECT_EQ(T::attention_head_bucket(64), 64);
  EXPECT_EQ(T::attention_head_bucket(80), 128);
  EXPECT_EQ(T::attention_head_bucket(128), 128);
  EXPECT_EQ(T::attention_head_bucket(129), 0);
}

namespace {

// Most distinct 4-byte words the 32 lanes of a warp touch in one of the 32
// banks when lane l accesses word(l): 1 is conflict free (lanes reading one
// word share a broadcast), k costs k shared-memory passes.
template <class Word>
int bank_ways(Word word) {
  std::array<std::set<int>, 32> banks;
  for (int lane = 0; lane < 32; ++lane) banks[std::size_t(word(lane) % 32)].insert(word(lane));
  std::size_t ways = 0;
  for (const auto& bank : banks) ways = std::max(ways, bank.size());
  return int(ways);
}

// The f32 kernel's shared-memory accesses, from the *_word maps it indexes
// with: each lane pair covers its row's keys and columns exactly once, and
// no access of any step has a bank conflict.
template <int D>
void check_simt_banks() {
  using A = T::SimtAttentionTiling<D>;
  SCOPED_TRACE("f32 banks, head dim " + std::to_string(D));
  for (int row = 0; row < A::kRowsPerWarp; ++row) {
    std::vector<int> keys(A::kBlockK, 0), columns(D, 0);
    for (int lane : {2 * row, 2 * row + 1}) {
      EXPECT_EQ(A::pair_row(lane), row);
      for (int i = 0; i < A::kKeysPerLane; ++i) ++keys.at(std::size_t(A::key_of(lane, i)));
      for (int i = 0; i < A::kColumnsPerLane; ++i) ++columns.at(std::size_t(A::column_of(lane, i)));
    }
    EXPECT_EQ(std::count(keys.begin(), keys.end(), 1), A::kBlockK) << "row " << row;
    EXPECT_EQ(std::count(columns.begin(), columns.end(), 1), D) << "row " << row;
  }
  int worst = 0;
  auto check = [&](const char* what, int step, auto word) {
    const int ways = bank_ways(word);
    worst = std::max(worst, ways);
    if (ways != 1) ADD_FAILURE() << what << " step " << step << ": " << ways << "-way bank conflict";
  };
  for (int c = 0; c < D; ++c) check("Q", c, [&](int l) { return A::q_word(l, c); });
  for (int i = 0; i < A::kKeysPerLane; ++i) {
    check("S", i, [&](int l) { return A::s_word(l, i); });
    for (int c = 0; c < D; ++c) check("K", i * D + c, [&](int l) { return A::k_word(l, i, c); });
  }
  for (int key = 0; key < A::kBlockK; ++key) {
    check("P", key, [&](int l) { return A::p_word(l, key); });
    for (int i = 0; i < A::kColumnsPerLane; ++i) check("V", key * D + i, [&](int l) { return A::v_word(l, key, i); });
  }
  for (int i = 0; i < A::kColumnsPerLane; ++i) check("O", i, [&](int l) { return A::o_word(l, i); });
  EXPECT_EQ(worst, 1);
  // Every word stays inside its segment's rows.
  EXPECT_LT(A::s_word(31, A::kKeysPerLane - 1), A::kRowsPerWarp * A::kLdS);
  EXPECT_LT(A::o_word(31, A::kColumnsPerLane - 1), A::kRowsPerWarp * A::kLdO);
  EXPECT_LT(A::k_word(31, A::kKeysPerLane - 1, D - 1), A::kBlockK * A::kLdQkv);
}

// The f32 kernel's plan: segments 128-byte aligned and large enough;
// shared memory within an A100's 163 KiB opt-in limit (H100: 227 KiB).
template <int D>
void check_simt_plan() {
  using A = T::SimtAttentionTiling<D>;
  SCOPED_TRACE("f32, head dim " + std::to_string(D));
  EXPECT_LE(A::kSharedBytes, 163 * 1024);
  for (int offset : {A::kQOffset, A::kKOffset, A::kVOffset, A::kSOffset, A::kOOffset}) EXPECT_EQ(offset % 128, 0);
  EXPECT_GE(A::kKOffset - A::kQOffset, A::kBlockQ * A::kLdQkv * 4);
  EXPECT_GE(A::kVOffset - A::kKOffset, A::kBlockK * A::kLdQkv * 4);
  EXPECT_GE(A::kOOffset - A::kSOffset, A::kWarps * A::kRowsPerWarp * A::kLdS * 4);
  EXPECT_GE(A::kSharedBytes - A::kOOffset, A::kWarps * A::kRowsPerWarp * A::kLdO * 4);
  EXPECT_EQ(A::kBlockQ, A::kBlockK);  // load_tile fills Q with the K/V loop
}

// The tensor-core plan: cp.async and ldmatrix need 16-byte aligned rows;
// the 8 rows one ldmatrix phase reads must fall in 8 different 16-byte
// bank groups (no conflict); Q, both K and both V stages fit.
template <int D>
void check_mma_plan() {
  using A = T::MmaAttentionTiling<D>;
  SCOPED_TRACE("tensor cores, head dim " + std::to_string(D));
  EXPECT_LE(A::kSharedBytes, 163 * 1024);
  EXPECT_EQ(A::kLd * A::kElemBytes % 16, 0);
  EXPECT_EQ(A::kKOffset * A::kElemBytes % 128, 0);
  EXPECT_EQ(A::kVOffset * A::kElemBytes % 128, 0);
  EXPECT_GE(A::kKOffset - A::kQOffset, A::kBlockQ * A::kLd);
  EXPECT_EQ(A::kSharedBytes, (A::kBlockQ + 2 * A::kStages * A::kBlockK) * A::kLd * A::kElemBytes);
  EXPECT_EQ(A::kVectorsPerRow * A::kVector, D);
  for (int first = 0; first < A::kBlockK; first += 8) {
    std::array<bool, 8> group{};
    for (int r = first; r < first + 8; ++r) {
      const int g = (r * A::kLd * A::kElemBytes) % 128 / 16;
      EXPECT_FALSE(group[std::size_t(g)]) << "rows " << first << ".." << first + 7 << " share bank group " << g;
      group[std::size_t(g)] = true;
    }
  }
}

}  // namespace

TEST(CudaAttentionTiling, SharedMemoryPlans) {
  check_simt_plan<32>();
  check_simt_plan<64>();
  check_simt_plan<128>();
  check_simt_banks<32>();
  check_simt_banks<64>();
  check_simt_banks<128>();
  check_mma_plan<32>();
  check_mma_plan<64>();
  check_mma_plan<128>();
}

namespace {

// mma.sync m16n8k16 and ldmatrix.x4 emulated for one warp, as the PTX ISA
// specifies them. A "register" holds two 16-bit values (low, high); values
// are small multiples of 1/8, so every product and sum below is exact.
using Reg = std::array<double, 2>;
template <int N>
using WarpRegs = std::array<std::array<Reg, N>, 32>;  // [lane][register]
using Acc = std::array<std::array<double, 4>, 32>;     // [lane][element] of a 16 x 8 f32 tile
using L = T::MmaLayout;

// Shared memory as rows of `ld` elements. Lane l addresses row l % 8 of
// matrix l / 8 at (row(l), col(l)); lane l receives, in register m, row
// l / 4, columns 2 (l % 4) and +1 of matrix m (transposed: rows 2 (l % 4)
// and +1, column l / 4).
template <class RowOf, class ColOf>
WarpRegs<4> ldmatrix_x4(const std::vector<double>& smem, int ld, RowOf row_of, ColOf col_of, bool trans) {
  WarpRegs<4> out{};
  for (int l = 0; l < 32; ++l)
    for (int m = 0; m < 4; ++m)
      for (int h = 0; h < 2; ++h) {
        const int r = trans ? 2 * (l % 4) + h : l / 4, c = trans ? l / 4 : 2 * (l % 4) + h;
        const int addressing_lane = 8 * m + r;
        out[std::size_t(l)][std::size_t(m)][std::size_t(h)] =
            smem[std::size_t(row_of(addressing_lane) * ld + col_of(addressing_lane) + c)];
      }
  return out;
}

// d += a b, the fragments placed by the PTX ISA's layout (MmaLayout's
// a_/b_/c_ functions, themselves checked to be bijections below).
void mma(Acc& d, const WarpRegs<4>& a, const std::array<std::array<Reg, 2>, 32>& b) {
  double A[16][16], B[16][8];
  for (int l = 0; l < 32; ++l)
    for (int h = 0; h < 2; ++h) {
      for (int r = 0; r < 4; ++r) A[L::a_row(l, r)][L::a_col(l, r, h)] = a[std::size_t(l)][std::size_t(r)][std::size_t(h)];
      for (int r = 0; r < 2; ++r) B[L::b_k(l, r, h)][L::b_n(l)] = b[std::size_t(l)][std::size_t(r)][std::size_t(h)];
    }
  for (int l = 0; l < 32; ++l)
    for (int i = 0; i < 4; ++i)
      for (int k = 0; k < 16; ++k) d[std::size_t(l)][std::size_t(i)] += A[L::c_row(l, i)][k] * B[k][L::c_col(l, i)];
}

std::array<std::array<Reg, 2>, 32> pick(const WarpRegs<4>& r, int first) {
  std::array<std::array<Reg, 2>, 32> b{};
  for (int l = 0; l < 32; ++l) b[std::size_t(l)] = {r[std::size_t(l)][std::size_t(first)], r[std::size_t(l)][std::size_t(first + 1)]};
  return b;
}

}  // namespace

// The fragment layouts cover each tile exactly once.
TEST(CudaAttentionTiling, MmaLayoutsAreBijections) {
  std::array<int, 256> a{};
  std::array<int, 128> b{}, c{};
  for (int l = 0; l < 32; ++l)
    for (int h = 0; h < 2; ++h) {
      for (int r = 0; r < 4; ++r) ++a[std::size_t(L::a_row(l, r) * 16 + L::a_col(l, r, h))];
      for (int r = 0; r < 2; ++r) ++b[std::size_t(L::b_k(l, r, h) * 8 + L::b_n(l))];
      for (int i = 2 * h; i < 2 * h + 2; ++i) ++c[std::size_t(L::c_row(l, i) * 8 + L::c_col(l, i))];
    }
  for (int v : a) EXPECT_EQ(v, 1);
  for (int v : b) EXPECT_EQ(v, 1);
  for (int v : c) EXPECT_EQ(v, 1);
}

// The tensor-core kernel's fragment plumbing for one warp, emulated: Q
// fragments by ldmatrix, S = Q K^T with K fragments by ldmatrix, P taken
// from S's accumulators, O = P V with V fragments by ldmatrix.trans, the
// kernel's own index functions throughout. Equals the plain products.
TEST(CudaAttentionTiling, MmaFragmentPlumbingComputesQKtAndPV) {
  constexpr int D = 32, kKeys = 64, ld = D + 8;
  std::mt19937 gen(3);
  auto fill = [&](int rows) {
    std::vector<double> m(std::size_t(rows * ld), 99.0);  // the pad must never be read: 99 would show
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < D; ++c) m[std::size_t(r * ld + c)] = double(int(gen() % 17) - 8) / 8.0;
    return m;
  };
  const auto Q = fill(16), K = fill(kKeys), V = fill(kKeys);

  WarpRegs<4> q_frag[D / 16];
  for (int k = 0; k < D / 16; ++k)
    q_frag[k] = ldmatrix_x4(Q, ld, L::ldsm_a_row, [&](int l) { return k * 16 + L::ldsm_a_col(l); }, false);
  Acc s[kKeys / 8] = {};
  for (int j = 0; j < kKeys / 16; ++j)
    for (int k = 0; k < D / 16; ++k) {
      const auto kf = ldmatrix_x4(K, ld, [&](int l) { return j * 16 + L::ldsm_k_key(l); },
                                  [&](int l) { return k * 16 + L::ldsm_k_dim(l); }, false);
      mma(s[2 * j], q_frag[k], pick(kf, 0));
      mma(s[2 * j + 1], q_frag[k], pick(kf, 2));
    }
  for (int l = 0; l < 32; ++l)
    for (int j = 0; j < kKeys / 8; ++j)
      for (int i = 0; i < 4; ++i) {
        const int row = L::c_row(l, i), key = j * 8 + L::c_col(l, i);
        double want = 0;
        for (int c = 0; c < D; ++c) want += Q[std::size_t(row * ld + c)] * K[std::size_t(key * ld + c)];
        ASSERT_EQ(s[j][std::size_t(l)][std::size_t(i)], want) << "S row " << row << " key " << key;
      }

  Acc o[D / 8] = {};
  for (int kk = 0; kk < kKeys / 16; ++kk) {
    WarpRegs<4> pa{};
    for (int l = 0; l < 32; ++l)
      for (int r = 0; r < 4; ++r)
        for (int h = 0; h < 2; ++h)
          pa[std::size_t(l)][std::size_t(r)][std::size_t(h)] = s[L::p_tile(kk, r)][std::size_t(l)][std::size_t(L::p_elem(r, h))];
    for (int d = 0; d < D / 16; ++d) {
      const auto vf = ldmatrix_x4(V, ld, [&](int l) { return kk * 16 + L::ldsm_v_key(l); },
                                  [&](int l) { return d * 16 + L::ldsm_v_dim(l); }, true);
      mma(o[2 * d], pa, pick(vf, 0));
      mma(o[2 * d + 1], pa, pick(vf, 2));
    }
  }
  for (int l = 0; l < 32; ++l)
    for (int d = 0; d < D / 8; ++d)
      for (int i = 0; i < 4; ++i) {
        const int row = L::c_row(l, i), c = d * 8 + L::c_col(l, i);
        double want = 0;
        for (int key = 0; key < kKeys; ++key) {
          double p = 0;
          for (int e = 0; e < D; ++e) p += Q[std::size_t(row * ld + e)] * K[std::size_t(key * ld + e)];
          want += p * V[std::size_t(key * ld + c)];
        }
        ASSERT_EQ(o[d][std::size_t(l)][std::size_t(i)], want) << "O row " << row << " dim " << c;
      }
}

// The CnnRows pixel reduction: chunks cover the channels with no empty
// chunk, hold at least kMinChunkChannels each (unless there are fewer
// channels in all), stay within kMaxChunks, and only split where the
// pixel tiles alone would leave the GPU idle.
TEST(CudaTiling, PixelReductionChunks) {
  using T = rs::cuda_detail::PixelTiling;
  for (std::int64_t pixels : {1, 49, 392, 3136, 25088, 200704}) {
    for (std::int64_t channels : {3, 64, 256, 300, 1024, 2048}) {
      const std::int64_t chunks = T::chunks(pixels, channels), per = T::chunk_channels(pixels, channels);
      EXPECT_GE(chunks, 1);
      EXPECT_LE(chunks, T::kMaxChunks);
      EXPECT_GE(chunks * per, channels) << pixels << " px, " << channels << " ch";
      EXPECT_LT((chunks - 1) * per, channels) << "an empty trailing chunk";
      if (chunks > 1) {
        EXPECT_GE(per, T::kMinChunkChannels);
      }
      if (T::tiles(pixels) >= T::kTargetBlocks) {
        EXPECT_EQ(chunks, 1) << "enough tiles: no split";
      }
    }
  }
  // ResNet-50 stage 4 at batch 8 (7x7 maps, 2048 channels): 13 tiles alone, split 16 ways.
  EXPECT_EQ(T::chunks(8 * 49, 2048), 16);
  EXPECT_EQ(T::chunks(64 * 56 * 56, 256), 1);
}

// The partials' scratch is sized once, by reserve(), for the largest map:
// its bound must hold the partials of every smaller map, and grow with
// the map (a 47x47 map's reservation serves a 46x46 forward).
TEST(CudaTiling, PixelPartialsBoundServesEverySmallerMap) {
  using T = rs::cuda_detail::PixelTiling;
  for (std::int64_t channels : {3, 64, 127, 128, 300, 1024, 2048}) {
    std::int64_t previous = 0;
    for (std::int64_t pixels = 1; pixels <= 2 * T::kTargetBlocks * T::kPixels + 100; ++pixels) {
      const std::int64_t bound = T::partials_bound(pixels, channels), chunks = T::chunks(pixels, channels);
      ASSERT_GE(bound, chunks > 1 ? chunks * pixels : 0) << pixels << " px, " << channels << " ch";
      ASSERT_GE(bound, previous) << pixels << " px, " << channels << " ch: the bound shrank";
      previous = bound;
    }
  }
  // 127 channels make one chunk of at least 64 and no more: no scratch.
  EXPECT_EQ(T::partials_bound(1000, 127), 0);
}
