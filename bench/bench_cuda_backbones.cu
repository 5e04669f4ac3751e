// The CnnRows and SsmScan models on CUDA, timed with CUDA events:
// ResNet-50 (cuDNN, f32) with the paper's line-pruning schedule vs
// unpruned, and Vim-T (f32) with vim_schedule vs unpruned, at batch 8 and
// 64 like the CPU benches. Without a GPU every case reports "no CUDA
// device" and the program exits 0.
//   bench_cuda_backbones --benchmark_repetitions=5 --benchmark_enable_random_interleaving=true

#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <memory>
#include <string>

#include <repshift/cuda/cudnn_models.cuh>
#include <repshift/cuda/models.cuh>

#include "cuda_bench_support.cuh"

namespace rs = repshift;

namespace {

using bench::DeviceBytes;
using bench::have_device;
using bench::time_with_events;

// Random host weights, drawn once per program (not per case call).
std::shared_ptr<const rs::ResNetWeights> random_resnet50() {
  static const auto w = std::make_shared<const rs::ResNetWeights>(rs::ResNetWeights::random(rs::ResNetConfig::resnet50(), 1));
  return w;
}
std::shared_ptr<const rs::VimWeights> random_vim_tiny() {
  static const auto w = std::make_shared<const rs::VimWeights>(rs::VimWeights::random(rs::VimConfig::vim_tiny(), 1));
  return w;
}

template <bool Pruned>
void BM_CudaResNet50(benchmark::State& state) {
  if (!have_device()) return state.SkipWithError("no CUDA device");
  const int batch = int(state.range(0));
  rs::cuda::Dnn dnn;
  rs::cuda::Blas blas;
  rs::cuda::ResNet<> model(random_resnet50(), {blas, dnn});
  model.reserve(batch);
  DeviceBytes images(std::size_t(batch) * 3 * 224 * 224 * 4), logits(std::size_t(batch) * 1000 * 4);
  const auto schedule = Pruned ? rs::LinePruneSchedule::paper() : rs::LinePruneSchedule::none();
  time_with_events(state, [&] { model.forward(rs::Cuda{}, images.as<float>(), batch, logits.as<float>(), schedule); });
  state.counters["img/s"] = benchmark::Counter(batch, benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(fmt::format("{}/b{}/f32", Pruned ? "paper" : "dense", batch));
}

template <bool Pruned>
void BM_CudaVimTiny(benchmark::State& state) {
  if (!have_device()) return state.SkipWithError("no CUDA device");
  const int batch = int(state.range(0));
  rs::cuda::Blas blas;
  rs::cuda::VisionMamba<> model(random_vim_tiny(), blas);
  model.reserve(batch);
  DeviceBytes images(std::size_t(batch) * 3 * 224 * 224 * 4), logits(std::size_t(batch) * 1000 * 4);
  const auto schedule = Pruned ? rs::vim_schedule(0.2) : rs::PruneSchedule::none();
  time_with_events(state, [&] { model.forward(rs::Cuda{}, images.as<float>(), batch, logits.as<float>(), schedule); });
  state.counters["img/s"] = benchmark::Counter(batch, benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(fmt::format("{}/b{}/f32", Pruned ? "vim_schedule0.2" : "dense", batch));
}

void batches(benchmark::internal::Benchmark* b) { b->Arg(8)->Arg(64)->UseManualTime()->Unit(benchmark::kMillisecond); }

}  // namespace

BENCHMARK(BM_CudaResNet50<false>)->Apply(batches);
BENCHMARK(BM_CudaResNet50<true>)->Apply(batches);
BENCHMARK(BM_CudaVimTiny<false>)->Apply(batches);
BENCHMARK(BM_CudaVimTiny<true>)->Apply(batches);

BENCHMARK_MAIN();
