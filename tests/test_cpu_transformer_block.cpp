// Block<Transformer, Site, Metric, Prune, Norm> against the naive double
// reference for every Site x Metric x Norm: output, shift scores, and
// pruning (kept set consistent with the reference scores; output equal to
// the reference pruned with the same indices).

#include <gtest/gtest.h>

#include <limits>
#include <tuple>

#include "test_support.hpp"
#include "transformer_fixture.hpp"

namespace P = rs::policies;

template <class S, class M, class N>
struct Combo {
  using Site = S;
  using Metric = M;
  using Norm = N;
};

template <class S>
constexpr ref::Site ref_site() {
  if constexpr (std::is_same_v<S, P::Attention>) return ref::Site::Attention;
  else if constexpr (std::is_same_v<S, P::Mlp>) return ref::Site::Mlp;
  else if constexpr (std::is_same_v<S, P::Update<P::Attention>>) return ref::Site::AttentionUpdate;
  else if constexpr (std::is_same_v<S, P::Update<P::Mlp>>) return ref::Site::MlpUpdate;
  else return ref::Site::Block;
}

using Combos = ::testing::Types<
    Combo<P::Attention, P::L1, P::PreNorm>, Combo<P::Attention, P::L2, P::PreNorm>,
    Combo<P::Attention, P::Cosine, P::PreNorm>, Combo<P::Mlp, P::L1, P::PreNorm>,
    Combo<P::Mlp, P::L2, P::PreNorm>, Combo<P::Mlp, P::Cosine, P::PreNorm>,
    Combo<P::BlockOutput, P::L1, P::PreNorm>, Combo<P::BlockOutput, P::L2, P::PreNorm>,
    Combo<P::BlockOutput, P::Cosine, P::PreNorm>, Combo<P::Attention, P::L1, P::PostNorm>,
    Combo<P::Attention, P::L2, P::PostNorm>, Combo<P::Attention, P::Cosine, P::PostNorm>,
    Combo<P::Mlp, P::L1, P::PostNorm>, Combo<P::Mlp, P::L2, P::PostNorm>,
    Combo<P::Mlp, P::Cosine, P::PostNorm>, Combo<P::BlockOutput, P::L1, P::PostNorm>,
    Combo<P::BlockOutput, P::L2, P::PostNorm>, Combo<P::BlockOutput, P::Cosine, P::PostNorm>,
    Combo<P::Mlp, P::TokenNorm, P::PreNorm>, Combo<P::BlockOutput, P::TokenNorm, P::PostNorm>,
    Combo<P::Update<P::Mlp>, P::L2, P::PreNorm>, Combo<P::Update<P::Mlp>, P::Cosine, P::PostNorm>,
    Combo<P::Update<P::Attention>, P::L1, P::PreNorm>, Combo<P::Update<P::Attention>, P::L2, P::PostNorm>>;

struct ComboNames {
  template <class C>
  static std::string GetName(int) {
    return std::string(C::Site::name) + "_" + C::Metric::name + "_" + C::Norm::name;
  }
};

template <class C>
class TransformerBlock : public ::testing::Test {};
TYPED_TEST_SUITE(TransformerBlock, Combos, ComboNames);

TYPED_TEST(TransformerBlock, MatchesNaiveReference) {
  using C = TypeParam;
  using B = rs::Block<P::Transformer, typename C::Site, typename C::Metric, P::Prune, typename C::Norm>;
  constexpr bool post = std::is_same_v<typename C::Norm, P::PostNorm>;
  const int batch = 2, tokens = 41, dim = 48, heads = 3, hidden = 192;
  const RandomBlockWeights w(dim, heads, hidden, 5);
  const auto x = ref::random_floats(std::size_t(batch) * tokens * dim, 17);
  const ref::Mat xd(x.begin(), x.end());
  rs::Workspace<rs::Host> ws;

  // Unpruned, scores requested.
  std::vector<float> y(x.size(), NAN), scores(std::size_t(batch) * tokens, NAN);  // every element written
  auto args = rs::TransformerBlockArgs::dense(x.data(), y.data(), batch, tokens);
  args.scores = scores.data();
  B::forward(rs::Host{}, w.view(), args, ws);
  const auto full = ref::block(xd, batch, tokens, w.reference(), post, ref_site<typename C::Site>(),
                               ref_metric<typename C::Metric>(), {}, tokens);
  EXPECT_LT(ref::max_rel_error(y, full.y), 5e-5);
  EXPECT_LT(ref::max_rel_error(scores, full.scores), 5e-5);

  // The first token of each sample alone (a class-token head's last block).
  std::vector<float> first(std::size_t(batch) * dim, NAN);
  auto head = rs::TransformerBlockArgs::dense(x.data(), first.data(), batch, tokens);
  head.first_token_only = true;
  B::forward(rs::Host{}, w.view(), head, ws);
  std::vector<double> want_first;
  for (int b = 0; b < batch; ++b) {
    const auto row = full.y.begin() + std::ptrdiff_t(b) * tokens * dim;
    want_first.insert(want_first.end(), row, row + dim);
  }
  EXPECT_LT(ref::max_rel_error(first, want_first), 5e-5);

  // Pruned to 29 of 41 tokens, CLS protected.
  const int keep = 29;
  std::vector<float> yp(std::size_t(batch) * keep * dim, NAN);
  std::vector<int> keep_idx(std::size_t(batch) * keep, -1);
  args.y = yp.data();
  args.keep = keep;
  args.keep_idx = keep_idx.data();
  B::forward(rs::Host{}, w.view(), args, ws);
  // The kept set is the top of the reference scores (up to float noise).
  for (int b = 0; b < batch; ++b) {
    const int* idx = keep_idx.data() + std::size_t(b) * keep;
    EXPECT_NE(std::find(idx, idx + keep, 0), idx + keep) << "CLS must be kept, image " << b;
    EXPECT_TRUE(kept_is_top(idx, keep, full.scores.data() + std::size_t(b) * tokens, tokens, 0)) << "image " << b;
  }
  const auto pruned = ref::block(xd, batch, tokens, w.reference(), post, ref_site<typename C::Site>(),
                                 ref_metric<typename C::Metric>(), keep_idx, keep);
  EXPECT_LT(ref::max_rel_error(yp, pruned.y), 5e-5);
}

TEST(TransformerBlockShapes, DeitSmallShapeMatchesReference) {
  using B = rs::Block<P::Transformer, P::Mlp, P::L2>;
  const int batch = 1, tokens = 197, dim = 384, heads = 6, hidden = 1536;
  const RandomBlockWeights w(dim, heads, hidden, 9);
  const auto x = ref::random_floats(std::size_t(batch) * tokens * dim, 3);
  std::vector<float> y(x.size()), scores(tokens);
  rs::Workspace<rs::Host> ws;
  auto args = rs::TransformerBlockArgs::dense(x.data(), y.data(), batch, tokens);
  args.scores = scores.data();
  B::forward(rs::Host{}, w.view(), args, ws);
  const auto want = ref::block(ref::Mat(x.begin(), x.end()), batch, tokens, w.reference(), false,
                               ref::Site::Mlp, ref::Metric::L2, {}, tokens);
  EXPECT_LT(ref::max_rel_error(y, want.y), 1e-4);
  EXPECT_LT(ref::max_rel_error(scores, want.scores), 1e-4);
}

TEST(TransformerBlockErrors, RefusedArguments) {
  using B = rs::Block<P::Transformer, P::Mlp, P::L2>;
  const RandomBlockWeights w(16, 2, 32, 1);
  std::vector<float> x(2 * 5 * 16), y(x.size());
  rs::Workspace<rs::Host> ws;
  auto args = rs::TransformerBlockArgs::dense(x.data(), y.data(), 2, 5);
  args.keep = 6;
  EXPECT_THROW(B::forward(rs::Host{}, w.view(), args, ws), rs::InvalidArgument);
  args.keep = 5;
  args.y = const_cast<float*>(args.x);
  EXPECT_THROW(B::forward(rs::Host{}, w.view(), args, ws), rs::InvalidArgument);
  args.y = y.data();
  args.first_token_only = true;
  args.keep = 4;
  expect_refused([&] { B::forward(rs::Host{}, w.view(), args, ws); },
                 {"first_token_only compresses nothing", "keep = 4 must equal tokens = 5"});
  args.keep = 5;
  std::vector<float> scores(10);
  args.scores = scores.data();
  expect_refused([&] { B::forward(rs::Host{}, w.view(), args, ws); }, {"first_token_only computes no scores"});
  args.scores = nullptr;
  args.first_token_only = false;
  auto bad = w.view();
  bad.heads = 3;  // 16 % 3 != 0
  try {
    B::forward(rs::Host{}, bad, args, ws);
    ADD_FAILURE();
  } catch (const rs::InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("weights.dim = 16 is not a multiple of weights.heads = 3"),
              std::string::npos) << e.what();
  }
  // Sizes bounded before 3 x dim is taken, in forward and in reserve.
  auto huge = w.view();
  huge.dim = INT64_C(1) << 62;
  expect_refused([&] { B::forward(rs::Host{}, huge, args, ws); },
                 {"weights.dim = 4611686018427387904 must be <= INT_MAX / 3"});
  expect_refused([&] { B::reserve(ws, huge, 1, 1); }, {"reserve", "weights.dim = 4611686018427387904"});
  expect_refused([&] { B::reserve(ws, w.view(), INT64_MAX / 2, INT64_MAX / 2); }, {"batch x tokens", "overflows"});
  // y must not overlap x at all, not only start where x does: y one row in.
  std::vector<float> xy(std::size_t(11) * 16);
  auto shifted = rs::TransformerBlockArgs::dense(xy.data(), xy.data() + 16, 2, 5);
  expect_refused([&] { B::forward(rs::Host{}, w.view(), shifted, ws); },
                 {"y must not alias x: y's 640 bytes overlap x's 640 bytes (y - x = 64 bytes)"});
  // y right after x is fine (x: 5 rows, y: its 2 kept rows), and one row
  // earlier is refused.
  auto adjacent = rs::TransformerBlockArgs::dense(xy.data(), xy.data() + 5 * 16, 1, 5);
  adjacent.keep = 2;
  B::forward(rs::Host{}, w.view(), adjacent, ws);
  adjacent.y = xy.data() + 4 * 16;
  expect_refused([&] { B::forward(rs::Host{}, w.view(), adjacent, ws); }, {"(y - x = 256 bytes)"});
}

TEST(TransformerBlockImportance, MapAndRandomScores) {
  const int batch = 2, tokens = 23, dim = 32, heads = 4, keep = 15;
  const RandomBlockWeights w(dim, heads, 64, 12);
  const auto x = ref::random_floats(std::size_t(batch) * tokens * dim, 13);
  const ref::Mat xd(x.begin(), x.end());
  rs::Workspace<rs::Host> ws;
  std::vector<float> y(std::size_t(batch) * keep * dim), scores(std::size_t(batch) * tokens);
  std::vector<int> keep_idx(std::size_t(batch) * keep);
  auto a = rs::TransformerBlockArgs::dense(x.data(), y.data(), batch, tokens);
  a.keep = keep;
  a.scores = scores.data();
  a.keep_idx = keep_idx.data();

  // ClsAttention: the mean over heads of the CLS attention row (plain path).
  // Row 0 must stay the class token: protect 0 is refused.
  auto unprotected = a;
  unprotected.protect = 0;
  expect_refused([&] { rs::Block<P::Transformer, P::Attention, P::ClsAttention>::forward(rs::Host{}, w.view(), unprotected, ws); },
                 {"importance cls_attn reads query row 0 as the class token: protect = 0"});
  rs::Block<P::Transformer, P::Attention, P::ClsAttention>::forward(rs::Host{}, w.view(), a, ws);
  std::vector<double> cls;
  ref::block(xd, batch, tokens, w.reference(), false, ref::Site::Attention, ref::Metric::L2, {}, tokens, &cls);
  EXPECT_LT(ref::max_rel_error(scores, cls), 1e-5);
  const auto want = ref::block(xd, batch, tokens, w.reference(), false, ref::Site::Attention, ref::Metric::L2,
                               keep_idx, keep);
  EXPECT_LT(ref::max_rel_error(y, want.y), 5e-5);
  EXPECT_EQ(keep_idx, ref::select(scores, batch, tokens, keep, 1));

  // AttentionReceived: the mean over heads and queries of each key's column.
  rs::Block<P::Transformer, P::Attention, P::AttentionReceived>::forward(rs::Host{}, w.view(), a, ws);
  std::vector<double> received;
  ref::block(xd, batch, tokens, w.reference(), false, ref::Site::Attention, ref::Metric::L2, {}, tokens, nullptr, false,
             nullptr, &received);
  EXPECT_LT(ref::max_rel_error(scores, received), 1e-5);
  EXPECT_EQ(keep_idx, ref::select(scores, batch, tokens, keep, 1));
  EXPECT_LT(ref::max_rel_error(y, ref::block(xd, batch, tokens, w.reference(), false, ref::Site::Attention,
                                             ref::Metric::L2, keep_idx, keep)
                                      .y),
            5e-5);

  // Random: a pure function of (seed, token), the same for every sample (so
  // batch-invariant); the seed changes it.
  a.seed = 7;
  rs::Block<P::Transformer, P::Mlp, P::Random>::forward(rs::Host{}, w.view(), a, ws);
  for (int b = 0; b < batch; ++b)
    for (int t = 0; t < tokens; ++t)
      ASSERT_EQ(scores[std::size_t(b) * tokens + t], P::Random::score(7, std::uint64_t(t)));
  const auto first = keep_idx;
  a.seed = 8;
  rs::Block<P::Transformer, P::Mlp, P::Random>::forward(rs::Host{}, w.view(), a, ws);
  EXPECT_NE(keep_idx, first);
}

template <class S>
class TransformerBlockFuse : public ::testing::Test {};
using FuseSites = ::testing::Types<P::Attention, P::Mlp, P::BlockOutput>;
TYPED_TEST_SUITE(TransformerBlockFuse, FuseSites);

TYPED_TEST(TransformerBlockFuse, AppendsTheScoreWeightedMeanOfTheDroppedTokens) {
  using Site = TypeParam;
  using B = rs::Block<P::Transformer, Site, P::L2, P::Fuse>;
  const int batch = 2, tokens = 19, dim = 32, keep = 12;
  static_assert(B::output_tokens(19, 12) == 13 && B::output_tokens(19, 19) == 19);
  const RandomBlockWeights w(dim, 2, 64, 21);
  const auto x = ref::random_floats(std::size_t(batch) * tokens * dim, 22);
  std::vector<float> y(std::size_t(batch) * (keep + 1) * dim, NAN), scores(std::size_t(batch) * tokens);
  std::vector<int> keep_idx(std::size_t(batch) * keep);
  rs::Workspace<rs::Host> ws;
  auto a = rs::TransformerBlockArgs::dense(x.data(), y.data(), batch, tokens);
  a.keep = keep;
  a.scores = scores.data();
  a.keep_idx = keep_idx.data();
  B::forward(rs::Host{}, w.view(), a, ws);
  const auto want = ref::block(ref::Mat(x.begin(), x.end()), batch, tokens, w.reference(), false, ref_site<Site>(),
                               ref::Metric::L2, keep_idx, keep, nullptr, /*fuse=*/true);
  ASSERT_EQ(want.y.size(), y.size());
  EXPECT_LT(ref::max_rel_error(y, want.y), 5e-5);
}

// The fused row's weights, hand-computed: each dropped row's share of the
// dropped scores; +inf scores (an L2 shift past ~1.8e19) share the weight
// equally rather than giving inf / inf = NaN.
TEST(FuseRow, InfiniteScoresShareTheWeightEqually) {
  const float inf = std::numeric_limits<float>::infinity();
  const int batch = 2, tokens = 4, keep = 1, channels = 2;
  const std::vector<float> src = {1, 2, 100, 100, 3, 4, 7, 7,   // sample 0
                                  4, 8, 8, 4, 50, 50, 9, 9};    // sample 1
  const std::vector<float> scores = {inf, 2, inf, 5,   // dropped 0, 1, 2: weights 1/2, 0, 1/2
                                     1, 3, 0, 9};      // dropped 0, 1, 2: weights 1/4, 3/4, 0
  const std::vector<int> keep_idx = {3, 3};
  std::vector<float> out(std::size_t(batch) * (keep + 1) * channels, -1.0f);
  rs::FuseParams<float> p;
  p.src = src.data(), p.scores = scores.data(), p.keep_idx = keep_idx.data(), p.out = out.data();
  p.batch = batch, p.tokens = tokens, p.keep = keep, p.channels = channels;
  rs::Backend<rs::Host>::fuse_dropped(rs::Host{}, p);
  // Row `keep` of each sample; the kept rows are gather's, left alone here.
  EXPECT_EQ(out, (std::vector<float>{-1, -1, 2, 3, -1, -1, 7, 5}));
}

template <class S>
class TransformerBlockMerge : public ::testing::Test {};
TYPED_TEST_SUITE(TransformerBlockMerge, FuseSites);

// Merge: importance (the site's L2 shift) picks which A tokens merge, keys
// pick where, sizes weight the average and bias attention; all against the
// double reference, which makes its own merge decisions.
TYPED_TEST(TransformerBlockMerge, MatchesTheReferenceMergeWithProportionalAttention) {
  using Site = TypeParam;
  using B = rs::Block<P::Transformer, Site, P::L2, P::Merge>;
  const int batch = 2, tokens = 19, dim = 32, keep = 12;
  static_assert(B::output_tokens(19, 12) == 12);
  const RandomBlockWeights w(dim, 2, 64, 31);
  const auto x = ref::random_floats(std::size_t(batch) * tokens * dim, 32);
  auto sizes = ref::random_floats(std::size_t(batch) * tokens, 33, 1.0f, 5.0f);
  for (auto& s : sizes) s = std::round(s);
  std::vector<float> y(std::size_t(batch) * keep * dim, NAN), scores(std::size_t(batch) * tokens);
  std::vector<float> kept_sizes(std::size_t(batch) * keep, NAN);
  std::vector<int> keep_idx(std::size_t(batch) * keep);
  rs::Workspace<rs::Host> ws;
  auto a = rs::TransformerBlockArgs::dense(x.data(), y.data(), batch, tokens);
  a.keep = keep;
  a.scores = scores.data();
  a.keep_idx = keep_idx.data();
  a.sizes = sizes.data();
  a.kept_sizes = kept_sizes.data();
  B::forward(rs::Host{}, w.view(), a, ws);

  ref::MergeSpec spec;
  spec.sizes.assign(sizes.begin(), sizes.end());
  const auto want = ref::block(ref::Mat(x.begin(), x.end()), batch, tokens, w.reference(), false, ref_site<Site>(),
                               ref::Metric::L2, {}, keep, nullptr, false, &spec);
  EXPECT_LT(ref::max_rel_error(scores, want.scores), 1e-5);
  EXPECT_EQ(keep_idx, spec.keep_idx);
  ASSERT_EQ(want.y.size(), y.size());
  EXPECT_LT(ref::max_rel_error(y, want.y), 5e-5);
  EXPECT_LT(ref::max_rel_error(kept_sizes, spec.out_sizes), 1e-7);

  // keep below what set A can give, sizes that are not positive, and sizes
  // passed to a block that does not merge: named errors.
  a.keep = 9;  // 18 free tokens: A = 9, so keep >= 10
  EXPECT_THROW(B::forward(rs::Host{}, w.view(), a, ws), rs::InvalidArgument);
  a.keep = keep;
  sizes[5] = -1.0f;
  EXPECT_THROW(B::forward(rs::Host{}, w.view(), a, ws), rs::InvalidArgument);
  sizes[5] = 1.0f;
  EXPECT_THROW((rs::Block<P::Transformer, Site, P::L2, P::Prune>::forward(rs::Host{}, w.view(), a, ws)),
               rs::InvalidArgument);
}
