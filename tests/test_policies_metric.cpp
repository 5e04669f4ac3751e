// Hand-computed cases for each Metric policy, the zero-vector convention
// of Cosine, non-finite propagation, and the contract trait.

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include <repshift/repshift.hpp>

namespace rs = repshift;
using rs::policies::Cosine;
using rs::policies::L1;
using rs::policies::L2;

template <class M>
float metric_of(const std::vector<float>& after, const std::vector<float>& before) {
  auto acc = M::init();
  for (std::size_t i = 0; i < after.size(); ++i) M::accumulate(acc, after[i], before[i]);
  return M::finalize(acc);
}

TEST(Metric, HandComputedL1) {
  // |3-4| + |4-3| + |0-(-2)| = 1 + 1 + 2
  EXPECT_FLOAT_EQ(metric_of<L1>({3, 4, 0}, {4, 3, -2}), 4.0f);
  EXPECT_FLOAT_EQ(metric_of<L1>({1.5f}, {1.5f}), 0.0f);
}

TEST(Metric, HandComputedL2) {
  // sqrt(1 + 1 + 4) = sqrt(6)
  EXPECT_FLOAT_EQ(metric_of<L2>({3, 4, 0}, {4, 3, -2}), std::sqrt(6.0f));
  EXPECT_FLOAT_EQ(metric_of<L2>({0, 0}, {3, 4}), 5.0f);
}

TEST(Metric, HandComputedCosine) {
  // (3,4).(4,3) = 24, |a| = |b| = 5: 1 - 24/25 = 0.04
  EXPECT_NEAR(metric_of<Cosine>({3, 4}, {4, 3}), 0.04f, 1e-7f);
  EXPECT_NEAR(metric_of<Cosine>({1, 0}, {0, 1}), 1.0f, 1e-7f);   // orthogonal
  EXPECT_NEAR(metric_of<Cosine>({1, 2}, {-1, -2}), 2.0f, 1e-7f);  // opposite
  EXPECT_EQ(metric_of<Cosine>({2, 4}, {1, 2}), 0.0f);              // parallel, clamped at 0
}

TEST(Metric, CosineZeroVectorsHaveDefinedValues) {
  EXPECT_EQ(metric_of<Cosine>({0, 0, 0}, {0, 0, 0}), 0.0f);  // unchanged token: no shift
  EXPECT_EQ(metric_of<Cosine>({0, 0, 0}, {1, 2, 3}), 1.0f);  // one zero: similarity 0
  EXPECT_EQ(metric_of<Cosine>({1, 2, 3}, {0, 0, 0}), 1.0f);
}

TEST(Metric, CombineEqualsSequentialAccumulation) {
  const std::vector<float> a{1, -2, 3, 0.5f, 7}, b{0, 2, -1, 0.25f, 1};
  auto lo = Cosine::init(), hi = Cosine::init();
  for (int i = 0; i < 2; ++i) Cosine::accumulate(lo, a[i], b[i]);
  for (int i = 2; i < 5; ++i) Cosine::accumulate(hi, a[i], b[i]);
  EXPECT_FLOAT_EQ(Cosine::finalize(Cosine::combine(lo, hi)), metric_of<Cosine>(a, b));
}

TEST(Metric, NonFiniteInputsPropagate) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_TRUE(std::isnan(metric_of<L1>({1, nan}, {1, 1})));
  EXPECT_TRUE(std::isnan(metric_of<L2>({1, nan}, {1, 1})));
  EXPECT_TRUE(std::isnan(metric_of<Cosine>({1, nan}, {1, 1})));
  EXPECT_EQ(metric_of<L2>({1, inf}, {1, 1}), inf);
  EXPECT_TRUE(std::isnan(metric_of<L2>({inf}, {inf})));  // inf - inf
  // Beside a zero vector too: NaN, not the zero rule's 1, so the token still
  // ranks last (a post-ReLU pixel is often all zero).
  EXPECT_TRUE(std::isnan(metric_of<Cosine>({nan, 1}, {0, 0})));
  EXPECT_TRUE(std::isnan(metric_of<Cosine>({0, 0}, {1, nan})));
  EXPECT_TRUE(std::isnan(metric_of<Cosine>({inf}, {0})));
  EXPECT_TRUE(std::isnan(metric_of<Cosine>({1e20f}, {0})));  // its square overflows
}

// The float range of docs/policies.md: squares past FLT_MAX, and squares
// that underflow to 0.
TEST(Metric, FloatRangeEdgesHaveDefinedValues) {
  // |a - b| = 2e19: its square overflows, so L2 is inf, not a rounded number.
  EXPECT_EQ(metric_of<L2>({2e19f}, {0}), std::numeric_limits<float>::infinity());
  EXPECT_FLOAT_EQ(metric_of<L2>({1e18f, 0}, {0, 1e18f}), std::sqrt(2.0f) * 1e18f);  // below the edge
  // A norm above ~1.8e19 leaves no trustworthy ratio: NaN, never the
  // plausible 1 that 1 - dot / inf would give (or the NaN of inf / inf).
  EXPECT_TRUE(std::isnan(metric_of<Cosine>({1e20f, 1e20f}, {1, 1})));
  EXPECT_TRUE(std::isnan(metric_of<Cosine>({1e20f}, {2e19f})));
  EXPECT_NEAR(metric_of<Cosine>({1e18f, 2e18f}, {2, 4}), 0.0f, 1e-6f);  // large but in range: parallel
  // Every channel below ~1e-23: the squares underflow and the vector counts as zero.
  EXPECT_EQ(metric_of<Cosine>({1e-25f, 1e-25f}, {1, 1}), 1.0f);
  EXPECT_EQ(metric_of<Cosine>({1e-25f}, {1e-25f}), 0.0f);
  EXPECT_NEAR(metric_of<Cosine>({1e-15f, 1e-15f}, {1, 1}), 0.0f, 1e-6f);  // small but in range
}

struct NotAMetric {};
static_assert(rs::policies::is_metric_v<L1> && rs::policies::is_metric_v<L2> &&
              rs::policies::is_metric_v<Cosine>);
static_assert(!rs::policies::is_metric_v<NotAMetric> && !rs::policies::is_metric_v<int>);
