// Several threads, one set of weights: each thread owns a model (its
// scratch) built on one shared_ptr to the weights and runs forwards at the
// same time as the others. Every result must equal the same forward run
// alone, bit for bit: the weights are read-only, nothing else is shared.

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <repshift/models/resnet.hpp>
#include <repshift/models/vim.hpp>
#include <repshift/models/vit.hpp>

#include "model_fixtures.hpp"
#include "reference.hpp"

namespace rs = repshift;
namespace P = rs::policies;

namespace {

constexpr int kThreads = 4, kRounds = 3;

struct Result {
  std::vector<float> logits;
  std::vector<std::vector<int>> keep_idx;
  bool operator==(const Result& o) const { return logits == o.logits && keep_idx == o.keep_idx; }
};

// Runs job(thread, round) for every thread and round, first one after the
// other, then with all threads at once, and expects the same results.
template <class Job>
void expect_concurrent_equals_sequential(Job job) {
  std::vector<std::vector<Result>> alone(kThreads), together(kThreads);
  for (int t = 0; t < kThreads; ++t)
    for (int r = 0; r < kRounds; ++r) alone[std::size_t(t)].push_back(job(t, r));
  std::vector<std::thread> pool;
  for (int t = 0; t < kThreads; ++t)
    pool.emplace_back([&, t] {
      for (int r = 0; r < kRounds; ++r) together[std::size_t(t)].push_back(job(t, r));
    });
  for (auto& th : pool) th.join();
  for (int t = 0; t < kThreads; ++t)
    for (int r = 0; r < kRounds; ++r)
      EXPECT_TRUE(together[std::size_t(t)][std::size_t(r)] == alone[std::size_t(t)][std::size_t(r)])
          << "thread " << t << ", round " << r;
}

// One forward of `model` on random images (seeded), with its trace.
template <class Trace, class Model>
Result forward_once(Model& model, int batch, int image_size, int classes, std::uint32_t seed,
                    const rs::PruneSchedule& schedule) {
  const auto images = ref::random_floats(std::size_t(batch) * 3 * image_size * image_size, seed);
  Result run;
  run.logits.resize(std::size_t(batch) * classes);
  Trace trace;
  model.forward(rs::Host{}, images.data(), batch, run.logits.data(), schedule, &trace);
  run.keep_idx = trace.keep_idx;
  return run;
}

template <class Compress>
void vit_threads_share_weights() {
  const auto cfg = fixtures::tiny_vit();
  auto weights = std::make_shared<const rs::ViTModelWeights<rs::Host, float>>(
      std::make_shared<const rs::ViTWeights>(fixtures::lively_vit(cfg, 41)));
  const auto schedule = rs::PruneSchedule::drop({{0, 0.2}, {2, 0.3}});
  // One model per thread (the sequential pass uses the same ones).
  std::vector<std::unique_ptr<rs::VisionTransformer<P::Mlp, P::L2, Compress>>> models;
  for (int t = 0; t < kThreads; ++t)
    models.push_back(std::make_unique<rs::VisionTransformer<P::Mlp, P::L2, Compress>>(weights));
  expect_concurrent_equals_sequential([&](int t, int r) {
    return forward_once<rs::ViTTrace>(*models[std::size_t(t)], 1 + (t + r) % 3, cfg.image_size, cfg.num_classes,
                                      std::uint32_t(100 + 10 * t + r), schedule);
  });
}

}  // namespace

TEST(Concurrency, VisionTransformerPruneThreadsShareWeights) { vit_threads_share_weights<P::Prune>(); }
TEST(Concurrency, VisionTransformerMergeThreadsShareWeights) { vit_threads_share_weights<P::Merge>(); }

TEST(Concurrency, VisionMambaThreadsShareWeights) {
  const auto cfg = fixtures::tiny_vim();
  auto weights = std::make_shared<const rs::VimWeights>(fixtures::lively_vim(cfg, 43));
  std::vector<std::unique_ptr<rs::VisionMamba<>>> models;
  for (int t = 0; t < kThreads; ++t) models.push_back(std::make_unique<rs::VisionMamba<>>(weights));
  const auto schedule = rs::PruneSchedule::drop({{1, 0.25}});
  expect_concurrent_equals_sequential([&](int t, int r) {
    return forward_once<rs::VimTrace>(*models[std::size_t(t)], 1 + (t + r) % 2, cfg.image_size, cfg.num_classes,
                                      std::uint32_t(200 + 10 * t + r), schedule);
  });
}

// ResNet on each layout this build has (NHWC: oneDNN's convolutions, one
// scratchpad per plan), line-pruned, batch changing between rounds.
TEST(Concurrency, ResNetThreadsShareWeights) {
  const auto cfg = fixtures::tiny_resnet();
  auto weights = std::make_shared<const rs::ResNetWeights>(rs::ResNetWeights::random(cfg, 45));
  for (const rs::MapLayout layout : {rs::MapLayout::Nchw, rs::ResNet<>::default_layout()}) {
    std::vector<std::unique_ptr<rs::ResNet<>>> models;
    for (int t = 0; t < kThreads; ++t) {
      models.push_back(std::make_unique<rs::ResNet<>>(weights));
      models.back()->set_layout(layout);
    }
    expect_concurrent_equals_sequential([&](int t, int r) {
      const int batch = 1 + (t + r) % 3;
      const auto images = ref::random_floats(std::size_t(batch) * 3 * cfg.image_size * cfg.image_size,
                                             std::uint32_t(300 + 10 * t + r));
      Result run;
      run.logits.resize(std::size_t(batch) * cfg.num_classes);
      rs::ResNetTrace trace;
      models[std::size_t(t)]->forward(rs::Host{}, images.data(), batch, run.logits.data(),
                                      rs::LinePruneSchedule{{{1, 2, 2}, {2, 1, 1}}}, &trace);
      run.keep_idx = trace.kept_rows;
      run.keep_idx.insert(run.keep_idx.end(), trace.kept_cols.begin(), trace.kept_cols.end());
      return run;
    });
  }
}

// Two threads on ONE model object, which the docs forbid: whichever enters
// second while the other runs is refused by name, and every forward that
// runs returns the right values (nothing raced on the model's scratch).
// Each thread loops until a refusal has been seen and both have had a
// forward through (10 s at most: the old code, which refused nothing,
// fails fast on EXPECT_GT instead of timing out).
TEST(Concurrency, SecondThreadInOneModelIsRefused) {
  const auto cfg = fixtures::tiny_vit();
  rs::VisionTransformer<> model(fixtures::lively_vit(cfg, 47));
  const auto schedule = rs::PruneSchedule::drop({{0, 0.2}});
  const Result want = forward_once<rs::ViTTrace>(model, 2, cfg.image_size, cfg.num_classes, 400, schedule);
  std::atomic<int> refusals{0}, wrong{0}, other_errors{0};
  std::atomic<int> done[2] = {{0}, {0}};
  std::string message;
  const auto work = [&](int me) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while ((refusals.load() == 0 || done[0].load() == 0 || done[1].load() == 0) &&
           std::chrono::steady_clock::now() < deadline) {
      try {
        if (!(forward_once<rs::ViTTrace>(model, 2, cfg.image_size, cfg.num_classes, 400, schedule) == want)) ++wrong;
        ++done[me];
      } catch (const rs::InvalidArgument& e) {
        if (refusals++ == 0) message = e.what();
      } catch (...) {
        ++other_errors;
      }
    }
  };
  std::thread a(work, 0), b(work, 1);
  a.join();
  b.join();
  EXPECT_GT(refusals.load(), 0);
  EXPECT_GT(done[0].load() + done[1].load(), 0);
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(other_errors.load(), 0);
  EXPECT_NE(message.find("VisionTransformer::forward: another thread is running this model object"), std::string::npos)
      << message;
}
