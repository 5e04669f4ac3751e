// The CUDA path's device-independent logic, checked on the host: launch
// geometry, vector eligibility, and the warp butterfly combine with a
// simulated shuffle (same code the kernels run with __shfl_xor_sync).

#include <gtest/gtest.h>

#include <array>

#include <repshift/cuda/tiling.hpp>

#include "test_support.hpp"

namespace T = repshift::cuda_tiling;

TEST(CudaTiling, SelectItemsCoverTheTokens) {
  EXPECT_EQ(T::select_items_per_thread(1), 1);
  EXPECT_EQ(T::select_items_per_thread(256), 1);
  EXPECT_EQ(T::select_items_per_thread(257), 2);
  EXPECT_EQ(T::select_items_per_thread(197), 1);
  EXPECT_EQ(T::select_items_per_thread(1025), 8);
  EXPECT_EQ(T::select_items_per_thread(4096), 16);
  for (int n : {1, 100, 513, 2000, 4096}) EXPECT_GE(T::select_items_per_thread(n) * T::SelectTiling::kThreads, n);
}

TEST(CudaTiling, ScoreGridAndVectorEligibility) {
  EXPECT_EQ(T::score_grid(1), 1);
  EXPECT_EQ(T::score_grid(8), 1);
  EXPECT_EQ(T::score_grid(9), 2);
  EXPECT_EQ(T::score_grid(64 * 197), 1576);  // 8 tokens per CTA, exact
  EXPECT_EQ(T::score_grid(64 * 197 + 1), 1577);
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
