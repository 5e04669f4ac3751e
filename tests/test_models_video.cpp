// VideoTransformer (UMT / VideoMAE style: tubelet patch embedding, no class
// token, fixed sinusoid positions, mean-pooled fc_norm head) against the
// naive double reference: unpruned and pruned with the paper's video
// schedules, batch invariance, the sinusoid table, safetensors names, and
// refused arguments.

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include <repshift/models/video.hpp>

#include "model_fixtures.hpp"
#include "reference_vit.hpp"
#include "test_support.hpp"

namespace rs = repshift;
namespace P = rs::policies;

namespace {

using fixtures::tiny_video;

// Random weights with spread (fixtures::lively_vit), the position table
// left as the model computes it, and no k bias (UMT has none).
rs::ViTWeights lively_video(const rs::ViTConfig& cfg, std::uint32_t seed) {
  rs::ViTWeights w = fixtures::lively_vit(cfg, seed);
  w.pos_embed = rs::ViTWeights::random(cfg, seed).pos_embed;
  for (auto& b : w.blocks) std::fill(b.qkv_b.begin() + cfg.dim, b.qkv_b.begin() + 2 * cfg.dim, 0.0f);
  return w;
}

// fn throws InvalidArgument whose message contains `part`.
template <class Fn>
void expect_refused(Fn&& fn, const std::string& part) {
  try {
    fn();
    ADD_FAILURE() << "no exception; expected one naming " << part;
  } catch (const rs::InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

std::size_t clip_floats(const rs::ViTConfig& c, int batch) {
  return std::size_t(batch) * c.in_chans * c.frames * c.image_size * c.image_size;
}

}  // namespace

TEST(VideoTransformer, ConfigCountsSpaceTimeTokens) {
  EXPECT_EQ(rs::ViTConfig::umt_base(8).tokens(), 1568);
  EXPECT_EQ(rs::ViTConfig::umt_base(12).tokens(), 2352);
  EXPECT_EQ(rs::ViTConfig::umt_base(16).tokens(), 3136);
  EXPECT_EQ(rs::ViTConfig::umt_base(16, 2).tokens(), 1568);
  EXPECT_EQ(rs::ViTConfig::umt_base(16, 2).patch_dim(), 3 * 2 * 16 * 16);
  // The paper's retrieval setting on 12 frames: r = 0.2 at blocks 0, 1, 2.
  EXPECT_EQ(rs::PruneSchedule::video_retrieval().for_model(0).token_counts(2352, 4),
            (std::vector<int>{2352, 1882, 1506, 1205, 1205}));
}

TEST(VideoTransformer, PositionsAreVideoMaesSinusoidTable) {
  const auto cfg = tiny_video();
  const auto w = rs::ViTWeights::random(cfg, 1);
  ASSERT_EQ(w.pos_embed.size(), std::size_t(cfg.tokens()) * cfg.dim);
  for (int n = 0; n < cfg.tokens(); ++n)
    for (int j = 0; j < cfg.dim; ++j) {
      const double angle = n / std::pow(10000.0, 2.0 * (j / 2) / cfg.dim);
      const double want = j % 2 == 0 ? std::sin(angle) : std::cos(angle);
      EXPECT_NEAR(w.pos_embed[std::size_t(n) * cfg.dim + j], want, 1e-6) << n << ", " << j;
    }
}

TEST(VideoTransformer, UnprunedMatchesReference) {
  const auto cfg = tiny_video();
  const auto w = lively_video(cfg, 3);
  const int batch = 2;
  const auto clips = ref::random_floats(clip_floats(cfg, batch), 4);
  rs::VideoTransformer<> model(w);
  std::vector<float> logits(std::size_t(batch) * cfg.num_classes);
  rs::ViTTrace trace;
  model.forward(rs::Host{}, clips.data(), batch, logits.data(), rs::PruneSchedule::none(0), &trace);
  EXPECT_EQ(trace.tokens, std::vector<int>(4, 32));
  const auto want = ref::vit(w, clips, batch, {}, {}, trace.tokens);
  EXPECT_LT(ref::max_rel_error(logits, want.logits), 1e-4);
}

// A schedule left at its default protect (PruneSchedule::kModelPrefix)
// protects nothing here, as the model has no class token: the plain calls
// run as the explicit protect = 0 ones, kept tokens and logits alike.
TEST(VideoTransformer, DefaultScheduleProtectsNothing) {
  const auto cfg = tiny_video();
  const auto w = lively_video(cfg, 7);
  const int batch = 2;
  const auto clips = ref::random_floats(clip_floats(cfg, batch), 8);
  rs::VideoTransformer<> model(w);
  const auto run = [&](const rs::PruneSchedule* schedule) {
    std::pair<std::vector<float>, rs::ViTTrace> out{std::vector<float>(std::size_t(batch) * cfg.num_classes), {}};
    if (schedule) {
      model.forward(rs::Host{}, clips.data(), batch, out.first.data(), *schedule, &out.second);
    } else {
      model.forward(rs::Host{}, clips.data(), batch, out.first.data());  // the default: PruneSchedule::none()
    }
    return out;
  };
  const auto none0 = rs::PruneSchedule::none(0);
  const auto plain = run(nullptr), explicit_none = run(&none0);
  EXPECT_EQ(plain.first, explicit_none.first);
  const auto by_default = rs::PruneSchedule::drop({{0, 0.5}, {2, 0.5}});
  const auto unprotected = rs::PruneSchedule::drop({{0, 0.5}, {2, 0.5}}, 0);
  const auto got = run(&by_default), want = run(&unprotected);
  EXPECT_EQ(got.first, want.first);
  EXPECT_EQ(got.second.keep_idx, want.second.keep_idx);
  EXPECT_EQ(got.second.tokens, (std::vector<int>{32, 16, 16, 8}));
  // Nothing is kept by rule: r = 1 leaves no token (a DeiT keeps its class token).
  std::vector<float> logits(std::size_t(batch) * cfg.num_classes);
  const auto drop_all = rs::PruneSchedule::drop({{1, 1.0}});
  expect_refused([&] { model.forward(rs::Host{}, clips.data(), batch, logits.data(), drop_all); },
                 "leaves sample 0 with 0 tokens at layer 1");
}

TEST(VideoTransformer, PaperVideoSchedulesMatchReferenceWithTheSameKeptTokens) {
  const auto cfg = tiny_video();
  const auto w = lively_video(cfg, 5);
  const int batch = 3;
  const auto clips = ref::random_floats(clip_floats(cfg, batch), 6);
  for (const auto& schedule : {rs::PruneSchedule::video_retrieval(), rs::PruneSchedule::every_layer(0.1, 3, 0)}) {
    rs::VideoTransformer<> model(w);
    std::vector<float> logits(std::size_t(batch) * cfg.num_classes);
    rs::ViTTrace trace;
    model.forward(rs::Host{}, clips.data(), batch, logits.data(), schedule, &trace);
    EXPECT_EQ(trace.tokens, schedule.for_model(0).token_counts(32, 3));
    ASSERT_EQ(trace.pruned_layers, (std::vector<int>{0, 1, 2}));
    const auto want = ref::vit(w, clips, batch, trace.pruned_layers, trace.keep_idx, trace.tokens);
    EXPECT_LT(ref::max_rel_error(logits, want.logits), 1e-4);
    // The library's kept set is the reference's top scores (no token is protected).
    for (std::size_t k = 0; k < trace.pruned_layers.size(); ++k) {
      const int in = trace.tokens[k], keep = trace.tokens[k + 1];
      for (int b = 0; b < batch; ++b) {
        EXPECT_TRUE(kept_is_top(trace.keep_idx[k].data() + std::size_t(b) * keep, keep,
                                want.scores[k].data() + std::size_t(b) * in, in))
            << "layer " << k << ", clip " << b;
      }
    }
  }
}

TEST(VideoTransformer, ASampleGivesTheSameResultAloneAndInABatch) {
  const auto cfg = tiny_video();
  const auto w = std::make_shared<const rs::ViTWeights>(lively_video(cfg, 7));
  const int batch = 3;
  const auto clips = ref::random_floats(clip_floats(cfg, batch), 8);
  const auto schedule = rs::PruneSchedule::video_retrieval();
  rs::VideoTransformer<> model(w);
  std::vector<float> logits(std::size_t(batch) * cfg.num_classes);
  rs::ViTTrace trace;
  model.forward(rs::Host{}, clips.data(), batch, logits.data(), schedule, &trace);
  const std::size_t per_clip = clip_floats(cfg, 1);
  for (int b = 0; b < batch; ++b) {
    rs::VideoTransformer<> alone(w);
    std::vector<float> one(std::size_t(cfg.num_classes));
    rs::ViTTrace t1;
    alone.forward(rs::Host{}, clips.data() + b * per_clip, 1, one.data(), schedule, &t1);
    std::vector<float> in_batch(logits.begin() + b * cfg.num_classes, logits.begin() + (b + 1) * cfg.num_classes);
    EXPECT_LT(ref::max_rel_error(one, ref::Mat(in_batch.begin(), in_batch.end())), 1e-5) << "sample " << b;
    ASSERT_FALSE(t1.keep_idx.empty());  // the schedule prunes: kept sets to compare
    ASSERT_EQ(t1.keep_idx.size(), trace.keep_idx.size());
    for (std::size_t k = 0; k < t1.keep_idx.size(); ++k) {
      const std::size_t keep = t1.keep_idx[k].size();
      EXPECT_TRUE(std::equal(t1.keep_idx[k].begin(), t1.keep_idx[k].end(), trace.keep_idx[k].begin() + b * keep))
          << "sample " << b << ", layer " << k;
    }
  }
}

TEST(VideoTransformer, SafetensorsUseUmtNamesAndRoundTrip) {
  const auto cfg = tiny_video();
  const auto w = lively_video(cfg, 9);
  const std::string path = ::testing::TempDir() + "video_roundtrip.safetensors";
  w.save(path);
  const rs::io::SafeTensorsFile file(path);
  // UMT's names: q and v biases apart, fc_norm before the head, no class
  // token, and no position table (UMT computes it).
  EXPECT_TRUE(file.contains("blocks.0.attn.q_bias"));
  EXPECT_TRUE(file.contains("blocks.0.attn.v_bias"));
  EXPECT_FALSE(file.contains("blocks.0.attn.qkv.bias"));
  EXPECT_TRUE(file.contains("fc_norm.weight"));
  EXPECT_FALSE(file.contains("norm.weight"));
  EXPECT_FALSE(file.contains("cls_token"));
  EXPECT_FALSE(file.contains("pos_embed"));
  EXPECT_EQ(file.info("patch_embed.proj.weight").shape, (std::vector<std::int64_t>{32, 3, 2, 4, 4}));
  const auto back = rs::ViTWeights::load(cfg, file);
  const int batch = 2;
  const auto clips = ref::random_floats(clip_floats(cfg, batch), 10);
  std::vector<float> a(std::size_t(batch) * cfg.num_classes), b(a.size());
  rs::VideoTransformer<>(w).forward(rs::Host{}, clips.data(), batch, a.data(), rs::PruneSchedule::video_retrieval());
  rs::VideoTransformer<>(back).forward(rs::Host{}, clips.data(), batch, b.data(), rs::PruneSchedule::video_retrieval());
  EXPECT_EQ(a, b);
  std::remove(path.c_str());
}

// Merge: the mean-pooled head weighs a merged row by the tokens it holds
// (as ToMe pools). A merge replaces rows by their size-weighted mean, so
// after blocks that change nothing (attention and MLP outputs zeroed) the
// weighted pool of the merged rows is the plain pool of the unmerged ones:
// the logits match the unpruned model's. An unweighted pool would not.
TEST(VideoTransformer, MergedRowsWeighTheirTokensInThePooledHead) {
  const auto cfg = tiny_video();
  auto w = lively_video(cfg, 5);
  for (int l = 1; l < cfg.depth; ++l) {
    auto& b = w.blocks[std::size_t(l)];
    for (auto* v : {&b.proj_w, &b.proj_b, &b.fc2_w, &b.fc2_b}) std::fill(v->begin(), v->end(), 0.0f);
  }
  const int batch = 2;
  const auto clips = ref::random_floats(clip_floats(cfg, batch), 6);
  rs::VideoTransformer<P::Mlp, P::L2, P::Merge> model(w);
  std::vector<float> merged(std::size_t(batch) * cfg.num_classes), unmerged(merged.size());
  rs::ViTTrace trace;
  model.forward(rs::Host{}, clips.data(), batch, merged.data(), rs::PruneSchedule::drop({{1, 0.25}, {2, 0.4}}),
                &trace);
  model.forward(rs::Host{}, clips.data(), batch, unmerged.data());
  EXPECT_EQ(trace.tokens, (std::vector<int>{32, 32, 24, 15}));
  EXPECT_LT(ref::max_rel_error(merged, std::vector<double>(unmerged.begin(), unmerged.end())), 1e-5);
}

TEST(VideoTransformer, RefusedArguments) {
  auto cfg = tiny_video();
  cfg.frames = 3;  // not a multiple of the tubelet
  expect_refused([&] { rs::ViTWeights::random(cfg, 0); }, "config.frames = 3 is not a multiple of config.tubelet = 2");
  cfg = tiny_video();
  rs::VideoTransformer<> model(rs::ViTWeights::random(cfg, 0));
  const auto clips = ref::random_floats(clip_floats(cfg, 1), 1);
  std::vector<float> logits(std::size_t(cfg.num_classes));
  // protect = 1, set by hand, would keep the first patch: the model has no class token.
  const auto protect_one = rs::PruneSchedule::drop({{0, 0.2}}, 1);
  expect_refused([&] { model.forward(rs::Host{}, clips.data(), 1, logits.data(), protect_one); },
                 "schedule.protect = 1");
  auto w = lively_video(cfg, 2);
  w.blocks[1].qkv_b[std::size_t(cfg.dim)] = 0.5f;  // a k bias UMT's files cannot hold
  expect_refused([&] { w.save(::testing::TempDir() + "never_written.safetensors"); }, "blocks.1.attn.qkv.bias");
}
