// cpu::merge_tokens (ToMe bipartite matching driven by importance) against
// a hand-worked case and the naive double reference (ref::merge).

#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include <repshift/cpu/merge_tokens.hpp>

#include "reference_transformer.hpp"
#include "test_support.hpp"

namespace rs = repshift;

namespace {

struct Merged {
  std::vector<float> out, sizes;
  std::vector<int> keep_idx;
};

Merged run_merge(const std::vector<float>& x, const std::vector<float>& keys, const std::vector<float>& scores,
                 const std::vector<float>* sizes, int batch, int tokens, int c, int ck, int keep, int protect,
                 std::int64_t key_stride = 0, const float* key_bias = nullptr, rs::Host host = {}) {
  Merged m{std::vector<float>(std::size_t(batch) * keep * c, NAN), std::vector<float>(std::size_t(batch) * keep, NAN),
           std::vector<int>(std::size_t(batch) * keep, -1)};
  rs::MergeParams p;
  p.x = x.data();
  p.keys = keys.data();
  p.key_bias = key_bias;
  p.keys_token_stride = key_stride;
  p.scores = scores.data();
  p.sizes = sizes ? sizes->data() : nullptr;
  p.out = m.out.data();
  p.out_sizes = m.sizes.data();
  p.keep_idx = m.keep_idx.data();
  p.batch = batch;
  p.tokens = tokens;
  p.keep = keep;
  p.channels = c;
  p.key_channels = ck;
  p.protect = protect;
  rs::cpu::merge_tokens(host, p);
  return m;
}

}  // namespace

// N = 5, CLS protected: A = {1, 3}, B = {2, 4}. Keys: token 1 points like
// token 4, token 3 like token 2. Token 3 has the lower score, so with keep 4
// it merges into token 2: row 2 becomes (1 * x3 + 3 * x2) / 4 with sizes
// 1 and 3, and the survivors are 0, 1, 2, 4.
TEST(MergeTokens, HandWorkedCase) {
  const std::vector<float> x = {0, 0, 1, 1, 2, 2, 10, 10, 4, 4};            // [5, 2]
  const std::vector<float> keys = {0, 1, 1, 0, 0, 1, 0, 2, 1, 0.1f};       // [5, 2]
  const std::vector<float> scores = {0, 5, 1, 0.5f, 1};
  const std::vector<float> sizes = {1, 1, 3, 1, 2};
  const Merged m = run_merge(x, keys, scores, &sizes, 1, 5, 2, 2, 4, 1);
  EXPECT_EQ(m.keep_idx, (std::vector<int>{0, 1, 2, 4}));
  EXPECT_EQ(m.out, (std::vector<float>{0, 0, 1, 1, 4, 4, 4, 4}));  // (10 + 3 * 2) / 4 = 4
  EXPECT_EQ(m.sizes, (std::vector<float>{1, 1, 4, 2}));
  // keep 3 merges token 1 too, into token 4: (1 * 1 + 2 * 4) / 3 = 3.
  const Merged m3 = run_merge(x, keys, scores, &sizes, 1, 5, 2, 2, 3, 1);
  EXPECT_EQ(m3.keep_idx, (std::vector<int>{0, 2, 4}));
  EXPECT_EQ(m3.out, (std::vector<float>{0, 0, 4, 4, 3, 3}));
  EXPECT_EQ(m3.sizes, (std::vector<float>{1, 4, 3}));
}

struct MergeCase {
  int batch, tokens, c, keep, protect;
};

class MergeTokensRef : public ::testing::TestWithParam<MergeCase> {};

TEST_P(MergeTokensRef, MatchesNaiveDoubleMerge) {
  const MergeCase k = GetParam();
  const int ck = 24, stride = 3 * ck;  // keys are the middle third of a wider row, as in QKV
  const std::size_t rows = std::size_t(k.batch) * k.tokens;
  const auto x = ref::random_floats(rows * k.c, 1 + k.tokens);
  auto wide = ref::random_floats(rows * stride, 2 + k.tokens);
  const auto bias = ref::random_floats(std::size_t(ck), 3, -0.3f, 0.3f);
  auto scores = ref::random_floats(rows, 4 + k.tokens, 0.0f, 1.0f);
  auto sizes = ref::random_floats(rows, 5, 1.0f, 4.0f);
  for (auto& s : sizes) s = std::round(s);
  // A zero key (after bias) and a NaN score: similarity 0, merges first.
  if (k.tokens > 4) {
    for (int i = 0; i < ck; ++i) wide[std::size_t(3) * stride + ck + i] = -bias[std::size_t(i)];
    scores[std::size_t(k.protect)] = NAN;
  }
  const Merged got =
      run_merge(x, std::vector<float>(wide.begin() + ck, wide.end()), scores, &sizes, k.batch, k.tokens, k.c, ck,
                k.keep, k.protect, stride, bias.data());

  ref::Mat xd(x.begin(), x.end()), keys(rows * ck);
  for (std::size_t r = 0; r < rows; ++r)
    for (int i = 0; i < ck; ++i) keys[r * ck + i] = double(wide[r * stride + ck + i]) + bias[std::size_t(i)];
  const std::vector<double> sd(scores.begin(), scores.end()), zd(sizes.begin(), sizes.end());
  const ref::MergeResult want = ref::merge(xd, keys, sd, zd, k.batch, k.tokens, k.c, ck, k.keep, k.protect);
  EXPECT_EQ(got.keep_idx, want.keep_idx);
  EXPECT_LT(ref::max_rel_error(got.out, want.rows), 1e-6);
  EXPECT_LT(ref::max_rel_error(got.sizes, want.sizes), 1e-7);
  double total = 0;
  for (float s : got.sizes) total += s;
  EXPECT_DOUBLE_EQ(total, std::accumulate(sizes.begin(), sizes.end(), 0.0));  // mass is conserved
}

INSTANTIATE_TEST_SUITE_P(Shapes, MergeTokensRef,
                         ::testing::Values(MergeCase{2, 17, 8, 9, 1},      // the most A can give (odd N)
                                           MergeCase{2, 18, 8, 10, 1},     // even N: A = 9 of 17 free
                                           MergeCase{1, 197, 64, 157, 1},  // DeiT's first paper layer
                                           MergeCase{3, 11, 5, 11, 1},     // keep = tokens: identity
                                           MergeCase{1, 9, 3, 6, 0},       // no protected prefix
                                           MergeCase{1, 12, 4, 8, 3},      // longer prefix
                                           // several blocks of merging rows: split over the threads
                                           // (one sample), and within one task (two samples)
                                           MergeCase{1, 1301, 8, 1100, 1}, MergeCase{2, 301, 8, 200, 1}),
                         [](const auto& info) {
                           const MergeCase& k = info.param;
                           return "B" + std::to_string(k.batch) + "N" + std::to_string(k.tokens) + "keep" +
                                  std::to_string(k.keep) + "p" + std::to_string(k.protect);
                         });

// With fewer samples than threads a sample's keys, matching and sums are
// split over the team; with as many, one thread takes a sample whole:
// bit-identical either way (2 threads for the batch of two, 4 for the
// sample alone, whatever the machine).
TEST(MergeTokens, ASampleMergesAloneAsInABatch) {
  const int tokens = 601, c = 80, ck = 24, keep = 450, protect = 1;
  const auto x = ref::random_floats(std::size_t(2) * tokens * c, 11);
  const auto keys = ref::random_floats(std::size_t(2) * tokens * ck, 12);
  const auto scores = ref::random_floats(std::size_t(2) * tokens, 13);
  const Merged both = run_merge(x, keys, scores, nullptr, 2, tokens, c, ck, keep, protect, 0, nullptr, rs::Host{2});
  auto second = [](const std::vector<float>& v) { return std::vector<float>(v.begin() + v.size() / 2, v.end()); };
  const Merged alone = run_merge(second(x), second(keys), second(scores), nullptr, 1, tokens, c, ck, keep, protect, 0,
                                 nullptr, rs::Host{4});
  EXPECT_EQ(alone.out, second(both.out));
  EXPECT_EQ(alone.sizes, second(both.sizes));
  EXPECT_EQ(alone.keep_idx, std::vector<int>(both.keep_idx.begin() + keep, both.keep_idx.end()));
}

TEST(MergeTokens, WithoutSizesEveryTokenCountsOne) {
  const int n = 9, c = 4;
  const auto x = ref::random_floats(std::size_t(n) * c, 8);
  const auto keys = ref::random_floats(std::size_t(n) * c, 9);
  const auto scores = ref::random_floats(std::size_t(n), 10);
  const std::vector<float> ones(std::size_t(n), 1.0f);
  const Merged a = run_merge(x, keys, scores, nullptr, 1, n, c, c, 6, 1);
  const Merged b = run_merge(x, keys, scores, &ones, 1, n, c, c, 6, 1);
  EXPECT_EQ(a.out, b.out);
  EXPECT_EQ(a.sizes, b.sizes);
}

TEST(MergeTokens, RefusesWhatItCannotDo) {
  const std::vector<float> v(40, 1.0f);
  std::vector<float> bad_sizes(10, 1.0f);
  bad_sizes[7] = 0.0f;
  // 10 tokens, CLS protected: A = {1, 3, 5, 7, 9}, so keep >= 5.
  expect_refused([&] { run_merge(v, v, v, nullptr, 1, 10, 4, 4, 4, 1); }, {"needs keep >= 5"});
  expect_refused([&] { run_merge(v, v, v, &bad_sizes, 1, 10, 4, 4, 6, 1); }, {"sizes[7] = 0"});
  expect_refused([&] { run_merge(v, v, v, nullptr, 1, 10, 4, 4, 6, 1, /*key_stride=*/2); }, {"keys_token_stride = 2"});
  expect_refused([&] { run_merge(v, v, v, nullptr, 1, 10, 4, 4, 11, 1); }, {"keep = 11 must be <= tokens = 10"});
  EXPECT_EQ(rs::MergeParams::min_keep(1, 1), 1);   // nothing to merge
  EXPECT_EQ(rs::MergeParams::min_keep(2, 1), 2);   // one free token: no B set
  EXPECT_EQ(rs::MergeParams::min_keep(197, 1), 99);
}
