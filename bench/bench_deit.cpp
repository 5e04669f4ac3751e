// DeiT forward on the CPU, unpruned vs the paper's schedule, and the cost
// of the fused shift score inside one block. Run with
//   --benchmark_repetitions=N --benchmark_enable_random_interleaving=true
// and summarise with bench/summarize_deit.py (ratios from the same run).

#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <map>
#include <memory>
#include <random>
#include <vector>

#include <repshift/models/vit.hpp>

namespace rs = repshift;

namespace {

rs::ViTConfig config_of(int id) { return id == 0 ? rs::ViTConfig::deit_small() : rs::ViTConfig::deit_base(); }
const char* name_of(int id) { return id == 0 ? "deit_s" : "deit_b"; }

// One model per config, built on first use and shared by every variant.
rs::VisionTransformer<>& model(int id) {
  static std::map<int, std::unique_ptr<rs::VisionTransformer<>>> models;
  auto& m = models[id];
  if (!m) m = std::make_unique<rs::VisionTransformer<>>(rs::ViTWeights::random(config_of(id), 0));
  return *m;
}

std::vector<float> random_vector(std::size_t n, std::uint32_t seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal;
  std::vector<float> v(n);
  for (auto& x : v) x = normal(gen);
  return v;
}

// Args: model id (0 = DeiT-S, 1 = DeiT-B), batch, pruned (0/1).
void BM_DeiT(benchmark::State& state) {
  const int id = int(state.range(0)), batch = int(state.range(1));
  const bool pruned = state.range(2) != 0;
  auto& m = model(id);
  const auto& cfg = m.config();
  const auto images = random_vector(std::size_t(batch) * 3 * cfg.image_size * cfg.image_size, 1);
  std::vector<float> logits(std::size_t(batch) * cfg.num_classes);
  const auto schedule = pruned ? rs::PruneSchedule::paper() : rs::PruneSchedule::none();
  for (auto _ : state) {
    m.forward(rs::Host{}, images.data(), batch, logits.data(), schedule);
    benchmark::DoNotOptimize(logits.data());
  }
  state.counters["images_per_s"] = benchmark::Counter(double(batch), benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(fmt::format("{}/b{}/{}", name_of(id), batch, pruned ? "pruned" : "unpruned"));
}

// One DeiT-S block, batch 8, 197 tokens, no pruning: with and without the
// MLP-site L2 score the residual epilogue computes (Args: score 0/1).
void BM_BlockScoring(benchmark::State& state) {
  const bool score = state.range(0) != 0;
  const rs::ViTConfig cfg = rs::ViTConfig::deit_small();
  static const rs::ViTWeights weights = rs::ViTWeights::random(cfg, 0);
  const int batch = 8, tokens = cfg.tokens();
  const auto x = random_vector(std::size_t(batch) * tokens * cfg.dim, 2);
  std::vector<float> y(x.size()), scores(std::size_t(batch) * tokens);
  rs::Workspace<rs::Host> ws;
  auto a = rs::TransformerBlockArgs::dense(x.data(), y.data(), batch, tokens);
  a.scores = score ? scores.data() : nullptr;
  using Block = rs::Block<rs::policies::Transformer, rs::policies::Mlp, rs::policies::L2>;
  for (auto _ : state) {
    Block::forward(rs::Host{}, weights.block(0), a, ws);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetLabel(score ? "deit_s_block/b8/score" : "deit_s_block/b8/no_score");
}

// The residual epilogue of the block above (MLP branch + bias + residual,
// DeiT-S, batch 8, 197 tokens) with and without the MLP-site L2 score: the
// score's whole cost, measured where it is paid (Args: score 0/1).
void BM_ResidualEpilogue(benchmark::State& state) {
  const bool score = state.range(0) != 0;
  const std::int64_t rows = 8 * 197, dim = 384;
  auto branch = random_vector(std::size_t(rows * dim), 3);
  const auto residual = random_vector(branch.size(), 4), bias = random_vector(std::size_t(dim), 5);
  std::vector<float> out(branch.size()), scores(static_cast<std::size_t>(rows));
  rs::cpu::ResidualRows e;
  e.branch = branch.data();
  e.bias = bias.data();
  e.residual = residual.data();
  e.out = out.data();
  e.scores = scores.data();
  e.rows = rows;
  e.channels = dim;
  for (auto _ : state) {
    if (score) {
      rs::cpu::residual_epilogue<rs::policies::L2, rs::cpu::ScoreOperands::BranchVsResidual, false>(rs::Host{}, e);
    } else {
      rs::cpu::residual_epilogue<rs::policies::L2, rs::cpu::ScoreOperands::None, false>(rs::Host{}, e);
    }
    benchmark::DoNotOptimize(out.data());
  }
  state.SetLabel(score ? "deit_s_epilogue/b8/score" : "deit_s_epilogue/b8/no_score");
}

}  // namespace

BENCHMARK(BM_DeiT)
    ->ArgsProduct({{0, 1}, {1, 8, 64}, {0, 1}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(2.0);
BENCHMARK(BM_BlockScoring)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(1.0);
BENCHMARK(BM_ResidualEpilogue)->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond)->UseRealTime()->MinTime(0.5);

BENCHMARK_MAIN();
