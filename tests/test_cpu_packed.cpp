// Packed (varlen) batches: every token entry point and the transformer
// Block, for every policy, against the same samples run one at a time.
// A sample's output, scores and kept indices must not depend on the batch
// it runs in (batch invariance), and no work may depend on padding.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include <repshift/api/entry_points.hpp>
#include <repshift/cpu/attention.hpp>
#include <repshift/cpu/merge_tokens.hpp>
#include <repshift/cpu/backend.hpp>
#include <repshift/models/prune_schedule.hpp>

#include "test_support.hpp"
#include "transformer_fixture.hpp"

namespace P = rs::policies;

namespace {

// Lengths not multiples of any tile, one shorter than a typical keep.
const std::vector<int> kLengths = {23, 5, 40, 1, 17};

std::vector<int> cu_of(const std::vector<int>& lengths) {
  return rs::cu_seqlens_of(lengths.data(), int(lengths.size()));
}

template <class T>
std::vector<T> slice(const std::vector<T>& v, std::int64_t begin, std::int64_t count, std::int64_t width = 1) {
  return {v.begin() + begin * width, v.begin() + (begin + count) * width};
}

}  // namespace

TEST(PackedEntryPoints, ScoreSelectGatherMatchOneSampleAtATime) {
  const int batch = int(kLengths.size()), channels = 12, protect = 1;
  const auto cu = cu_of(kLengths);
  const int total = cu.back();
  const auto before = ref::random_floats(std::size_t(total) * channels, 1);
  const auto after = ref::random_floats(std::size_t(total) * channels, 2);
  const auto schedule = rs::PruneSchedule::drop({{0, 0.3}}, protect);
  const auto kept_cu = rs::kept_cu_seqlens(cu.data(), batch, [&](int n) { return schedule.keep_at(0, n); });
  const int max_n = rs::max_seqlen(cu.data(), batch), max_k = rs::max_seqlen(kept_cu.data(), batch);

  std::vector<float> scores(static_cast<std::size_t>(total));
  rs::shift_score_varlen<P::L2>(rs::Host{}, before.data(), after.data(), scores.data(), cu.data(), batch, total, channels);
  std::vector<int> keep_idx(std::size_t(kept_cu.back()));
  rs::select_top_varlen(rs::Host{}, scores.data(), cu.data(), kept_cu.data(), keep_idx.data(), batch, max_n, max_k,
                        protect);
  std::vector<float> out(std::size_t(kept_cu.back()) * channels);
  rs::gather_tokens_varlen(rs::Host{}, before.data(), cu.data(), keep_idx.data(), kept_cu.data(), out.data(), batch,
                           max_n, max_k, channels);

  for (int b = 0; b < batch; ++b) {
    const int n = kLengths[std::size_t(b)], k = kept_cu[std::size_t(b) + 1] - kept_cu[std::size_t(b)];
    EXPECT_EQ(k, n - int(std::floor(0.3 * n + 1e-9))) << "sample " << b;
    const auto xb = slice(before, cu[std::size_t(b)], n, channels);
    const auto ab = slice(after, cu[std::size_t(b)], n, channels);
    std::vector<float> s(static_cast<std::size_t>(n));
    rs::shift_score<P::L2>(rs::Host{}, xb.data(), ab.data(), s.data(), 1, n, channels);
    EXPECT_EQ(s, slice(scores, cu[std::size_t(b)], n)) << "sample " << b;
    std::vector<int> idx(static_cast<std::size_t>(k));
    rs::select_top(rs::Host{}, s.data(), idx.data(), 1, n, k, std::min(protect, k));
    EXPECT_EQ(idx, slice(keep_idx, kept_cu[std::size_t(b)], k)) << "sample " << b;
    EXPECT_EQ(idx, ref::select(s, 1, n, k, std::min(protect, k)));
    std::vector<float> o(std::size_t(k) * channels);
    rs::gather_tokens(rs::Host{}, xb.data(), idx.data(), o.data(), 1, n, k, channels);
    EXPECT_EQ(o, slice(out, kept_cu[std::size_t(b)], k, channels)) << "sample " << b;
  }
}

TEST(PackedEntryPoints, BadCuSeqlensAreRefusedByName) {
  std::vector<float> scores(10), x(10 * 4), out(10 * 4);
  std::vector<int> idx(10);
  const int kept[3] = {0, 2, 4};
  const int starts_at_one[3] = {1, 5, 10}, decreasing[3] = {0, 6, 5}, short_total[3] = {0, 4, 9};
  expect_refused([&] { rs::shift_score_varlen<P::L2>(rs::Host{}, x.data(), x.data(), scores.data(), starts_at_one, 2, 10, 4); },
                 {"cu_seqlens[0] = 1 must be 0"});
  expect_refused([&] { rs::select_top_varlen(rs::Host{}, scores.data(), decreasing, kept, idx.data(), 2, 6, 2); },
                 {"cu_seqlens decreases", "cu_seqlens[2] = 5 < cu_seqlens[1] = 6"});
  expect_refused([&] { rs::shift_score_varlen<P::L2>(rs::Host{}, x.data(), x.data(), scores.data(), short_total, 2, 10, 4); },
                 {"cu_seqlens[batch = 2] = 9", "total token count 10"});
  const int cu[3] = {0, 4, 10}, keeps_too_many[3] = {0, 5, 7};
  expect_refused([&] { rs::gather_tokens_varlen(rs::Host{}, x.data(), cu, idx.data(), keeps_too_many, out.data(), 2, 6, 5, 4); },
                 {"sample 0 keeps 5 of its 4 tokens"});
  expect_refused([&] { rs::select_top_varlen(rs::Host{}, scores.data(), cu, nullptr, idx.data(), 2, 6, 2); },
                 {"kept_cu_seqlens"});
}

// Offsets are int (FlashAttention's varlen layout): lengths that add up past
// INT_MAX are refused, not wrapped into negative offsets.
TEST(PackedEntryPoints, CuSeqlensOfRefusesATotalPastIntMax) {
  const int fits[2] = {std::numeric_limits<int>::max() - 5, 5}, past[3] = {1 << 30, 1 << 30, 1};
  EXPECT_EQ(rs::cu_seqlens_of(fits, 2).back(), std::numeric_limits<int>::max());
  expect_refused([&] { rs::cu_seqlens_of(past, 3); }, {"cu_seqlens_of", "samples 0..1 add up past INT_MAX"});
  const int negative[3] = {3, -1, 2};
  expect_refused([&] { rs::cu_seqlens_of(negative, 3); }, {"cu_seqlens_of", "lengths[1] = -1 is negative"});
  expect_refused([&] { rs::cu_seqlens_of(nullptr, 2); }, {"cu_seqlens_of", "lengths"});
  expect_refused([&] { rs::cu_seqlens_of(fits, -1); }, {"cu_seqlens_of", "batch = -1"});
  EXPECT_EQ(rs::cu_seqlens_of(nullptr, 0), std::vector<int>{0});
}

// docs/backbones.md: a sample shorter than protect keeps all of its tokens
// (the kept-count floor is min(protect, N)); keeping fewer is refused.
TEST(PackedEntryPoints, SampleShorterThanProtectKeepsAllItsTokens) {
  const int cu[3] = {0, 2, 7}, kept[3] = {0, 2, 6}, protect = 3;
  const std::vector<float> scores{0.5f, 0.9f, 0.1f, 0.2f, 0.8f, 0.3f, 0.7f};
  std::vector<int> idx(6, -1);
  rs::select_top_varlen(rs::Host{}, scores.data(), cu, kept, idx.data(), 2, 5, 4, protect);
  // Sample 0: both tokens. Sample 1: its protected 0..2 and the best other (local 2, score 0.8).
  EXPECT_EQ(idx, (std::vector<int>{0, 1, 0, 1, 2, 4}));
  // Sample 0 alone is taken too: protect is held against each sample's own
  // length, never the longest one's (here 2 < protect), or acceptance
  // would depend on the batch.
  std::vector<int> alone(2, -1);
  rs::select_top_varlen(rs::Host{}, scores.data(), cu, kept, alone.data(), 1, 2, 2, protect);
  EXPECT_EQ(alone, (std::vector<int>{0, 1}));
  const int keeps_one[3] = {0, 1, 5};
  expect_refused([&] { rs::select_top_varlen(rs::Host{}, scores.data(), cu, keeps_one, idx.data(), 2, 5, 4, protect); },
                 {"sample 0 keeps 1 of its 2 tokens", "protect = 3"});
}

// An empty sample is taken beside others, so a batch of empty samples is
// taken too (nothing to do), its layout still checked.
TEST(PackedEntryPoints, ABatchOfEmptySamplesIsEmpty) {
  const int cu[3] = {0, 0, 0}, keeps_one[3] = {0, 1, 1};
  int idx[1] = {-1};
  float x[1] = {0.0f}, out[1] = {-1.0f};
  rs::select_top_varlen(rs::Host{}, x, cu, cu, idx, 2, 0, 0, 1);
  rs::gather_tokens_varlen(rs::Host{}, x, cu, idx, cu, out, 2, 0, 0, 1);
  rs::MergeParams merge;  // no rows: no data pointer is read or written
  merge.cu_seqlens = merge.kept_cu_seqlens = cu;
  merge.batch = 2, merge.channels = merge.key_channels = 1;
  rs::cpu::merge_tokens(rs::Host{}, merge);
  EXPECT_EQ(idx[0], -1);
  EXPECT_EQ(out[0], -1.0f);
  merge.kept_cu_seqlens = keeps_one;
  merge.keep = 1;
  expect_refused([&] { rs::cpu::merge_tokens(rs::Host{}, merge); }, {"merge_tokens", "out"});
  merge.out = out, merge.keep_idx = idx;
  expect_refused([&] { rs::cpu::merge_tokens(rs::Host{}, merge); }, {"merge_tokens", "keep = 1 must be <= tokens = 0"});
  merge.x = merge.keys = merge.scores = x, merge.tokens = 1;
  expect_refused([&] { rs::cpu::merge_tokens(rs::Host{}, merge); }, {"merge_tokens", "sample 0 keeps 1 of its 0 tokens"});
  expect_refused([&] { rs::select_top_varlen(rs::Host{}, x, cu, keeps_one, idx, 2, 0, 0, 1); },
                 {"select_top", "sample 0 keeps 1 of its 0 tokens"});
  expect_refused([&] { rs::select_top(rs::Host{}, x, idx, 1, 0, 0); }, {"tokens = 0 must be > 0"});
}

TEST(PackedAttention, EachSampleSeesOnlyItsOwnKeys) {
  const int batch = int(kLengths.size()), heads = 2, head_dim = 32, dim = heads * head_dim;
  const auto cu = cu_of(kLengths);
  const int total = cu.back();
  const auto qkv = ref::random_floats(std::size_t(total) * 3 * dim, 3);
  const auto bias = ref::random_floats(std::size_t(3) * dim, 4, -0.5f, 0.5f);
  const auto key_bias = ref::random_floats(std::size_t(total), 5, -1.0f, 1.0f);
  for (bool map : {false, true}) {
    std::vector<float> out(std::size_t(total) * dim, NAN);
    auto p = rs::AttentionParams::contiguous(qkv.data(), bias.data(), out.data(), batch,
                                             rs::max_seqlen(cu.data(), batch), heads, head_dim);
    p.cu_seqlens = cu.data();
    p.key_bias = key_bias.data();
    std::vector<float> probs;
    if (map) {
      probs.resize(std::size_t(batch) * heads * p.tokens * p.tokens);
      rs::cpu::attention_with_map(rs::Host{}, p, probs.data());
    } else {
      rs::cpu::flash_attention(rs::Host{}, p);
    }
    for (int b = 0; b < batch; ++b) {
      const int n = kLengths[std::size_t(b)];
      const auto qb = slice(qkv, cu[std::size_t(b)], n, 3 * dim);
      const auto kb = slice(key_bias, cu[std::size_t(b)], n);
      std::vector<float> alone(std::size_t(n) * dim);
      auto pb = rs::AttentionParams::contiguous(qb.data(), bias.data(), alone.data(), 1, n, heads, head_dim);
      pb.key_bias = kb.data();
      rs::cpu::flash_attention(rs::Host{}, pb);
      EXPECT_LT(ref::max_rel_error(slice(out, cu[std::size_t(b)], n, dim), std::vector<double>(alone.begin(), alone.end())),
                1e-5)
          << "sample " << b << (map ? " (map)" : " (flash)");
    }
  }
}

// Short samples beside one past the kernel's whole-sequence key block (256
// keys, where the blocks become 64 wide): each task lays its scratch out
// for its own sample, so every output is bit-identical to the sample run
// alone, not merely close (batch invariance of the kept sets downstream).
TEST(PackedAttention, ShortAndLongSamplesRoundAsTheyDoAlone) {
  // 250 lays out more scratch than 300 does (one 256-key block against
  // 64-key ones): the bound covers both regimes.
  const std::vector<int> lengths = {100, 300, 17, 250};
  const int batch = int(lengths.size()), heads = 2, head_dim = 64, dim = heads * head_dim;
  const auto cu = cu_of(lengths);
  const int total = cu.back();
  const auto qkv = ref::random_floats(std::size_t(total) * 3 * dim, 6, -2.0f, 2.0f);
  const auto bias = ref::random_floats(std::size_t(3) * dim, 7, -0.5f, 0.5f);
  std::vector<float> out(std::size_t(total) * dim, NAN);
  auto p = rs::AttentionParams::contiguous(qkv.data(), bias.data(), out.data(), batch, rs::max_seqlen(cu.data(), batch),
                                           heads, head_dim);
  p.cu_seqlens = cu.data();
  rs::cpu::flash_attention(rs::Host{}, p);
  for (int b = 0; b < batch; ++b) {
    const int n = lengths[std::size_t(b)];
    const auto qb = slice(qkv, cu[std::size_t(b)], n, 3 * dim);
    std::vector<float> alone(std::size_t(n) * dim);
    rs::cpu::flash_attention(rs::Host{},
                             rs::AttentionParams::contiguous(qb.data(), bias.data(), alone.data(), 1, n, heads, head_dim));
    EXPECT_EQ(slice(out, cu[std::size_t(b)], n, dim), alone) << "sample " << b << " of " << n << " tokens";
  }
}

// ---- the Block, every policy ----------------------------------------------

template <class S, class I, class C, class N = P::PreNorm>
struct Policy {
  using Site = S;
  using Importance = I;
  using Compress = C;
  using Norm = N;
};

using Policies = ::testing::Types<
    Policy<P::Mlp, P::L2, P::Prune>, Policy<P::Attention, P::L1, P::Prune>, Policy<P::BlockOutput, P::Cosine, P::Prune>,
    Policy<P::Update<P::Mlp>, P::L2, P::Prune>, Policy<P::Mlp, P::TokenNorm, P::Prune, P::PostNorm>,
    Policy<P::Mlp, P::Random, P::Prune>, Policy<P::Attention, P::ClsAttention, P::Prune>,
    Policy<P::Attention, P::AttentionReceived, P::Prune>,
    Policy<P::Mlp, P::L2, P::Fuse>, Policy<P::Attention, P::L2, P::Fuse, P::PostNorm>,
    Policy<P::Mlp, P::L2, P::Merge>, Policy<P::Attention, P::L2, P::Merge, P::PostNorm>>;

struct PolicyNames {
  template <class C>
  static std::string GetName(int) {
    return std::string(C::Site::name) + "_" + C::Importance::name + "_" + C::Compress::name + "_" + C::Norm::name;
  }
};

template <class C>
class PackedBlock : public ::testing::Test {};
TYPED_TEST_SUITE(PackedBlock, Policies, PolicyNames);

// A packed batch gives every sample exactly what it gets alone: output
// rows, scores, kept indices and (Merge) sizes, each sample keeping the
// paper's count of its own length.
TYPED_TEST(PackedBlock, EverySampleMatchesItsRunAlone) {
  using C = TypeParam;
  using B = rs::Block<P::Transformer, typename C::Site, typename C::Importance, typename C::Compress, typename C::Norm>;
  constexpr bool merge = C::Compress::tracks_sizes;
  const int batch = int(kLengths.size()), dim = 32, protect = 1;
  const RandomBlockWeights w(dim, 2, 64, 41);
  const auto cu = cu_of(kLengths);
  const int total = cu.back();
  const auto x = ref::random_floats(std::size_t(total) * dim, 42);
  auto sizes = ref::random_floats(std::size_t(total), 43, 1.0f, 4.0f);
  const auto schedule = rs::PruneSchedule::drop({{0, 0.4}}, protect);
  const auto kept_cu = rs::kept_cu_seqlens(cu.data(), batch, [&](int n) {
    const int k = schedule.keep_at(0, n);
    return merge ? std::max<int>(k, int(P::Merge::min_keep(n, protect))) : k;
  });

  std::vector<float> y(std::size_t(total + batch) * dim, NAN), scores(std::size_t(total), NAN);
  std::vector<float> kept_sizes(std::size_t(total), NAN);
  std::vector<int> keep_idx(std::size_t(kept_cu.back()), -1), out_cu(std::size_t(batch) + 1, -1);
  rs::TransformerBlockArgs a;
  a.x = x.data();
  a.y = y.data();
  a.batch = batch;
  a.protect = protect;
  a.seed = 3;
  a.cu_seqlens = cu.data();
  a.kept_cu_seqlens = kept_cu.data();
  a.out_cu_seqlens = out_cu.data();
  a.scores = scores.data();
  a.keep_idx = keep_idx.data();
  if constexpr (merge) {
    a.sizes = sizes.data();
    a.kept_sizes = kept_sizes.data();
  }
  rs::Workspace<rs::Host> ws;
  B::forward(rs::Host{}, w.view(), a, ws);

  for (int b = 0; b < batch; ++b) {
    const int n = kLengths[std::size_t(b)], k = kept_cu[std::size_t(b) + 1] - kept_cu[std::size_t(b)];
    const int out_n = B::output_tokens(n, k);
    ASSERT_EQ(out_cu[std::size_t(b) + 1] - out_cu[std::size_t(b)], out_n) << "sample " << b;
    const auto xb = slice(x, cu[std::size_t(b)], n, dim);
    auto sb = slice(sizes, cu[std::size_t(b)], n);
    std::vector<float> yb(std::size_t(out_n) * dim), s(static_cast<std::size_t>(n)), ks(static_cast<std::size_t>(k));
    std::vector<int> idx(static_cast<std::size_t>(k));
    auto one = rs::TransformerBlockArgs::dense(xb.data(), yb.data(), 1, n);
    one.keep = k;
    one.protect = std::min(protect, n);
    one.seed = 3;
    one.scores = s.data();
    one.keep_idx = idx.data();
    if constexpr (merge) {
      one.sizes = sb.data();
      if (k < n) one.kept_sizes = ks.data();
    }
    rs::Workspace<rs::Host> ws1;
    B::forward(rs::Host{}, w.view(), one, ws1);
    EXPECT_LT(ref::max_rel_error(slice(y, out_cu[std::size_t(b)], out_n, dim), std::vector<double>(yb.begin(), yb.end())),
              1e-5)
        << "sample " << b;
    EXPECT_LT(ref::max_rel_error(slice(scores, cu[std::size_t(b)], n), std::vector<double>(s.begin(), s.end())), 1e-5)
        << "sample " << b;
    if (k < n) {
      EXPECT_EQ(slice(keep_idx, kept_cu[std::size_t(b)], k), idx) << "sample " << b;
      if constexpr (merge) {
        EXPECT_EQ(slice(kept_sizes, kept_cu[std::size_t(b)], k), ks) << "sample " << b;
      }
    }
  }
}

// first_token_only, packed and padded, gives each sample's first row of the
// block's full output (Merge: under the same proportional attention).
TYPED_TEST(PackedBlock, FirstTokenOnlyIsTheFullOutputsFirstRow) {
  using C = TypeParam;
  using B = rs::Block<P::Transformer, typename C::Site, typename C::Importance, typename C::Compress, typename C::Norm>;
  const int batch = int(kLengths.size()), dim = 32;
  const RandomBlockWeights w(dim, 2, 64, 51);
  const auto cu = cu_of(kLengths);
  const int total = cu.back(), longest = *std::max_element(kLengths.begin(), kLengths.end());
  const auto x = ref::random_floats(std::size_t(total) * dim, 52);
  const auto sizes = ref::random_floats(std::size_t(total), 53, 1.0f, 4.0f);
  // Padded: `batch` samples of the longest length.
  const auto padded = ref::random_floats(std::size_t(batch) * longest * dim, 54);
  const auto padded_sizes = ref::random_floats(std::size_t(batch) * longest, 55, 1.0f, 4.0f);
  rs::Workspace<rs::Host> ws;

  for (const bool packed : {true, false}) {
    const std::vector<float>& in = packed ? x : padded;
    const std::vector<float>& sz = packed ? sizes : padded_sizes;
    const int rows = packed ? total : batch * longest;
    auto run = [&](bool first_only, std::vector<float>& y, std::vector<int>& out_cu) {
      auto a = rs::TransformerBlockArgs::dense(in.data(), y.data(), batch, longest);
      if (packed) {
        a.cu_seqlens = cu.data();
        a.out_cu_seqlens = out_cu.data();
      }
      a.seed = 5;
      if constexpr (C::Compress::tracks_sizes) a.sizes = sz.data();
      a.first_token_only = first_only;
      B::forward(rs::Host{}, w.view(), a, ws);
    };
    // Different sentinels: a row neither call writes must not compare equal.
    std::vector<float> full(std::size_t(rows) * dim, NAN), first(std::size_t(batch) * dim, -7.0f);
    std::vector<int> full_cu(std::size_t(batch) + 1, -1), first_cu(std::size_t(batch) + 1, -1);
    run(false, full, full_cu);
    run(true, first, first_cu);
    if (packed) {
      EXPECT_EQ(full_cu, cu);
      for (int b = 0; b <= batch; ++b) EXPECT_EQ(first_cu[std::size_t(b)], b);
    }
    for (int b = 0; b < batch; ++b) {
      const int row = packed ? cu[std::size_t(b)] : b * longest;
      const auto want = slice(full, row, 1, dim);
      EXPECT_LT(ref::max_rel_error(slice(first, b, 1, dim), std::vector<double>(want.begin(), want.end())), 1e-5)
          << "sample " << b << (packed ? " (packed)" : " (padded)");
    }
  }
}

TEST(PackedBlock, RefusesBadLayouts) {
  using B = rs::Block<P::Transformer, P::Mlp, P::L2>;
  const RandomBlockWeights w(16, 2, 32, 4);
  std::vector<float> x(20 * 16), y(20 * 16);
  const int cu[3] = {0, 1, 20}, kept[3] = {0, 1, 10};
  int out_cu[3];
  rs::TransformerBlockArgs a;
  a.x = x.data();
  a.y = y.data();
  a.batch = 2;
  a.protect = 2;
  a.cu_seqlens = cu;
  a.kept_cu_seqlens = kept;
  a.out_cu_seqlens = out_cu;
  rs::Workspace<rs::Host> ws;
  expect_refused([&] { B::forward(rs::Host{}, w.view(), a, ws); }, {"sample 0", "1 tokens", "max(1, protect) = 2"});
  a.protect = 1;
  a.out_cu_seqlens = nullptr;
  expect_refused([&] { B::forward(rs::Host{}, w.view(), a, ws); }, {"out_cu_seqlens"});
  a.out_cu_seqlens = out_cu;
  const int keeps_none[3] = {0, 1, 1};
  a.kept_cu_seqlens = keeps_none;
  expect_refused([&] { B::forward(rs::Host{}, w.view(), a, ws); }, {"sample 1 keeps 0 of its 19 tokens"});
  a.kept_cu_seqlens = kept;
  EXPECT_NO_THROW(B::forward(rs::Host{}, w.view(), a, ws));
  EXPECT_EQ(std::vector<int>(out_cu, out_cu + 3), (std::vector<int>{0, 1, 10}));
}

// ---- the text models' input and the mean-pooled heads ------------------------

// Hand-computed: sample 0 = rows (1, 2) and (3, 6) with sizes 1 and 3, so
// its mean is (1 * (1, 2) + 3 * (3, 6)) / 4 = (2.5, 5), of norm sqrt(31.25);
// sample 1 is one zero row, which stays zero when normalised.
TEST(PackedPool, SizeWeightedMeanAndNormAreHandComputed) {
  const std::vector<float> x = {1, 2, 3, 6, 0, 0}, sizes = {1, 3, 2};
  const int cu[3] = {0, 2, 3};
  std::vector<float> out(4, -1.0f);
  rs::PoolParams<float> p;
  p.x = x.data();
  p.cu_seqlens = cu;
  p.sizes = sizes.data();
  p.batch = 2;
  p.channels = 2;
  p.out = out.data();
  rs::Backend<rs::Host>::pool_tokens(rs::Host{}, p);
  EXPECT_EQ(out, (std::vector<float>{2.5f, 5.0f, 0.0f, 0.0f}));
  p.normalize = true;
  rs::Backend<rs::Host>::pool_tokens(rs::Host{}, p);
  EXPECT_NEAR(out[0], 2.5 / std::sqrt(31.25), 1e-7);
  EXPECT_NEAR(out[1], 5.0 / std::sqrt(31.25), 1e-7);
  EXPECT_EQ(out[2], 0.0f);
  EXPECT_EQ(out[3], 0.0f);
  // Padded, unweighted, wider than one channel chunk: the plain token mean.
  const int tokens = 3, channels = 300;
  const auto wide = ref::random_floats(std::size_t(2) * tokens * channels, 5);
  std::vector<float> mean(std::size_t(2) * channels);
  rs::PoolParams<float> q;
  q.x = wide.data();
  q.batch = 2;
  q.tokens = tokens;
  q.channels = channels;
  q.out = mean.data();
  rs::Backend<rs::Host>::pool_tokens(rs::Host{}, q);
  for (int b = 0; b < 2; ++b)
    for (int c = 0; c < channels; ++c) {
      double want = 0;
      for (int t = 0; t < tokens; ++t) want += wide[(std::size_t(b) * tokens + t) * channels + c];
      EXPECT_NEAR(mean[std::size_t(b) * channels + c], want / tokens, 1e-6) << b << ", " << c;
    }
}

// Against a double LayerNorm of word + position + type, for packed ids and
// the same ids padded; an id outside the vocabulary is refused by name
// before anything is written.
TEST(PackedEmbed, MatchesADoubleReferenceAndRefusesBadIds) {
  const int vocab = 7, positions = 5, dim = 20;
  const auto word = ref::random_floats(std::size_t(vocab) * dim, 1), position = ref::random_floats(std::size_t(positions) * dim, 2),
             type = ref::random_floats(std::size_t(dim), 3), gamma = ref::random_floats(std::size_t(dim), 4, 0.5f, 1.5f),
             beta = ref::random_floats(std::size_t(dim), 5);
  const std::vector<int> ids = {3, 0, 6, 2, 5};  // sentences of 3 and 2 tokens
  const std::vector<int> padded = {3, 0, 6, -1, 2, 5, -1, -1};  // the same, [2, 4]; the padding is never read
  const int cu[3] = {0, 3, 5};
  rs::EmbedParams<float> p;
  p.cu_seqlens = cu;
  p.batch = 2;
  p.rows = 5;
  p.dim = dim;
  p.vocab = vocab;
  p.word = word.data();
  p.position = position.data();
  p.token_type = type.data();
  p.norm = {gamma.data(), beta.data(), 1e-12f};
  std::vector<double> want(std::size_t(5) * dim);
  for (int i = 0; i < 5; ++i) {
    const int t = i < 3 ? i : i - 3;
    std::vector<double> v(dim);
    double mean = 0, var = 0;
    for (int c = 0; c < dim; ++c) mean += v[c] = double(word[ids[i] * dim + c]) + position[t * dim + c] + type[c];
    mean /= dim;
    for (int c = 0; c < dim; ++c) var += (v[c] - mean) * (v[c] - mean);
    const double inv = 1.0 / std::sqrt(var / dim + 1e-12);
    for (int c = 0; c < dim; ++c) want[std::size_t(i) * dim + c] = (v[c] - mean) * inv * gamma[c] + beta[c];
  }
  for (const bool pad : {false, true}) {
    std::vector<float> out(std::size_t(5) * dim);
    p.ids = pad ? padded.data() : ids.data();
    p.ids_stride = pad ? 4 : 0;
    p.out = out.data();
    rs::Backend<rs::Host>::embed_tokens(rs::Host{}, p);
    EXPECT_LT(ref::max_rel_error(out, want), 1e-5) << (pad ? "padded" : "packed");
  }
  const std::vector<int> bad = {3, 0, 6, 2, 7};
  std::vector<float> untouched(std::size_t(5) * dim, 9.0f);
  p.ids = bad.data();
  p.ids_stride = 0;
  p.out = untouched.data();
  expect_refused([&] { rs::Backend<rs::Host>::embed_tokens(rs::Host{}, p); }, {"ids[4] = 7", "vocab_size = 7"});
  EXPECT_EQ(untouched, std::vector<float>(untouched.size(), 9.0f));
}
