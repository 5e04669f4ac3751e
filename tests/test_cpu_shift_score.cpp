// rs::shift_score on the Host against the double-precision reference, for
// every Metric x dtype, over odd and model-sized shapes, raw and strided.

#include <cmath>
#include <limits>
#include <tuple>

#include "test_support.hpp"

template <class P>
class HostShiftScore : public ::testing::Test {};
TYPED_TEST_SUITE(HostShiftScore, MetricDtypes, MetricDtypeNames);

TYPED_TEST(HostShiftScore, MatchesReferenceOverShapes) {
  using M = typename TypeParam::Metric;
  using T = typename TypeParam::Type;
  std::uint32_t seed = 1;
  for (int tokens : {1, 197, 1025}) {
    for (int channels : {1, 3, 384, 1000}) {
      const int batch = tokens == 1025 ? 1 : 3;
      const std::size_t n = std::size_t(batch) * tokens * channels;
      auto before = store<T>(ref::random_floats(n, seed++));
      auto after = store<T>(ref::random_floats(n, seed++));
      std::vector<float> scores(std::size_t(batch) * tokens, -1.0f);
      rs::shift_score<M>(rs::Host{}, before.data.data(), after.data.data(), scores.data(), batch,
                         tokens, channels);
      const auto expected =
          ref::scores(ref_metric<M>(), before.values, after.values, batch, tokens, channels);
      for (std::size_t i = 0; i < scores.size(); ++i) {
        ASSERT_NEAR(scores[i], expected[i], score_tolerance(expected[i], channels))
            << "tokens " << tokens << " channels " << channels << " row " << i;
      }
    }
  }
}

TYPED_TEST(HostShiftScore, StridedViewsMatchContiguous) {
  using M = typename TypeParam::Metric;
  using T = typename TypeParam::Type;
  const int batch = 2, tokens = 37, channels = 70;
  // before lives in a buffer of 2*channels per token (a slice of a wider
  // tensor); after is stored [N, B, C] (batch stride C, token stride B*C);
  // scores are written transposed, [N, B].
  auto wide = store<T>(ref::random_floats(std::size_t(batch) * tokens * 2 * channels, 11));
  auto after_nbc = store<T>(ref::random_floats(std::size_t(batch) * tokens * channels, 12));
  std::vector<float> scores_nb(std::size_t(batch) * tokens);

  rs::TensorView<const T, 3> before{wide.data.data() + channels,
                                    {batch, tokens, channels},
                                    {std::int64_t(tokens) * 2 * channels, 2 * channels, 1}};
  rs::TensorView<const T, 3> after{after_nbc.data.data(),
                                   {batch, tokens, channels},
                                   {channels, std::int64_t(batch) * channels, 1}};
  rs::TensorView<float, 2> scores{scores_nb.data(), {batch, tokens}, {1, batch}};
  rs::shift_score<M>(rs::Host{}, before, after, scores);

  for (int b = 0; b < batch; ++b) {
    for (int t = 0; t < tokens; ++t) {
      const float* bp = wide.values.data() + (std::size_t(b) * tokens + t) * 2 * channels + channels;
      const float* ap = after_nbc.values.data() + (std::size_t(t) * batch + b) * channels;
      const double expected = ref::score(ref_metric<M>(), ap, bp, channels);
      ASSERT_NEAR(scores_nb[std::size_t(t) * batch + b], expected, score_tolerance(expected, channels));
    }
  }
}

TEST(HostShiftScore, ThreadCountDoesNotChangeResults) {
  const int batch = 4, tokens = 197, channels = 384;
  const auto before = ref::random_floats(std::size_t(batch) * tokens * channels, 5);
  const auto after = ref::random_floats(before.size(), 6);
  std::vector<float> one(std::size_t(batch) * tokens), two(one.size());
  rs::shift_score<rs::policies::L2>(rs::Host{1}, before.data(), after.data(), one.data(), batch,
                                    tokens, channels);
  rs::shift_score<rs::policies::L2>(rs::Host{2}, before.data(), after.data(), two.data(), batch,
                                    tokens, channels);
  EXPECT_EQ(one, two);  // bitwise: a token's reduction never depends on the thread split
}

TEST(HostShiftScore, CosineZeroTokens) {
  const int channels = 5;
  std::vector<float> before(3 * channels, 0.0f), after(3 * channels, 0.0f);
  for (int c = 0; c < channels; ++c) {
    before[1 * channels + c] = 1.0f + c;  // token 1: before nonzero, after zero
    after[2 * channels + c] = 2.0f - c;   // token 2: after nonzero, before zero
  }
  std::vector<float> scores(3, -1.0f);
  rs::shift_score<rs::policies::Cosine>(rs::Host{}, before.data(), after.data(), scores.data(), 1,
                                        3, channels);
  EXPECT_EQ(scores[0], 0.0f);
  EXPECT_EQ(scores[1], 1.0f);
  EXPECT_EQ(scores[2], 1.0f);
}

TEST(HostShiftScore, NonFiniteInputsStayInTheirToken) {
  const int tokens = 4, channels = 33;
  auto before = ref::random_floats(std::size_t(tokens) * channels, 7);
  auto after = ref::random_floats(before.size(), 8);
  after[1 * channels + 20] = std::numeric_limits<float>::quiet_NaN();
  after[2 * channels + 3] = std::numeric_limits<float>::infinity();
  std::vector<float> scores(tokens);
  rs::shift_score<rs::policies::L2>(rs::Host{}, before.data(), after.data(), scores.data(), 1,
                                    tokens, channels);
  EXPECT_TRUE(std::isfinite(scores[0]));
  EXPECT_TRUE(std::isnan(scores[1]));
  EXPECT_EQ(scores[2], std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isfinite(scores[3]));
  EXPECT_THROW(rs::check_finite(rs::Host{}, after.data(), std::int64_t(after.size()), "after"),
               rs::InvalidArgument);
  try {
    rs::check_finite(rs::Host{}, after.data(), std::int64_t(after.size()), "after");
  } catch (const rs::InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("after[53] = nan"), std::string::npos) << e.what();
  }
  EXPECT_NO_THROW(rs::check_finite(rs::Host{}, before.data(), std::int64_t(before.size()), "before"));
}
