// CUDA primitives, timed with CUDA events: the score kernel's bytes/s next
// to a device-to-device copy of the same bytes (the bandwidth ceiling a
// kernel that reads two arrays once can reach), plus select and gather, at
// DeiT-S shapes, batch 64 and 256, f32/f16/bf16, and select at video lengths. Without a GPU every case
// reports "no CUDA device" and the program exits 0.
//   bench_cuda_primitives --benchmark_repetitions=10 --benchmark_enable_random_interleaving=true

#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <string>
#include <vector>

#include <repshift/cuda.hpp>

#include "cuda_bench_support.cuh"

namespace rs = repshift;

namespace {

constexpr int kTokens = 197, kChannels = 384;

using bench::DeviceBytes;
using bench::dtype;
using bench::have_device;
using bench::time_with_events;

template <class Metric, class T>
void BM_CudaShiftScore(benchmark::State& state) {
  if (!have_device()) return state.SkipWithError("no CUDA device");
  const int batch = int(state.range(0));
  const std::size_t n = std::size_t(batch) * kTokens * kChannels;
  DeviceBytes before(n * sizeof(T)), after(n * sizeof(T)), scores(std::size_t(batch) * kTokens * 4);
  time_with_events(state, [&] {
    rs::shift_score<Metric>(rs::Cuda{}, before.as<T>(), after.as<T>(), scores.as<float>(), batch, kTokens, kChannels);
  });
  state.SetBytesProcessed(std::int64_t(2 * n * sizeof(T)) * state.iterations());
  state.SetLabel(fmt::format("b{}/{}", batch, dtype<T>()));
}

// The ceiling: copy the same number of bytes the score kernel reads.
template <class T>
void BM_CudaCopy(benchmark::State& state) {
  if (!have_device()) return state.SkipWithError("no CUDA device");
  const int batch = int(state.range(0));
  const std::size_t bytes = 2 * std::size_t(batch) * kTokens * kChannels * sizeof(T);
  DeviceBytes src(bytes / 2), dst(bytes / 2);
  time_with_events(state, [&] { cudaMemcpyAsync(dst.ptr, src.ptr, bytes / 2, cudaMemcpyDeviceToDevice); });
  // A copy reads and writes bytes / 2 each: the same traffic as reading two arrays.
  state.SetBytesProcessed(std::int64_t(bytes) * state.iterations());
  state.SetLabel(fmt::format("b{}/{}", batch, dtype<T>()));
}

void BM_CudaSelectTop(benchmark::State& state) {
  if (!have_device()) return state.SkipWithError("no CUDA device");
  const int batch = int(state.range(0)), keep = rs::policies::keep_count(kTokens, 0.8, 1);
  DeviceBytes scores(std::size_t(batch) * kTokens * 4), idx(std::size_t(batch) * keep * 4);
  time_with_events(state, [&] { rs::select_top(rs::Cuda{}, scores.as<float>(), idx.as<int>(), batch, kTokens, keep, 1); });
  state.SetLabel(fmt::format("b{}", batch));
}

// Video lengths: one CTA sorts up to 4096 tokens, radix-selects past that
// (cuda/select_top.cuh); keep 80%, as the video schedules' first layers.
void BM_CudaSelectTopLong(benchmark::State& state) {
  if (!have_device()) return state.SkipWithError("no CUDA device");
  const int batch = int(state.range(0)), tokens = int(state.range(1)), keep = rs::policies::keep_count(tokens, 0.8, 0);
  DeviceBytes scores(std::size_t(batch) * tokens * 4), idx(std::size_t(batch) * keep * 4);
  time_with_events(state, [&] { rs::select_top(rs::Cuda{}, scores.as<float>(), idx.as<int>(), batch, tokens, keep, 0); });
  state.SetLabel(fmt::format("b{}/n{}", batch, tokens));
}

template <class T>
void BM_CudaGather(benchmark::State& state) {
  if (!have_device()) return state.SkipWithError("no CUDA device");
  const int batch = int(state.range(0)), keep = rs::policies::keep_count(kTokens, 0.8, 1);
  DeviceBytes x(std::size_t(batch) * kTokens * kChannels * sizeof(T)), out(std::size_t(batch) * keep * kChannels * sizeof(T));
  DeviceBytes idx(std::size_t(batch) * keep * 4);  // zeros: valid indices
  time_with_events(state, [&] {
    rs::gather_tokens(rs::Cuda{}, x.as<T>(), idx.as<int>(), out.as<T>(), batch, kTokens, keep, kChannels);
  });
  state.SetBytesProcessed(std::int64_t(2 * std::size_t(batch) * keep * kChannels * sizeof(T)) * state.iterations());
  state.SetLabel(fmt::format("b{}/{}", batch, dtype<T>()));
}

void batches(benchmark::internal::Benchmark* b) { b->Arg(64)->Arg(256)->UseManualTime()->Unit(benchmark::kMicrosecond); }

}  // namespace

BENCHMARK(BM_CudaCopy<float>)->Apply(batches);
BENCHMARK(BM_CudaShiftScore<rs::policies::L2, float>)->Apply(batches);
BENCHMARK(BM_CudaShiftScore<rs::policies::L1, float>)->Apply(batches);
BENCHMARK(BM_CudaShiftScore<rs::policies::Cosine, float>)->Apply(batches);
BENCHMARK(BM_CudaCopy<__half>)->Apply(batches);
BENCHMARK(BM_CudaShiftScore<rs::policies::L2, __half>)->Apply(batches);
BENCHMARK(BM_CudaShiftScore<rs::policies::L2, __nv_bfloat16>)->Apply(batches);
BENCHMARK(BM_CudaSelectTop)->Apply(batches);
BENCHMARK(BM_CudaSelectTopLong)
    ->ArgsProduct({{1, 8}, {2352, 4096, 8192, 16384}})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_CudaGather<float>)->Apply(batches);
BENCHMARK(BM_CudaGather<__half>)->Apply(batches);

BENCHMARK_MAIN();
