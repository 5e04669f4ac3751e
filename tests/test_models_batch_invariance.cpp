// Batch invariance, model by model and policy by policy: a sample's output
// (logits or pooled embedding) and the tokens it keeps are the same alone
// and inside a batch, padded or packed. Keep counts follow each sample's
// own length, so nothing a neighbour does can change them.

#include <gtest/gtest.h>

#include <repshift/models/bert.hpp>

#include "bert_fixture.hpp"
#include "model_fixtures.hpp"
#include "test_support.hpp"
#include "transformer_fixture.hpp"

namespace P = rs::policies;

namespace {

using fixtures::lively_vim;
using fixtures::lively_vit;
using fixtures::tiny_resnet;
using fixtures::tiny_vim;
using fixtures::tiny_vit;

template <class T>
std::vector<T> row(const std::vector<T>& v, std::size_t b, std::size_t width) {
  return {v.begin() + std::ptrdiff_t(b * width), v.begin() + std::ptrdiff_t((b + 1) * width)};
}

// Sample b's rows of a [batch, keep] trace array.
std::vector<int> kept_of(const std::vector<int>& idx, int batch, int b) {
  const std::size_t keep = idx.size() / std::size_t(batch);
  return row(idx, std::size_t(b), keep);
}

double rel(const std::vector<float>& got, const std::vector<float>& want) {
  return ref::max_rel_error(got, std::vector<double>(want.begin(), want.end()));
}

constexpr int kImages = 3;

}  // namespace

template <class S, class I, class C>
struct ViTPolicy {
  using Site = S;
  using Importance = I;
  using Compress = C;
};

using ViTPolicies = ::testing::Types<
    ViTPolicy<P::Mlp, P::L2, P::Prune>, ViTPolicy<P::Attention, P::L1, P::Prune>,
    ViTPolicy<P::BlockOutput, P::Cosine, P::Prune>, ViTPolicy<P::Update<P::Mlp>, P::L2, P::Prune>,
    ViTPolicy<P::Mlp, P::TokenNorm, P::Prune>, ViTPolicy<P::Mlp, P::Random, P::Prune>,
    ViTPolicy<P::Attention, P::ClsAttention, P::Prune>, ViTPolicy<P::Attention, P::AttentionReceived, P::Prune>,
    ViTPolicy<P::Mlp, P::L2, P::Fuse>, ViTPolicy<P::Mlp, P::L2, P::Merge>>;

struct ViTPolicyNames {
  template <class C>
  static std::string GetName(int) {
    return std::string(C::Site::name) + "_" + C::Importance::name + "_" + C::Compress::name;
  }
};

template <class C>
class ViTBatchInvariance : public ::testing::Test {};
TYPED_TEST_SUITE(ViTBatchInvariance, ViTPolicies, ViTPolicyNames);

// The image ViT (class token) and the video ViT (tubelets, no class token,
// token-mean head) are one model: both configs, every policy.
TYPED_TEST(ViTBatchInvariance, EachImageAloneEqualsItInTheBatch) {
  using C = TypeParam;
  for (const auto& cfg : {tiny_vit(), fixtures::tiny_video()}) {
    const int protect = cfg.class_token() ? 1 : 0;
    rs::VisionTransformer<typename C::Site, typename C::Importance, typename C::Compress> model(lively_vit(cfg, 21));
    const std::size_t pixels = std::size_t(3) * cfg.frames * cfg.image_size * cfg.image_size;
    const auto images = ref::random_floats(kImages * pixels, 22);
    const auto schedule = rs::PruneSchedule::drop({{0, 0.2}, {2, 0.3}}, protect);
    std::vector<float> logits(std::size_t(kImages) * cfg.num_classes);
    rs::ViTTrace trace;
    if (P::reads_class_token<typename C::Importance>() && !cfg.class_token()) {  // no class token to read
      expect_refused([&] { model.forward(rs::Host{}, images.data(), kImages, logits.data(), schedule, &trace); },
                     {"importance cls_attn reads the class token's attention row, and this model has none"});
      continue;
    }
    model.forward(rs::Host{}, images.data(), kImages, logits.data(), schedule, &trace);
    ASSERT_EQ(trace.keep_idx.size(), 2u);
    for (int b = 0; b < kImages; ++b) {
      std::vector<float> one(std::size_t(cfg.num_classes));
      rs::ViTTrace alone;
      model.forward(rs::Host{}, images.data() + b * pixels, 1, one.data(), schedule, &alone);
      EXPECT_LT(rel(row(logits, std::size_t(b), std::size_t(cfg.num_classes)), one), 1e-5)
          << "frames " << cfg.frames << ", image " << b;
      for (std::size_t l = 0; l < trace.keep_idx.size(); ++l) {
        EXPECT_EQ(kept_of(trace.keep_idx[l], kImages, b), alone.keep_idx[l])
            << "frames " << cfg.frames << ", image " << b << ", pruning layer " << l;
      }
    }
  }
}

TEST(VimBatchInvariance, EachImageAloneEqualsItInTheBatch) {
  const rs::VimConfig cfg = tiny_vim();
  const auto w = std::make_shared<const rs::VimWeights>(lively_vim(cfg, 23));
  const std::size_t pixels = std::size_t(3) * 32 * 32;
  const auto images = ref::random_floats(kImages * pixels, 24);
  const auto schedule = rs::PruneSchedule::drop({{1, 0.3}, {2, 0.25}}, 0);
  auto check = [&](auto model) {
    std::vector<float> logits(std::size_t(kImages) * cfg.num_classes);
    rs::VimTrace trace;
    model.forward(rs::Host{}, images.data(), kImages, logits.data(), schedule, &trace);
    for (int b = 0; b < kImages; ++b) {
      std::vector<float> one(std::size_t(cfg.num_classes));
      rs::VimTrace alone;
      model.forward(rs::Host{}, images.data() + b * pixels, 1, one.data(), schedule, &alone);
      EXPECT_LT(rel(row(logits, std::size_t(b), std::size_t(cfg.num_classes)), one), 1e-5) << "image " << b;
      ASSERT_FALSE(trace.keep_idx.empty());  // the schedule prunes: kept sets to compare
      ASSERT_EQ(alone.keep_idx.size(), trace.keep_idx.size());
      for (std::size_t l = 0; l < trace.keep_idx.size(); ++l)
        EXPECT_EQ(kept_of(trace.keep_idx[l], kImages, b), alone.keep_idx[l]) << "image " << b;
    }
  };
  check(rs::VisionMamba<P::L2>(w));
  check(rs::VisionMamba<P::Random>(w));
}

TEST(ResNetBatchInvariance, EachImageAloneEqualsItInTheBatch) {
  const rs::ResNetConfig cfg = tiny_resnet();
  rs::ResNet<> model(rs::ResNetWeights::random(cfg, 25));
  const std::size_t pixels = std::size_t(3) * 32 * 32;
  const auto images = ref::random_floats(kImages * pixels, 26);
  const rs::LinePruneSchedule schedule{{{1, 2, 2}, {2, 1, 1}}};
  std::vector<float> logits(std::size_t(kImages) * 10);
  rs::ResNetTrace trace;
  model.forward(rs::Host{}, images.data(), kImages, logits.data(), schedule, &trace);
  for (int b = 0; b < kImages; ++b) {
    std::vector<float> one(10);
    rs::ResNetTrace alone;
    model.forward(rs::Host{}, images.data() + b * pixels, 1, one.data(), schedule, &alone);
    EXPECT_LT(rel(row(logits, std::size_t(b), 10), one), 1e-5) << "image " << b;
    ASSERT_FALSE(trace.kept_rows.empty());  // the schedule prunes: kept lines to compare
    ASSERT_EQ(alone.kept_rows.size(), trace.kept_rows.size());
    for (std::size_t l = 0; l < trace.kept_rows.size(); ++l) {
      EXPECT_EQ(kept_of(trace.kept_rows[l], kImages, b), alone.kept_rows[l]) << "image " << b;
      EXPECT_EQ(kept_of(trace.kept_cols[l], kImages, b), alone.kept_cols[l]) << "image " << b;
    }
  }
}

// ---- BERT: sentences of different lengths, padded, packed and alone --------

template <class C>
class BertBatchInvariance : public ::testing::Test {};
TYPED_TEST_SUITE(BertBatchInvariance, ViTPolicies, ViTPolicyNames);

TYPED_TEST(BertBatchInvariance, PaddedPackedAndAloneAgree) {
  using C = TypeParam;
  rs::BertEncoder<typename C::Site, typename C::Importance, typename C::Compress> model(random_bert(31));
  const int dim = model.config().dim;
  const std::vector<int> lengths = {7, 30, 2, 19, 11};
  const int batch = int(lengths.size()), tokens = 30;
  const auto cu = rs::cu_seqlens_of(lengths.data(), batch);
  std::vector<int> padded(std::size_t(batch) * tokens, 0), packed(std::size_t(cu.back()));
  std::mt19937 gen(32);
  std::uniform_int_distribution<int> id(1, model.config().vocab_size - 1);
  for (int b = 0; b < batch; ++b)
    for (int t = 0; t < lengths[std::size_t(b)]; ++t)
      packed[std::size_t(cu[std::size_t(b)] + t)] = padded[std::size_t(b) * tokens + std::size_t(t)] = id(gen);
  const auto schedule = rs::PruneSchedule::drop({{0, 0.3}, {1, 0.25}});

  std::vector<float> from_padded(std::size_t(batch) * dim), from_packed(from_padded.size());
  rs::BertTrace padded_trace, packed_trace;
  model.forward(rs::Host{}, padded.data(), lengths.data(), batch, tokens, from_padded.data(), schedule, true, &padded_trace);
  model.forward_packed(rs::Host{}, packed.data(), cu.data(), batch, from_packed.data(), schedule, true, &packed_trace);
  EXPECT_EQ(from_padded, from_packed);
  EXPECT_EQ(padded_trace.keep_idx, packed_trace.keep_idx);
  // Each sentence keeps N - floor(r N) of its own N at each layer.
  EXPECT_EQ(packed_trace.kept_cu_seqlens[0][2] - packed_trace.kept_cu_seqlens[0][1], 30 - 9);
  EXPECT_EQ(packed_trace.kept_cu_seqlens[0][3] - packed_trace.kept_cu_seqlens[0][2], 2);
  EXPECT_EQ(packed_trace.kept_cu_seqlens[1][2] - packed_trace.kept_cu_seqlens[1][1],
            21 + C::Compress::extra_tokens - (21 + C::Compress::extra_tokens) / 4);
  expect_refused([&] { (void)packed_trace.kept(0, batch); }, {"BertTrace::kept", "is outside [0, batch = "});
  expect_refused([&] { (void)packed_trace.kept(-1, 0); }, {"BertTrace::kept", "layer = -1 is outside"});

  int compared = 0;  // layers whose kept sets were compared, over all sentences
  for (int b = 0; b < batch; ++b) {
    const int n = lengths[std::size_t(b)];
    std::vector<float> one(static_cast<std::size_t>(dim));
    rs::BertTrace alone;
    const int one_cu[2] = {0, n};
    model.forward_packed(rs::Host{}, packed.data() + cu[std::size_t(b)], one_cu, 1, one.data(), schedule, true, &alone);
    EXPECT_LT(rel(row(from_packed, std::size_t(b), std::size_t(dim)), one), 1e-5) << "sentence " << b;
    for (int l = 0; l < model.config().depth; ++l) {
      if (alone.keep_idx[std::size_t(l)].empty()) continue;  // the sentence kept everything
      EXPECT_EQ(packed_trace.kept(l, b), alone.kept(l, 0)) << "sentence " << b << ", layer " << l;
      ++compared;
    }
  }
  EXPECT_GT(compared, 0);
}

TEST(BertPacked, NamedErrors) {
  rs::BertEncoder<> model(random_bert(33));
  std::vector<float> pooled(2 * 32);
  const int ids[5] = {1, 2, 3, 4, 5};
  const int not_at_zero[3] = {1, 3, 5}, decreasing[3] = {0, 4, 3};
  expect_refused([&] { model.forward_packed(rs::Host{}, ids, not_at_zero, 2, pooled.data()); }, {"cu_seqlens[0] = 1"});
  expect_refused([&] { model.forward_packed(rs::Host{}, ids, decreasing, 2, pooled.data()); }, {"cu_seqlens decreases"});
  const int empty_sentence[3] = {0, 0, 5};
  expect_refused([&] { model.forward_packed(rs::Host{}, ids, empty_sentence, 2, pooled.data()); },
                 {"sentence 0 has 0 tokens"});
  const int cu[3] = {0, 1, 5};
  expect_refused([&] { model.forward_packed(rs::Host{}, ids, cu, 2, pooled.data(), rs::PruneSchedule::none(2)); },
                 {"sample 0 has 1 tokens, fewer than schedule.protect = 2"});
  expect_refused([&] { model.forward_packed(rs::Host{}, ids, cu, 2, pooled.data(), rs::PruneSchedule::drop({{0, 1.0}}, 0)); },
                 {"leaves sample 0 with 0 tokens at layer 0"});
}

// The padded call names itself and indexes ids as the caller laid them out
// ([batch, tokens]), not as the packed call it runs.
TEST(BertPadded, NamedErrors) {
  rs::BertEncoder<> model(random_bert(33));
  std::vector<float> pooled(2 * 32);
  const int lengths[2] = {2, 3};
  const int bad_id[8] = {1, 2, 0, 0, 3, 4, -7, 0};  // sentence 1's third token
  expect_refused([&] { model.forward(rs::Host{}, bad_id, lengths, 2, 4, pooled.data()); },
                 {"BertEncoder::forward:", "ids[6] = -7"});
  const int ids[8] = {1, 2, 0, 0, 3, 4, 5, 0};
  expect_refused([&] { model.forward(rs::Host{}, ids, lengths, 2, 4, pooled.data(), rs::PruneSchedule::none(3)); },
                 {"BertEncoder::forward:", "sample 0 has 2 tokens, fewer than schedule.protect = 3"});
}
