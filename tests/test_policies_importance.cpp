// Baseline importance policies and the runtime -> template table.

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include <repshift/repshift.hpp>

#include "test_support.hpp"

namespace rs = repshift;
namespace P = rs::policies;

TEST(Importance, NormIsTheAfterTokensL2Norm) {
  auto acc = P::TokenNorm::init();
  P::TokenNorm::accumulate(acc, 3.0f, 100.0f);  // `before` is ignored
  P::TokenNorm::accumulate(acc, 4.0f, -7.0f);
  EXPECT_FLOAT_EQ(P::TokenNorm::finalize(acc), 5.0f);
  static_assert(P::is_metric_v<P::TokenNorm> && P::is_importance_v<P::TokenNorm>);
  static_assert(P::is_importance_v<P::Random> && P::is_importance_v<P::ClsAttention> && !P::is_metric_v<P::Random>);
  static_assert(!P::valid_site_importance_v<P::Mlp, P::ClsAttention> &&
                P::valid_site_importance_v<P::Attention, P::ClsAttention> && P::valid_site_importance_v<P::BlockOutput, P::L2>);
}

TEST(Importance, InvertedReversesTheOrder) {
  using Inv = P::Inverted<P::L2>;
  static_assert(P::is_metric_v<Inv>);
  auto acc = Inv::init();
  Inv::accumulate(acc, 3.0f, 0.0f);
  Inv::accumulate(acc, 0.0f, 4.0f);
  EXPECT_FLOAT_EQ(Inv::finalize(acc), -5.0f);
  // Keeping the top of Inverted<L2> keeps the lowest L2 shifts.
  const std::vector<float> before(4 * 2, 0.0f), after{1, 0, 5, 0, 2, 0, 0.5f, 0};
  std::vector<float> scores(4);
  std::vector<int> kept(2);
  rs::shift_score<Inv>(rs::Host{}, before.data(), after.data(), scores.data(), 1, 4, 2);
  rs::select_top(rs::Host{}, scores.data(), kept.data(), 1, 4, 2);
  EXPECT_EQ(kept, (std::vector<int>{0, 3}));  // shifts 1 and 0.5, the two smallest
}

TEST(Importance, RandomIsSeededUniformAndDeterministic) {
  double sum = 0;
  int below_quarter = 0;
  const int n = 20000;
  for (int t = 0; t < n; ++t) {
    const float s = P::Random::score(42, std::uint64_t(t));
    ASSERT_GE(s, 0.0f);
    ASSERT_LT(s, 1.0f);
    ASSERT_EQ(s, P::Random::score(42, std::uint64_t(t)));
    sum += s;
    below_quarter += s < 0.25f;
  }
  EXPECT_NEAR(sum / n, 0.5, 0.01);
  EXPECT_NEAR(below_quarter / double(n), 0.25, 0.01);
  EXPECT_NE(P::Random::score(1, 0), P::Random::score(2, 0));
  EXPECT_NE(P::Random::score(1, 1), P::Random::score(2, 1));
  EXPECT_NE(P::Random::score(1, 0), P::Random::score(1, 1));
  // The exact splitmix64 values, from an independent Python evaluation
  // (tests/python/test_torch_ops.py's splitmix_score): top 24 bits / 2^24.
  struct Golden {
    std::uint64_t seed, token;
    std::uint32_t top24;
  };
  for (const Golden g : {Golden{0, 0, 15924901u}, Golden{0, 1, 10929753u}, Golden{5, 196, 5431079u},
                         Golden{12345, 7, 7859837u}, Golden{(1ull << 63) + 3, 1ull << 40, 11878651u}}) {
    EXPECT_EQ(P::Random::score(g.seed, g.token), float(g.top24) / 16777216.0f) << g.seed << ", " << g.token;
  }
}

TEST(Dispatch, NamesSelectExactlyOneInstantiation) {
  std::string picked;
  rs::with_policies("mlp", "l2", [&](auto s, auto i) { picked = std::string(decltype(s)::name) + "/" + decltype(i)::name; });
  EXPECT_EQ(picked, "mlp/l2");
  rs::with_policies("attn", "cls_attn", [&](auto s, auto i) { picked = std::string(decltype(s)::name) + "/" + decltype(i)::name; });
  EXPECT_EQ(picked, "attn/cls_attn");
  int calls = 0;
  for (const char* site : {"attn", "mlp", "block"})
    for (const char* imp : {"l1", "l2", "cosine", "norm", "random"}) rs::with_policies(site, imp, [&](auto, auto) { ++calls; });
  EXPECT_EQ(calls, 15);
  rs::with_policies("block", "norm", "fuse", [&](auto s, auto i, auto c) {
    picked = std::string(decltype(s)::name) + "/" + decltype(i)::name + "/" + decltype(c)::name;
  });
  EXPECT_EQ(picked, "block/norm/fuse");
  rs::with_policies("attn", "cosine", "merge", [&](auto s, auto i, auto c) {
    picked = std::string(decltype(s)::name) + "/" + decltype(i)::name + "/" + decltype(c)::name;
  });
  EXPECT_EQ(picked, "attn/cosine/merge");
  rs::with_policies("ssm_scan", "block", "norm", "prune", [&](auto b, auto s, auto i, auto c) {
    picked = std::string(decltype(b)::name) + "/" + decltype(s)::name + "/" + decltype(i)::name + "/" + decltype(c)::name;
  });
  EXPECT_EQ(picked, "ssm_scan/block/norm/prune");
}

TEST(Dispatch, UnknownNamesAndInvalidPairsThrowNamingThem) {
  expect_refused([] { rs::with_policies("mpl", "l2", [](auto, auto) {}); }, {"site = 'mpl' is not one of attn, mlp, block"});
  expect_refused([] { rs::with_policies("mlp", "L3", [](auto, auto) {}); }, {"importance = 'L3' is not one of"});
  expect_refused([] { rs::with_policies("mlp", "cls_attn", [](auto, auto) {}); }, {"site = 'mlp'", "use site = 'attn'"});
  expect_refused([] { rs::with_policies("ssm_scan", "mlp", "l2", "prune", [](auto, auto, auto, auto) {}); },
                 {"backbone = 'ssm_scan' takes site = 'block'"});
  expect_refused([] { rs::with_policies("ssm_scan", "block", "l2", "merge", [](auto, auto, auto, auto) {}); },
                 {"compress = 'merge'"});
  expect_refused([] { rs::with_policies("cnn", "block", "l2", "prune", [](auto, auto, auto, auto) {}); },
                 {"backbone = 'cnn' is not one of transformer, ssm_scan"});
  expect_refused([] { rs::with_policies("mlp", "l2", "tome", [](auto, auto, auto) {}); },
                 {"compress = 'tome' is not one of prune, fuse, merge"});
}

// with_metric: the three shift metrics the entry points take, each selecting
// the type whose score it computes; the baselines are not metrics.
TEST(Dispatch, WithMetricSelectsTheShiftMetricsAlone) {
  const float after[2] = {3.0f, -1.0f}, before[2] = {1.0f, 1.0f};  // difference (2, -2)
  auto score = [&](const char* name) {
    return rs::with_metric(name, [&](auto m) {
      using M = decltype(m);
      auto acc = M::init();
      for (int c = 0; c < 2; ++c) M::accumulate(acc, after[c], before[c]);
      return M::finalize(acc);
    });
  };
  EXPECT_FLOAT_EQ(score("l1"), 4.0f);
  EXPECT_FLOAT_EQ(score("l2"), std::sqrt(8.0f));
  EXPECT_FLOAT_EQ(score("cosine"), 1.0f - 2.0f / (std::sqrt(10.0f) * std::sqrt(2.0f)));
  expect_refused([&] { score("norm"); }, {"metric = 'norm' is not one of l1, l2, cosine"});
  expect_refused([&] { score("random"); }, {"metric = 'random' is not one of l1, l2, cosine"});
}

// The backbone dimension of the sweep: every combination a Block accepts,
// none it refuses.
TEST(Sweep, ExpandsExactlyTheValidCombinations) {
  int transformer = 0, ssm = 0;
  rs::for_each_combination(rs::AllBackbones{}, rs::AllSites{}, rs::AllImportances{}, rs::AllCompressions{},
                           [&](auto b, auto s, auto i, auto c) {
                             using B = decltype(b);
                             static_assert(rs::policies::valid_combination_v<B, decltype(s), decltype(i), decltype(c)>);
                             if constexpr (std::is_same_v<B, P::SsmScan>) {
                               static_assert(std::is_same_v<decltype(s), P::BlockOutput> && std::is_same_v<decltype(c), P::Prune>);
                               ++ssm;
                             } else {
                               ++transformer;
                             }
                           });
  EXPECT_EQ(transformer, 3 * 7 * 3 - 2 * 2 * 3);  // ClsAttention, AttentionReceived only at the attention site
  EXPECT_EQ(ssm, 5);  // BlockOutput site, Prune, every importance but the two read off the attention map
  int three_lists = 0;
  rs::for_each_combination(rs::AllSites{}, rs::AllImportances{}, rs::AllCompressions{}, [&](auto, auto, auto) { ++three_lists; });
  EXPECT_EQ(three_lists, transformer);
}
