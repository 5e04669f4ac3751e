// The ablation sweep on the CPU for every valid (Backbone x Site x
// Importance x Compress) combination, expanded at compile time from four
// type lists, at keep rates 0.9, 0.7 and 0.5, next to each unpruned model:
// Transformer = DeiT-S on the paper's blocks (0, 3, 6), SsmScan = Vim-T on
// vim_schedule's (0, 6, 12), drop ratio 1 - keep rate.
// All variants share one set of weights; rounds interleave.
//   bench_ablation --benchmark_repetitions=3 --benchmark_enable_random_interleaving=true
//                  --benchmark_out=ablation.json --benchmark_out_format=json
//   python3 bench/plot_ablation.py ablation.json bench/results/

#include <benchmark/benchmark.h>

#include <memory>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include <repshift/models/vim.hpp>
#include <repshift/models/vit.hpp>
#include <repshift/api/sweep.hpp>

#include "ablation_sweep.hpp"

namespace rs = repshift;
namespace P = rs::policies;

namespace {

constexpr int kBatch = 8;

std::shared_ptr<const rs::ViTWeights> weights() {
  static const auto w = std::make_shared<const rs::ViTWeights>(rs::ViTWeights::random(rs::ViTConfig::deit_small(), 0));
  return w;
}

const std::vector<float>& images() {
  static const std::vector<float> im = [] {
    std::mt19937 gen(1);
    std::normal_distribution<float> normal;
    std::vector<float> v(std::size_t(kBatch) * 3 * 224 * 224);
    for (auto& x : v) x = normal(gen);
    return v;
  }();
  return im;
}

std::shared_ptr<const rs::VimWeights> vim_weights() {
  static const auto w = std::make_shared<const rs::VimWeights>(rs::VimWeights::random(rs::VimConfig::vim_tiny(), 0));
  return w;
}

// The backbone's model and schedule: DeiT-S on the paper's layers, Vim-T on vim_schedule's.
template <class Backbone, class Site, class Importance, class Compress>
void run_model(benchmark::State& state, double keep_rate, const std::string& label) {
  std::vector<float> logits(std::size_t(kBatch) * 1000);
  auto time = [&](auto& model, const rs::PruneSchedule& schedule) {
    for (auto _ : state) {
      model.forward(rs::Host{}, images().data(), kBatch, logits.data(), schedule);
      benchmark::DoNotOptimize(logits.data());
    }
  };
  if constexpr (std::is_same_v<Backbone, P::SsmScan>) {
    rs::VisionMamba<Importance> model(vim_weights());
    time(model, keep_rate < 1.0 ? rs::vim_schedule(1.0 - keep_rate) : rs::PruneSchedule::none());
  } else {
    rs::VisionTransformer<Site, Importance, Compress> model(weights());
    time(model, keep_rate < 1.0 ? rs::PruneSchedule::paper_layers(1.0 - keep_rate) : rs::PruneSchedule::none());
  }
  state.counters["images_per_s"] = benchmark::Counter(kBatch, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["keep_rate"] = keep_rate;
  state.SetLabel(label);
}

}  // namespace

int main(int argc, char** argv) {
  bench::for_each_ablation([](auto b, auto s, auto i, auto c, double keep) {
    using Backbone = decltype(b);
    using Site = decltype(s);
    using Importance = decltype(i);
    using Compress = decltype(c);
    const std::string label = bench::ablation_label<Backbone, Site, Importance, Compress>(keep);
    benchmark::RegisterBenchmark(("ablation/" + label).c_str(), [keep, label](benchmark::State& state) {
      run_model<Backbone, Site, Importance, Compress>(state, keep, label);
    })->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(1.0);
  });
  bench::add_ablation_context(kBatch, "CPU (f32)");
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
