// The CUDA path's device-independent logic, checked on the host: launch
// geometry, vector eligibility, and the warp butterfly combine with a
// simulated shuffle (same code the kernels run with __shfl_xor_sync).

#include <gtest/gtest.h>

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

TEST(CudaTiling, LaunchGridsAndVectorEligibility) {
  EXPECT_EQ(T::row_grid("t", 1), 1u);
  EXPECT_EQ(T::row_grid("t", 8), 1u);
  EXPECT_EQ(T::row_grid("t", 9), 2u);
  EXPECT_EQ(T::row_grid("t", 64 * 197), 1576u);  // 8 tokens per CTA, exact
  EXPECT_EQ(T::row_grid("t", 64 * 197 + 1), 1577u);
  EXPECT_EQ(T::grid_blocks("t", "n", 257, 256), 2u);
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
#include <vector>

// The kernel's per-row recurrence (fold a block max, rescale the output,
// add exp-weighted values) over random block splits equals softmax . v
// computed directly in double, with masked keys and huge logit ranges.
TEST(CudaAttentionTiling, OnlineSoftmaxFoldEqualsDirectSoftmax) {
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
      double m = -INFINITY;
      for (float l : logit) m = std::max(m, double(l));
      double num = 0, den = 0;
      for (int i = 0; i < n; ++i) {
        const double e = std::exp(double(logit[std::size_t(i)]) - m);
        num += e * value[std::size_t(i)];
        den += e;
      }
      // Fold in random block sizes, leading all-masked blocks included.
      T::OnlineSoftmax s;
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
  T::OnlineSoftmax s;
  EXPECT_EQ(s.fold(-INFINITY), 0.0f);
  EXPECT_EQ(s.weight(-INFINITY), 0.0f);
  EXPECT_EQ(s.sum, 0.0f);
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
  EXPECT_EQ(T::attention_query_blocks(197, 64), 4);
  EXPECT_EQ(T::attention_query_blocks(64, 64), 1);
  EXPECT_EQ(T::attention_query_blocks(1, 64), 1);
}

namespace {

// WMMA's rules: leading dims a multiple of 16 bytes (8 halves, 4 floats),
// every fragment pointer 32-byte aligned; shared memory within an A100's
// 163 KiB opt-in limit (H100: 227 KiB).
template <int D, int Bytes, bool Tensor>
void check_plan() {
  using A = T::AttentionTiling<D, Bytes, Tensor>;
  SCOPED_TRACE("head dim " + std::to_string(D) + (Tensor ? " tensor" : " simt"));
  EXPECT_LE(A::kSharedBytes, 163 * 1024);
  for (int offset : {A::kQOffset, A::kKOffset, A::kVOffset, A::kSOffset, A::kPOffset, A::kOOffset})
    EXPECT_EQ(offset % 128, 0);
  EXPECT_GE(A::kKOffset - A::kQOffset, A::kBlockQ * A::kLdQkv * A::kQkvBytes);
  EXPECT_GE(A::kVOffset - A::kKOffset, A::kBlockK * A::kLdQkv * A::kQkvBytes);
  EXPECT_GE(A::kPOffset - A::kSOffset, A::kWarps * A::kRowsPerWarp * A::kLdS * 4);
  EXPECT_GE(A::kSharedBytes - A::kOOffset, A::kWarps * A::kRowsPerWarp * A::kLdO * 4);
  EXPECT_EQ(A::kLdS * 4 % 16, 0);
  EXPECT_EQ(A::kLdO * 4 % 16, 0);
  EXPECT_EQ(A::kBlockQ, A::kBlockK);  // load_tile fills Q with the K/V loop
  if (Tensor) {
    EXPECT_EQ(A::kLdQkv * Bytes % 16, 0);
    EXPECT_EQ(A::kLdP * Bytes % 16, 0);
    EXPECT_GE(A::kOOffset - A::kPOffset, A::kWarps * A::kRowsPerWarp * A::kLdP * Bytes);
    // fragment origins: row groups of 16 and column groups of 16
    EXPECT_EQ(16 * A::kLdQkv * Bytes % 32, 0);
    EXPECT_EQ(16 * Bytes % 32, 0);
    EXPECT_EQ(16 * A::kLdP * Bytes % 32, 0);
    EXPECT_EQ(16 * A::kLdS * 4 % 32, 0);
    EXPECT_EQ(16 * A::kLdO * 4 % 32, 0);
  }
}

}  // namespace

TEST(CudaAttentionTiling, SharedMemoryPlanMeetsWmmaRules) {
  check_plan<32, 2, true>();
  check_plan<64, 2, true>();
  check_plan<128, 2, true>();
  check_plan<32, 4, false>();
  check_plan<64, 4, false>();
  check_plan<128, 4, false>();
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
