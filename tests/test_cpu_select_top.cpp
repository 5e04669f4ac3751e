// rs::select_top on the Host against a full-sort reference: ties, protect,
// NaN, keep extremes, strided views, thread counts.

#include <cfloat>
#include <cmath>
#include <limits>
#include <random>

#include <repshift/cpu/kept_token.hpp>

#include "test_support.hpp"

namespace {

// Scores drawn from a few values so ties are everywhere.
std::vector<float> tied_scores(std::size_t n, std::uint32_t seed, int levels) {
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int> dist(0, levels - 1);
  std::vector<float> s(n);
  for (auto& x : s) x = float(dist(gen)) * 0.5f;
  return s;
}

}  // namespace

TEST(HostSelectTop, MatchesReferenceOverShapes) {
  std::uint32_t seed = 100;
  for (int tokens : {1, 2, 197, 1025}) {
    for (int protect : {0, 1}) {
      for (double ratio : {1.0, 0.8, 0.5, 0.01}) {
        const int batch = 3;
        const int keep = rs::policies::keep_count(tokens, ratio, protect);
        for (int levels : {3, 1 << 20}) {
          const auto scores = tied_scores(std::size_t(batch) * tokens, seed++, levels);
          std::vector<int> keep_idx(std::size_t(batch) * keep, -1);
          rs::select_top(rs::Host{}, scores.data(), keep_idx.data(), batch, tokens, keep, protect);
          ASSERT_EQ(keep_idx, ref::select(scores, batch, tokens, keep, protect))
              << "tokens " << tokens << " keep " << keep << " protect " << protect;
        }
      }
    }
  }
}

TEST(HostSelectTop, HandComputedTiesAndProtect) {
  //                         0     1     2     3     4     5
  const std::vector<float> s{0.1f, 5.0f, 2.0f, 5.0f, 2.0f, -0.0f};
  std::vector<int> idx(3);
  rs::select_top(rs::Host{}, s.data(), idx.data(), 1, 6, 3);
  EXPECT_EQ(idx, (std::vector<int>{1, 2, 3}));  // 5, 5, then the lower of the two 2s
  rs::select_top(rs::Host{}, s.data(), idx.data(), 1, 6, 3, /*protect=*/1);
  EXPECT_EQ(idx, (std::vector<int>{0, 1, 3}));  // token 0 protected despite its low score
  const std::vector<float> zeros{-0.0f, 0.0f, -0.0f};
  std::vector<int> one(1);
  rs::select_top(rs::Host{}, zeros.data(), one.data(), 1, 3, 1);
  EXPECT_EQ(one[0], 0);  // -0 == +0: lowest index wins
}

TEST(HostSelectTop, NaNScoresRankLowestAndNeverEscapeTheRange) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> s{nan, -inf, nan, 3.0f, nan, inf};
  std::vector<int> idx(4);
  rs::select_top(rs::Host{}, s.data(), idx.data(), 1, 6, 4);
  EXPECT_EQ(idx, (std::vector<int>{0, 1, 3, 5}));  // inf, 3, -inf, then the first NaN
  const std::vector<float> all_nan(50, nan);
  std::vector<int> kept(20);
  rs::select_top(rs::Host{}, all_nan.data(), kept.data(), 1, 50, 20, 2);
  for (int k = 0; k < 20; ++k) EXPECT_EQ(kept[k], k);
}

TEST(HostSelectTop, StridedViewsAndThreadCounts) {
  const int batch = 5, tokens = 97, keep = 40, protect = 3;
  const auto scores_nb = tied_scores(std::size_t(batch) * tokens, 9, 7);  // stored [N, B]
  std::vector<float> scores_bn(scores_nb.size());
  for (int b = 0; b < batch; ++b)
    for (int t = 0; t < tokens; ++t) scores_bn[std::size_t(b) * tokens + t] = scores_nb[std::size_t(t) * batch + b];
  const auto expected = ref::select(scores_bn, batch, tokens, keep, protect);

  for (int threads : {1, 2}) {
    std::vector<int> out_kb(std::size_t(batch) * keep, -1);  // written [K, B]
    rs::TensorView<const float, 2> scores{scores_nb.data(), {batch, tokens}, {1, batch}};
    rs::TensorView<int, 2> keep_idx{out_kb.data(), {batch, keep}, {1, batch}};
    rs::select_top(rs::Host{threads}, scores, keep_idx, protect);
    for (int b = 0; b < batch; ++b)
      for (int k = 0; k < keep; ++k)
        ASSERT_EQ(out_kb[std::size_t(k) * batch + b], expected[std::size_t(b) * keep + k]);
  }
}

// SsmScan's kept token is forced in by a +inf score. Another token's +inf
// (a float L2 that overflowed) ranks just below it, so the kept token is
// kept and found among the kept indices, not lost to a lower index's tie.
TEST(HostSelectTop, KeptTokenOutranksAnotherInfiniteScore) {
  const std::vector<float> scores{INFINITY, 1.0f, 2.0f, NAN, 3.0f, 0.5f, INFINITY};
  const int tokens = 7;
  std::vector<float> ranked(tokens);
  for (int keep : {1, 2}) {
    int keep_token = 5;
    rs::cpu::rank_kept_token(rs::Host{}, scores.data(), &keep_token, 1, tokens, ranked.data());
    EXPECT_EQ(ranked[0], FLT_MAX);
    EXPECT_EQ(ranked[5], INFINITY);
    EXPECT_EQ(ranked[6], FLT_MAX);
    EXPECT_TRUE(std::isnan(ranked[3]));
    std::vector<int> idx(std::size_t(keep), -1);
    rs::select_top(rs::Host{}, ranked.data(), idx.data(), 1, tokens, keep);
    // The kept token, then the first of the tied FLT_MAX.
    const std::vector<int> want = keep == 1 ? std::vector<int>{5} : std::vector<int>{0, 5};
    EXPECT_EQ(idx, want);
    rs::cpu::relocate_kept_token(rs::Host{}, idx.data(), 1, keep, &keep_token);
    EXPECT_EQ(keep_token, keep - 1);
  }
}
