// The ablation sweep: DeiT-S on the CPU for every valid (Site x Importance
// x Compress) combination, expanded at compile time from three type lists,
// at keep rates 0.9, 0.7 and 0.5 on the paper's layers (1, 4, 7), next to
// the unpruned model.
// All variants share one set of weights; rounds interleave.
//   bench_ablation --benchmark_repetitions=3 --benchmark_enable_random_interleaving=true
//                  --benchmark_out=ablation.json --benchmark_out_format=json
//   python3 bench/plot_ablation.py ablation.json bench/results/

#include <benchmark/benchmark.h>

#include <memory>
#include <random>
#include <string>
#include <vector>

#include <repshift/models/vit.hpp>
#include <repshift/sweep.hpp>

namespace rs = repshift;
namespace P = rs::policies;

namespace {

constexpr double kKeepRates[] = {0.9, 0.7, 0.5};
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

template <class Site, class Importance, class Compress>
void run_model(benchmark::State& state, double keep_rate, const std::string& label) {
  rs::VisionTransformer<Site, Importance, Compress> model(weights());
  std::vector<float> logits(std::size_t(kBatch) * 1000);
  const auto schedule = keep_rate < 1.0 ? rs::PruneSchedule::paper_layers(keep_rate) : rs::PruneSchedule::none();
  for (auto _ : state) {
    model.forward(rs::Host{}, images().data(), kBatch, logits.data(), schedule);
    benchmark::DoNotOptimize(logits.data());
  }
  state.counters["images_per_s"] = benchmark::Counter(kBatch, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["keep_rate"] = keep_rate;
  state.SetLabel(label);
}

template <class Site, class Importance, class Compress>
void register_one() {
  for (double keep : kKeepRates) {
    // Merge halves the free tokens at most per layer: rates below that are not a policy choice.
    if (!rs::PruneSchedule::paper_layers(keep).reachable<Compress>(197, 12)) continue;
    const std::string label = std::string(Site::name) + "/" + Importance::name + "/" + Compress::name + "/" +
                              std::to_string(keep).substr(0, 3);
    benchmark::RegisterBenchmark(("ablation/" + label).c_str(), [keep, label](benchmark::State& s) {
      run_model<Site, Importance, Compress>(s, keep, label);
    })->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(1.0);
  }
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::RegisterBenchmark("ablation/unpruned", [](benchmark::State& s) {
    run_model<P::Mlp, P::L2, P::Prune>(s, 1.0, "unpruned");
  })->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(1.0);
  rs::for_each_combination(rs::AllSites{}, rs::AllImportances{}, rs::AllCompressions{}, [](auto s, auto i, auto c) {
    register_one<decltype(s), decltype(i), decltype(c)>();
  });
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
