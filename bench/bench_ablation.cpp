// The ablation sweep on the CPU for every valid (Backbone x Site x
// Importance x Compress) combination, expanded at compile time from four
// type lists, at keep rates 0.9, 0.7 and 0.5, next to each unpruned model:
// Transformer = DeiT-S on the paper's layers (1, 4, 7), SsmScan = Vim-T on
// vim_schedule's (2, 8, 14).
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
    time(model, keep_rate < 1.0 ? rs::vim_schedule(keep_rate) : rs::PruneSchedule::none());
  } else {
    rs::VisionTransformer<Site, Importance, Compress> model(weights());
    time(model, keep_rate < 1.0 ? rs::PruneSchedule::paper_layers(keep_rate) : rs::PruneSchedule::none());
  }
  state.counters["images_per_s"] = benchmark::Counter(kBatch, benchmark::Counter::kIsIterationInvariantRate);
  state.counters["keep_rate"] = keep_rate;
  state.SetLabel(label);
}

template <class Backbone, class Site, class Importance, class Compress>
void register_one(double keep) {
  const std::string label = std::string(Backbone::name) + "/" +
                            (keep < 1.0 ? std::string(Site::name) + "/" + Importance::name + "/" + Compress::name + "/" +
                                              std::to_string(keep).substr(0, 3)
                                        : std::string("unpruned"));
  benchmark::RegisterBenchmark(("ablation/" + label).c_str(), [keep, label](benchmark::State& s) {
    run_model<Backbone, Site, Importance, Compress>(s, keep, label);
  })->Unit(benchmark::kMillisecond)->UseRealTime()->MinTime(1.0);
}

}  // namespace

int main(int argc, char** argv) {
  register_one<P::Transformer, P::Mlp, P::L2, P::Prune>(1.0);
  register_one<P::SsmScan, P::Block, P::L2, P::Prune>(1.0);
  rs::for_each_combination(rs::AllBackbones{}, rs::AllSites{}, rs::AllImportances{}, rs::AllCompressions{},
                           [](auto b, auto s, auto i, auto c) {
                             using Compress = decltype(c);
                             for (double keep : kKeepRates) {
                               // Merge halves the free tokens at most per layer: lower rates are not a policy choice.
                               if (!rs::PruneSchedule::paper_layers(keep).reachable<Compress>(197, 12)) continue;
                               register_one<decltype(b), decltype(s), decltype(i), Compress>(keep);
                             }
                           });
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
