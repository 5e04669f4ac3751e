// The CUDA transformer path, timed with CUDA events: attention (flash vs
// the map-writing path that ClsAttention needs), one DeiT-S block pruned
// vs unpruned, and DeiT-S / DeiT-B forward with the paper's schedule vs
// unpruned, at batch 64 and 256, f16 / bf16 / f32. Without a GPU every
// case reports "no CUDA device" and the program exits 0.
//   bench_cuda_transformer --benchmark_repetitions=5 --benchmark_enable_random_interleaving=true

#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <memory>
#include <string>

#include <repshift/cuda.hpp>
#include <repshift/cuda/models.cuh>

#include "cuda_bench_support.cuh"

namespace rs = repshift;
namespace P = rs::policies;

namespace {

using bench::DeviceBytes;
using bench::dtype;
using bench::have_device;
using bench::time_with_events;

enum class Path { Flash, Map };

template <class T, Path path>
void BM_CudaAttention(benchmark::State& state) {
  if (!have_device()) return state.SkipWithError("no CUDA device");
  const int batch = int(state.range(0)), tokens = 197, heads = 6, head_dim = 64, dim = heads * head_dim;
  DeviceBytes qkv(std::size_t(batch) * tokens * 3 * dim * sizeof(T)), out(std::size_t(batch) * tokens * dim * sizeof(T));
  std::unique_ptr<DeviceBytes> map;
  if (path == Path::Map) map = std::make_unique<DeviceBytes>(std::size_t(batch) * heads * tokens * tokens * 4);
  const auto p = rs::BasicAttentionParams<T>::contiguous(qkv.as<T>(), nullptr, out.as<T>(), batch, tokens, heads, head_dim);
  time_with_events(state, [&] {
    if (path == Path::Flash) {
      rs::cuda::flash_attention(rs::Cuda{}, p);
    } else {
      rs::cuda::attention_with_map(rs::Cuda{}, p, map->as<float>());
    }
  });
  const double flops = 4.0 * batch * heads * double(tokens) * tokens * head_dim;
  state.counters["TFLOP/s"] = benchmark::Counter(flops * 1e-12, benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(fmt::format("{}/b{}/{}", path == Path::Flash ? "flash" : "map", batch, dtype<T>()));
}

// One DeiT-S block (Mlp site, L2), keeping 80% of the tokens or all.
template <class T, bool Pruned>
void BM_CudaBlock(benchmark::State& state) {
  if (!have_device()) return state.SkipWithError("no CUDA device");
  using B = rs::Block<P::Transformer, P::Mlp, P::L2>;
  const int batch = int(state.range(0)), tokens = 197;
  const auto cfg = rs::ViTConfig::deit_small();
  rs::ViTConfig one = cfg;
  one.depth = 1;
  const rs::cuda::ViTDeviceWeights<T> weights(rs::ViTWeights::random(one, 1));
  rs::cuda::Blas blas;
  rs::Workspace<rs::Cuda, T> ws(blas);
  B::reserve(ws, weights.block(0), batch, tokens);
  DeviceBytes x(std::size_t(batch) * tokens * cfg.dim * sizeof(T)), y(std::size_t(batch) * tokens * cfg.dim * sizeof(T));
  auto a = rs::BasicTransformerBlockArgs<T>::dense(x.as<T>(), y.as<T>(), batch, tokens);
  if (Pruned) a.keep = rs::policies::keep_count(tokens, 0.8, 1);
  time_with_events(state, [&] { B::forward(rs::Cuda{}, weights.block(0), a, ws); });
  state.counters["img/s"] = benchmark::Counter(batch, benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(fmt::format("{}/b{}/{}", Pruned ? "keep0.8" : "dense", batch, dtype<T>()));
}

// Random host weights, drawn once per program and shared, not copied, by
// the models: DeiT-B's 86M draws take seconds, and Google Benchmark runs a
// case's body several times.
std::shared_ptr<const rs::ViTWeights> random_deit(bool base) {
  static const auto small =
      std::make_shared<const rs::ViTWeights>(rs::ViTWeights::random(rs::ViTConfig::deit_small(), 1));
  if (!base) return small;
  static const auto big = std::make_shared<const rs::ViTWeights>(rs::ViTWeights::random(rs::ViTConfig::deit_base(), 1));
  return big;
}

// The whole model: the paper's schedule (drop 0.2 at blocks 0, 3, 6: 197 -> 158 -> 127 -> 102) or none.
template <class T, bool Base, bool Pruned>
void BM_CudaDeiT(benchmark::State& state) {
  if (!have_device()) return state.SkipWithError("no CUDA device");
  const int batch = int(state.range(0));
  rs::cuda::Blas blas;
  rs::cuda::VisionTransformer<T> model(random_deit(Base), blas);
  model.reserve(batch);
  DeviceBytes images(std::size_t(batch) * 3 * 224 * 224 * sizeof(T)), logits(std::size_t(batch) * 1000 * sizeof(T));
  const auto schedule = Pruned ? rs::PruneSchedule::paper() : rs::PruneSchedule::none();
  time_with_events(state, [&] { model.forward(rs::Cuda{}, images.as<T>(), batch, logits.as<T>(), schedule); });
  state.counters["img/s"] = benchmark::Counter(batch, benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(
      fmt::format("{}/{}/b{}/{}", Base ? "deit_b" : "deit_s", Pruned ? "paper" : "dense", batch, dtype<T>()));
}

void batches(benchmark::internal::Benchmark* b) { b->Arg(64)->Arg(256)->UseManualTime()->Unit(benchmark::kMillisecond); }

}  // namespace

BENCHMARK(BM_CudaAttention<__half, Path::Flash>)->Apply(batches);
BENCHMARK(BM_CudaAttention<__half, Path::Map>)->Apply(batches);
BENCHMARK(BM_CudaAttention<__nv_bfloat16, Path::Flash>)->Apply(batches);
BENCHMARK(BM_CudaAttention<float, Path::Flash>)->Apply(batches);
BENCHMARK(BM_CudaBlock<__half, false>)->Apply(batches);
BENCHMARK(BM_CudaBlock<__half, true>)->Apply(batches);
BENCHMARK(BM_CudaDeiT<__half, false, false>)->Apply(batches);
BENCHMARK(BM_CudaDeiT<__half, false, true>)->Apply(batches);
BENCHMARK(BM_CudaDeiT<__half, true, false>)->Apply(batches);
BENCHMARK(BM_CudaDeiT<__half, true, true>)->Apply(batches);
BENCHMARK(BM_CudaDeiT<__nv_bfloat16, false, false>)->Apply(batches);
BENCHMARK(BM_CudaDeiT<__nv_bfloat16, false, true>)->Apply(batches);
BENCHMARK(BM_CudaDeiT<float, false, false>)->Apply(batches);
BENCHMARK(BM_CudaDeiT<float, false, true>)->Apply(batches);

BENCHMARK_MAIN();
