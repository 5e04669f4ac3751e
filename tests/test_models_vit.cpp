// VisionTransformer against the naive double ViT: unpruned, pruned (same
// kept indices; kept set consistent with reference scores; token counts per
// the schedule), and weights round-tripped through safetensors.

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <limits>

#include <repshift/models/vit.hpp>

#include "model_fixtures.hpp"
#include "reference_vit.hpp"
#include "test_support.hpp"

namespace rs = repshift;
namespace P = rs::policies;

namespace {

using fixtures::tiny_vit;
using fixtures::lively_vit;

}  // namespace

TEST(VisionTransformer, UnprunedMatchesReference) {
  const auto cfg = tiny_vit();
  const auto w = lively_vit(cfg, 3);
  const int batch = 2;
  const auto images = ref::random_floats(std::size_t(batch) * 3 * 32 * 32, 4);
  rs::VisionTransformer<> model(w);
  std::vector<float> logits(std::size_t(batch) * cfg.num_classes);
  rs::ViTTrace trace;
  model.forward(rs::Host{}, images.data(), batch, logits.data(), rs::PruneSchedule::none(), &trace);
  EXPECT_EQ(trace.tokens, std::vector<int>(5, 17));
  EXPECT_TRUE(trace.pruned_layers.empty());
  const auto want = ref::vit(w, images, batch, {}, {}, trace.tokens);
  EXPECT_LT(ref::max_rel_error(logits, want.logits), 1e-4);
}

TEST(VisionTransformer, PrunedMatchesReferenceWithTheSameKeptTokens) {
  const auto cfg = tiny_vit();
  const auto w = lively_vit(cfg, 5);
  const int batch = 3;
  const auto images = ref::random_floats(std::size_t(batch) * 3 * 32 * 32, 6);
  const auto schedule = rs::PruneSchedule::drop({{1, 0.2}, {2, 0.3}});
  rs::VisionTransformer<> model(w);
  std::vector<float> logits(std::size_t(batch) * cfg.num_classes);
  rs::ViTTrace trace;
  model.forward(rs::Host{}, images.data(), batch, logits.data(), schedule, &trace);

  // 17 - floor(0.2 * 17) = 14 after layer 1 -> 14 - floor(0.3 * 14) = 10 after layer 2.
  EXPECT_EQ(trace.tokens, (std::vector<int>{17, 17, 14, 10, 10}));
  EXPECT_EQ(trace.tokens, schedule.token_counts(17, 4));
  ASSERT_EQ(trace.pruned_layers, (std::vector<int>{1, 2}));

  const auto want = ref::vit(w, images, batch, trace.pruned_layers, trace.keep_idx, trace.tokens);
  EXPECT_LT(ref::max_rel_error(logits, want.logits), 1e-4);

  // source composes the layers: layer 2 keeps 10 of layer 1's 14 survivors.
  for (int b = 0; b < batch; ++b)
    for (int k = 0; k < 10; ++k)
      EXPECT_EQ(trace.source[1][std::size_t(b) * 10 + k],
                trace.keep_idx[0][std::size_t(b) * 14 + std::size_t(trace.keep_idx[1][std::size_t(b) * 10 + k])]);
  EXPECT_EQ(trace.source[0], trace.keep_idx[0]);

  for (std::size_t k = 0; k < trace.pruned_layers.size(); ++k) {
    const int in = trace.tokens[std::size_t(trace.pruned_layers[k])];
    const int keep = trace.tokens[std::size_t(trace.pruned_layers[k]) + 1];
    for (int b = 0; b < batch; ++b) {
      const int* idx = trace.keep_idx[k].data() + std::size_t(b) * keep;
      EXPECT_EQ(idx[0], 0) << "CLS kept";
      EXPECT_TRUE(std::is_sorted(idx, idx + keep));
      EXPECT_TRUE(kept_is_top(idx, keep, want.scores[k].data() + std::size_t(b) * in, in, 0))
          << "layer " << trace.pruned_layers[k] << ", image " << b;
    }
  }
}

TEST(VisionTransformer, FuseAddsOneTokenPerPruningLayer) {
  const auto cfg = tiny_vit();
  const auto w = lively_vit(cfg, 11);
  const int batch = 2;
  const auto images = ref::random_floats(std::size_t(batch) * 3 * 32 * 32, 12);
  rs::VisionTransformer<P::Mlp, P::L2, P::Fuse> model(w);
  std::vector<float> logits(std::size_t(batch) * cfg.num_classes);
  rs::ViTTrace trace;
  model.forward(rs::Host{}, images.data(), batch, logits.data(), rs::PruneSchedule::drop({{1, 0.2}, {2, 0.3}}), &trace);
  // 17 -> 14 kept + 1 fused = 15 -> 15 - floor(0.3 * 15) = 11 kept + 1 fused = 12.
  EXPECT_EQ(trace.tokens, (std::vector<int>{17, 17, 15, 12, 12}));
  EXPECT_EQ(trace.tokens, (rs::PruneSchedule::drop({{1, 0.2}, {2, 0.3}}).token_counts(17, 4, P::Fuse::extra_tokens)));
  for (int b = 0; b < batch; ++b) {
    EXPECT_EQ(trace.source[0][std::size_t(b) * 15 + 14], -1);
    EXPECT_EQ(trace.source[1][std::size_t(b) * 12 + 11], -1);
  }
  for (float v : logits) EXPECT_TRUE(std::isfinite(v));
}

// The paper: r = 0.2 at blocks 0, 3, 6 -> 197 into block 0, 158 into 1-3,
// 127 into 4-6, 102 into 7-11 (DeiT-S 2.99 GMAC, paper 3.0).
TEST(VisionTransformer, PaperScheduleTokenCounts) {
  EXPECT_EQ(rs::PruneSchedule::paper().token_counts(197, 12),
            (std::vector<int>{197, 158, 158, 158, 127, 127, 127, 102, 102, 102, 102, 102, 102}));
  // The video settings (UMT-B, 12 x 196 + 1 tokens): r = 0.2 at blocks 0-2; r = 0.1 everywhere.
  EXPECT_EQ(rs::PruneSchedule::video_retrieval().token_counts(2353, 4), (std::vector<int>{2353, 1883, 1507, 1206, 1206}));
  EXPECT_EQ(rs::PruneSchedule::every_layer(0.1, 3).token_counts(2353, 3), (std::vector<int>{2353, 2118, 1907, 1717}));
  // The count form keeps min(count, tokens); protected tokens always stay.
  EXPECT_EQ(rs::PruneSchedule::counts({{0, 5}}).token_counts(3, 1), (std::vector<int>{3, 3}));
  EXPECT_EQ(rs::PruneSchedule::counts({{0, 5}}).token_counts(9, 1), (std::vector<int>{9, 5}));
  EXPECT_EQ(rs::PruneSchedule::drop({{0, 0.9}}, 4).token_counts(6, 1), (std::vector<int>{6, 4}));
}

// protect left at kModelPrefix is the model's to set; a number set by hand stays.
TEST(VisionTransformer, ScheduleProtectDefaultsToTheModelsPrefix) {
  const auto by_default = rs::PruneSchedule::paper();
  EXPECT_EQ(by_default.protect, rs::PruneSchedule::kModelPrefix);
  EXPECT_EQ(by_default.protected_tokens(), 1);  // on its own: a class token
  EXPECT_EQ(by_default.for_model(0).protect, 0);
  EXPECT_EQ(by_default.for_model(1).protect, 1);
  EXPECT_EQ(rs::PruneSchedule::paper_layers(0.2, 2).for_model(0).protect, 2);
  EXPECT_EQ(rs::PruneSchedule::drop({{0, 1.0}}).for_model(0).keep_at(0, 5), 0);
  EXPECT_EQ(rs::PruneSchedule::drop({{0, 1.0}}).for_model(1).keep_at(0, 5), 1);
  expect_refused([] { rs::PruneSchedule::none(-2).check("test", 2); }, {"schedule.protect = -2"});
  // DeiT: the class token is protected by default, so even r = 1 keeps it.
  const auto cfg = tiny_vit();
  rs::VisionTransformer<> model(rs::ViTWeights::random(cfg, 2));
  const auto images = ref::random_floats(std::size_t(2) * cfg.in_chans * cfg.image_size * cfg.image_size, 3);
  std::vector<float> logits(std::size_t(2) * cfg.num_classes);
  rs::ViTTrace trace;
  model.forward(rs::Host{}, images.data(), 2, logits.data(), rs::PruneSchedule::drop({{1, 1.0}}), &trace);
  EXPECT_EQ(trace.keep_idx, (std::vector<std::vector<int>>{{0, 0}}));
}

TEST(VisionTransformer, ScheduleRefusesEmptySamples) {
  expect_refused([] { rs::PruneSchedule::drop({{0, 1.0}}, 0).check_sample("test", 3, 5, 2); },
                 {"sample 3", "0 tokens", "layer 0"});
  expect_refused([] { rs::PruneSchedule::none(2).check_sample("test", 1, 1, 2); },
                 {"sample 1", "fewer than schedule.protect = 2"});
  expect_refused([] { rs::PruneSchedule::drop({{0, -0.1}}).check("test", 2); }, {"drop ratio", "[0, 1]"});
  EXPECT_NO_THROW(rs::PruneSchedule::drop({{0, 1.0}}, 1).check_sample("test", 0, 5, 2));  // CLS survives
  // Mistakes that used to run as something else: a negative count (read as
  // ratio 0), a second step for one layer (ignored), negative sizes.
  expect_refused([] { rs::PruneSchedule::counts({{0, -5}}); }, {"keep count -5 at layer 0", ">= 0"});
  expect_refused([] { rs::PruneSchedule::drop({{0, 0.2}, {0, 0.9}}).check("test", 2); }, {"two steps for layer 0"});
  expect_refused([] { rs::PruneSchedule::counts({{1, 10}, {1, 3}}).check("test", 2); }, {"two steps for layer 1"});
  // A count below the protected prefix would be raised to it: refused instead.
  expect_refused([] { rs::PruneSchedule::counts({{0, 1}}, 2).check("test", 2); },
                 {"keep count 1 at layer 0 is below schedule.protect = 2"});
  EXPECT_NO_THROW(rs::PruneSchedule::counts({{0, 2}}, 2).check("test", 2));
  expect_refused([] { rs::PruneSchedule::every_layer(0.2, -3); }, {"depth = -3"});
  expect_refused([] { rs::PruneSchedule::paper().token_counts(-5, 3); }, {"tokens = -5"});
}

// Weights are public fields: a model refuses ones that no longer match
// their config, naming the tensor, instead of reading past them.
TEST(VisionTransformer, WeightsThatDisagreeWithTheConfigAreRefused) {
  auto edited = [](auto change) {
    auto w = rs::ViTWeights::random(tiny_vit(), 1);
    change(w);
    return w;
  };
  expect_refused([&] { rs::VisionTransformer<> m(edited([](auto& w) { w.head_w.resize(5); })); },
                 {"weights tensor 'head.weight' holds 5 values", "[10, 48]"});
  expect_refused([&] { rs::VisionTransformer<> m(edited([](auto& w) { w.blocks.pop_back(); })); },
                 {"blocks holds 3 blocks, but config.depth = 4"});
  expect_refused([&] { rs::VisionTransformer<> m(edited([](auto& w) { w.config.num_classes = 12; })); },
                 {"weights tensor 'head.weight'", "[12, 48]"});
  // save() reads every tensor by the config's shape: a short one is refused, not read past.
  expect_refused([&] { edited([](auto& w) { w.head_w.clear(); }).save(::testing::TempDir() + "never_written.safetensors"); },
                 {"ViTWeights::save", "weights tensor 'head.weight' holds 0 values"});
  // Sizes the model keeps as int are bounded, not wrapped.
  auto huge = tiny_vit();
  huge.image_size = 65536;
  huge.patch_size = 1;
  expect_refused([&] { rs::ViTWeights::random(huge, 1); }, {"the patches", "exceeds 2^29"});
  // More threads than could help: refused by name, not left to OpenMP's allocator.
  rs::VisionTransformer<> model(rs::ViTWeights::random(tiny_vit(), 1));
  std::vector<float> images(3 * 32 * 32), logits(10);
  expect_refused([&] { model.forward(rs::Host{1 << 30}, images.data(), 1, logits.data()); }, {"num_threads = 1073741824"});
  // An integer cast to DenseMath names no mode: refused, not run as f32.
  expect_refused([&] { model.forward(rs::Host{1, static_cast<rs::DenseMath>(42)}, images.data(), 1, logits.data()); },
                 {"dense_math = 42 is neither DenseMath::F32 nor DenseMath::Bf16"});
}

TEST(VisionTransformer, SafetensorsRoundTripGivesIdenticalLogits) {
  const auto cfg = tiny_vit();
  const auto w = lively_vit(cfg, 8);
  const std::string path = ::testing::TempDir() + "repshift_vit_tiny.safetensors";
  w.save(path);
  const rs::io::SafeTensorsFile file(path);
  EXPECT_EQ(file.names().size(), std::size_t(4 + 12 * cfg.depth + 4));
  EXPECT_EQ(file.info("blocks.3.mlp.fc1.weight").shape, (std::vector<std::int64_t>{192, 48}));
  const auto loaded = rs::ViTWeights::load(cfg, file);
  const int batch = 2;
  const auto images = ref::random_floats(std::size_t(batch) * 3 * 32 * 32, 9);
  std::vector<float> a(std::size_t(batch) * cfg.num_classes), b(a.size());
  rs::VisionTransformer<> m1(w), m2(loaded);
  const auto schedule = rs::PruneSchedule::drop({{1, 0.2}, {2, 0.3}});
  m1.forward(rs::Host{}, images.data(), batch, a.data(), schedule);
  m2.forward(rs::Host{}, images.data(), batch, b.data(), schedule);
  EXPECT_EQ(a, b);
  // A shallower config would drop blocks 2 and 3 without a word: refused.
  auto shallow = cfg;
  shallow.depth = 2;
  try {
    (void)rs::ViTWeights::load(shallow, file);
    ADD_FAILURE() << "a depth-4 file loaded into a depth-2 model";
  } catch (const rs::FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("is layer 2 of 'blocks.', but config.depth = 2"), std::string::npos) << e.what();
  }
  std::remove(path.c_str());

  // A tensor the model would not read inside a block (timm's LayerScale) is
  // refused; one outside its modules (a pretraining head) is not.
  auto with_extra = [&](const std::string& extra) {
    std::vector<rs::io::NamedTensor> list;
    w.for_each_tensor([&](const std::string& name, const std::vector<std::int64_t>& shape, const std::vector<float>& v) {
      list.push_back({name, shape, v.data()});
    });
    list.push_back({extra, {std::int64_t(cfg.dim)}, w.blocks[0].norm1_w.data()});
    rs::io::save_safetensors(path, list);
    const rs::io::SafeTensorsFile extended(path);
    std::remove(path.c_str());
    return rs::ViTWeights::load(cfg, extended);
  };
  try {
    (void)with_extra("blocks.1.ls1.gamma");
    ADD_FAILURE() << "a LayerScale tensor was ignored";
  } catch (const rs::FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("tensor 'blocks.1.ls1.gamma' (under 'blocks.') is not read by this model"),
              std::string::npos) << e.what();
  }
  EXPECT_EQ(with_extra("decoder.norm.weight").head_w, w.head_w);
}

TEST(VisionTransformer, RefusedArguments) {
  rs::VisionTransformer<> model(rs::ViTWeights::random(tiny_vit(), 1));
  std::vector<float> images(3 * 32 * 32), logits(10);
  EXPECT_THROW(model.forward(rs::Host{}, nullptr, 1, logits.data()), rs::InvalidArgument);
  EXPECT_THROW(model.forward(rs::Host{}, images.data(), 0, logits.data()), rs::InvalidArgument);
  EXPECT_THROW(model.forward(rs::Host{}, images.data(), 1, logits.data(), rs::PruneSchedule::drop({{4, 0.5}})),
               rs::InvalidArgument);  // layer 4 of a depth-4 model
  EXPECT_THROW(model.forward(rs::Host{}, images.data(), 1, logits.data(), rs::PruneSchedule::drop({{1, 1.5}})),
               rs::InvalidArgument);
  // protect = 0 by hand would let a layer drop the class token, whose row the head reads.
  expect_refused([&] { model.forward(rs::Host{}, images.data(), 1, logits.data(), rs::PruneSchedule::counts({{0, 1}}, 0)); },
                 {"schedule.protect = 0", "class token"});
  auto cfg = tiny_vit();
  cfg.image_size = 30;
  EXPECT_THROW(rs::ViTWeights::random(cfg, 1), rs::InvalidArgument);
  // An infinite epsilon would make every LayerNorm output its bias, whatever the image.
  cfg = tiny_vit();
  cfg.ln_eps = std::numeric_limits<float>::infinity();
  expect_refused([&] { rs::ViTWeights::random(cfg, 1); }, {"config.ln_eps = inf must be finite and > 0"});
}

// Compress = Merge in the model: sizes flow from layer to layer (the trace's
// token counts follow the schedule), and a keep rate that merges more than
// half the free tokens is refused by name rather than clamped.
TEST(ViT, MergeFollowsTheScheduleAndRefusesImpossibleRates) {
  const rs::ViTConfig cfg = tiny_vit();
  auto weights = std::make_shared<const rs::ViTWeights>(lively_vit(cfg, 5));
  rs::VisionTransformer<P::Mlp, P::L2, P::Merge> model(weights);
  const auto images = ref::random_floats(std::size_t(2) * 3 * 32 * 32, 6);
  std::vector<float> logits(2 * 10);
  const auto schedule = rs::PruneSchedule::drop({{1, 0.3}, {2, 0.2}});
  rs::ViTTrace trace;
  model.forward(rs::Host{}, images.data(), 2, logits.data(), schedule, &trace);
  EXPECT_EQ(trace.tokens, schedule.token_counts(17, cfg.depth));
  EXPECT_EQ(trace.tokens, (std::vector<int>{17, 17, 12, 10, 10}));
  for (float l : logits) EXPECT_TRUE(std::isfinite(l));
  // Merging differs from pruning the same tokens: survivors absorb the rest.
  rs::VisionTransformer<P::Mlp, P::L2, P::Prune> pruned(weights);
  std::vector<float> pruned_logits(logits.size());
  pruned.forward(rs::Host{}, images.data(), 2, pruned_logits.data(), schedule);
  EXPECT_GT(ref::max_rel_error(logits, std::vector<double>(pruned_logits.begin(), pruned_logits.end())), 1e-4);
  // dropping 0.6 of 17 tokens (keep 7) cannot be reached by one merge
  expect_refused([&] { model.forward(rs::Host{}, images.data(), 2, logits.data(), rs::PruneSchedule::drop({{0, 0.6}})); },
                 {"keeps 7 of sample 0's 17 tokens at layer 0", "keep >= 9"});
  // A later layer's impossible rate is refused before the first layer runs
  // (the trace is never started).
  trace.tokens = {-1};
  expect_refused([&] {
    model.forward(rs::Host{}, images.data(), 2, logits.data(), rs::PruneSchedule::drop({{0, 0.1}, {2, 0.9}}), &trace);
  }, {"at layer 2", "Merge removes at most half"});
  EXPECT_EQ(trace.tokens, std::vector<int>{-1});
}
