// Vim-T (24 bidirectional Mamba blocks, d_model 192, state 16) on the CPU:
// images/s unpruned vs pruned with vim_schedule() (drop 0.2 at blocks 0, 6,
// 12; class token kept wherever it moves), batch 8 and 64, plus the
// selective scan alone at one layer's shape (both directions).
//   bench_vim --benchmark_repetitions=5 --benchmark_enable_random_interleaving=true

#include <benchmark/benchmark.h>

#include <memory>
#include <random>
#include <vector>

#include <repshift/models/vim.hpp>

namespace rs = repshift;

namespace {

std::shared_ptr<const rs::VimWeights> weights() {
  static const auto w = std::make_shared<const rs::VimWeights>(rs::VimWeights::random(rs::VimConfig::vim_tiny(), 0));
  return w;
}

std::vector<float> random_images(int batch) {
  std::mt19937 gen(1);
  std::normal_distribution<float> normal;
  std::vector<float> v(std::size_t(batch) * 3 * 224 * 224);
  for (auto& x : v) x = normal(gen);
  return v;
}

void BM_VimT(benchmark::State& state) {
  const int batch = int(state.range(0));
  const bool pruned = state.range(1) != 0;
  rs::VisionMamba<> model(weights());
  const auto images = random_images(batch);
  std::vector<float> logits(std::size_t(batch) * 1000);
  const auto schedule = pruned ? rs::vim_schedule() : rs::PruneSchedule::none();
  for (auto _ : state) {
    model.forward(rs::Host{}, images.data(), batch, logits.data(), schedule);
    benchmark::DoNotOptimize(logits.data());
  }
  state.counters["images_per_s"] = benchmark::Counter(batch, benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(pruned ? "pruned" : "unpruned");
}
BENCHMARK(BM_VimT)->ArgsProduct({{8, 64}, {0, 1}})->ArgNames({"batch", "pruned"})->Unit(benchmark::kMillisecond)
    ->UseRealTime()->MinTime(2.0);

// One Vim-T layer's scans: batch 8, 197 tokens, 384 channels, state 16.
void BM_SelectiveScanVimTLayer(benchmark::State& state) {
  const int batch = 8, length = 197, d = 384, n = 16;
  const std::size_t rows = std::size_t(batch) * length;
  std::vector<float> u(rows * d, 0.3f), dt(rows * d, -2.0f), bc(rows * 2 * n, 0.1f), z(rows * d, 1.0f), out(rows * d);
  std::vector<float> bias(d, -1.0f), A_log(std::size_t(d) * n, 0.5f), D(d, 1.0f);
  rs::SelectiveScanParams p;
  p.u = u.data();
  p.dt = dt.data();
  p.dt_bias = bias.data();
  p.A_log = A_log.data();
  p.B = bc.data();
  p.C = bc.data() + n;
  p.D = D.data();
  p.z = z.data();
  p.out = out.data();
  p.batch = batch;
  p.length = length;
  p.channels = d;
  p.state = n;
  p.u_stride = p.dt_stride = p.z_stride = p.out_stride = d;
  p.bc_stride = 2 * n;
  for (auto _ : state) {
    rs::cpu::selective_scan<rs::ScanDirection::Forward>(rs::Host{}, p);
    rs::cpu::selective_scan<rs::ScanDirection::Backward, true>(rs::Host{}, p);
    benchmark::DoNotOptimize(out.data());
  }
  // Each (token, channel, state) step: one exp and 4 FMAs' worth of flops.
  state.counters["state_updates_per_s"] =
      benchmark::Counter(2.0 * double(rows) * d * n, benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_SelectiveScanVimTLayer)->Unit(benchmark::kMicrosecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
