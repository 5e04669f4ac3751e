// The ablation sweep on CUDA: every valid (Backbone x Site x Importance x
// Compress) combination, expanded at compile time from the same type lists
// as the CPU sweep (bench_ablation.cpp), at keep rates 0.9, 0.7 and 0.5
// next to each unpruned model: Transformer = DeiT-S in f16 on the paper's
// blocks (0, 3, 6), SsmScan = Vim-T in f32 on vim_schedule's (0, 6, 12),
// batch 64, timed with CUDA events. Labels match the CPU sweep's, so
// bench/plot_ablation.py turns the JSON into the same table and plot.
// Without a GPU every case reports "no CUDA device" and the program exits 0.
//   bench_cuda_ablation --benchmark_repetitions=3 --benchmark_enable_random_interleaving=true
//                       --benchmark_out=gpu_ablation.json --benchmark_out_format=json

#include <benchmark/benchmark.h>

#include <memory>
#include <string>
#include <type_traits>

#include <repshift/cuda/models.cuh>
#include <repshift/api/sweep.hpp>

#include "ablation_sweep.hpp"

#include "cuda_bench_support.cuh"

namespace rs = repshift;
namespace P = rs::policies;

namespace {

constexpr int kBatch = 64;

// One Blas and one set of device weights per backbone for the whole sweep
// (created on first use, i.e. only where a device exists).
rs::cuda::Blas& blas() {
  static rs::cuda::Blas b;
  return b;
}
std::shared_ptr<const rs::cuda::ViTDeviceWeights<__half>> deit_weights() {
  static const auto w = std::make_shared<const rs::cuda::ViTDeviceWeights<__half>>(
      rs::ViTWeights::random(rs::ViTConfig::deit_small(), 0));
  return w;
}
std::shared_ptr<const rs::cuda::VimDeviceWeights> vim_weights() {
  static const auto w =
      std::make_shared<const rs::cuda::VimDeviceWeights>(rs::VimWeights::random(rs::VimConfig::vim_tiny(), 0));
  return w;
}

template <class Backbone, class Site, class Importance, class Compress>
void run_model(benchmark::State& state, double keep_rate, const std::string& label) {
  if (!bench::have_device()) return state.SkipWithError("no CUDA device");
  auto time = [&](auto& model, auto* images, auto* logits, const rs::PruneSchedule& schedule) {
    model.reserve(kBatch);
    bench::time_with_events(state, [&] { model.forward(rs::Cuda{}, images, kBatch, logits, schedule); });
  };
  if constexpr (std::is_same_v<Backbone, P::SsmScan>) {
    bench::DeviceBytes images(std::size_t(kBatch) * 3 * 224 * 224 * 4), logits(std::size_t(kBatch) * 1000 * 4);
    rs::cuda::VisionMamba<Importance> model(vim_weights(), blas());
    time(model, images.as<float>(), logits.as<float>(),
         keep_rate < 1.0 ? rs::vim_schedule(1.0 - keep_rate) : rs::PruneSchedule::none());
  } else {
    bench::DeviceBytes images(std::size_t(kBatch) * 3 * 224 * 224 * 2), logits(std::size_t(kBatch) * 1000 * 2);
    rs::cuda::VisionTransformer<__half, Site, Importance, Compress> model(deit_weights(), blas());
    time(model, images.as<__half>(), logits.as<__half>(),
         keep_rate < 1.0 ? rs::PruneSchedule::paper_layers(1.0 - keep_rate) : rs::PruneSchedule::none());
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
    })->Unit(benchmark::kMillisecond)->UseManualTime();
  });
  bench::add_ablation_context(kBatch, "CUDA (Transformer f16, SsmScan f32)");
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
