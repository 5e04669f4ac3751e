// ResNet-50 on the CPU, line-pruned (8 + 8 lines after stage 1, 4 + 4 after
// stage 2, by the last block's L2 shift) vs unpruned, batch 8 and 64, in
// both layouts (NCHW: im2col + OpenBLAS; NHWC: oneDNN, when built with
// it): the whole network, and stage 2 alone on its unpruned (56x56) vs
// pruned (48x48) input, where the saving lands first.
//   bench_resnet --benchmark_repetitions=5 --benchmark_enable_random_interleaving=true

#include <benchmark/benchmark.h>

#include <memory>
#include <random>
#include <string>
#include <vector>

#include <repshift/models/resnet.hpp>

namespace rs = repshift;

namespace {

std::shared_ptr<const rs::ResNetWeights> weights() {
  static const auto w = std::make_shared<const rs::ResNetWeights>(rs::ResNetWeights::random(rs::ResNetConfig::resnet50(), 0));
  return w;
}

std::vector<float> random_floats(std::size_t n) {
  std::mt19937 gen(1);
  std::normal_distribution<float> normal;
  std::vector<float> v(n);
  for (auto& x : v) x = normal(gen);
  return v;
}

rs::MapLayout layout_arg(std::int64_t v) { return v ? rs::MapLayout::Nhwc : rs::MapLayout::Nchw; }
const char* layout_name(std::int64_t v) { return v ? "/nhwc" : "/nchw"; }
// NHWC only where the build has oneDNN.
const std::vector<std::int64_t> kLayouts =
    rs::ResNet<>::default_layout() == rs::MapLayout::Nhwc ? std::vector<std::int64_t>{0, 1} : std::vector<std::int64_t>{0};

void BM_ResNet50(benchmark::State& state) {
  const int batch = int(state.range(0));
  const bool pruned = state.range(1) != 0;
  rs::ResNet<> model(weights());
  model.set_layout(layout_arg(state.range(2)));
  const auto images = random_floats(std::size_t(batch) * 3 * 224 * 224);
  std::vector<float> logits(std::size_t(batch) * 1000);
  const auto schedule = pruned ? rs::LinePruneSchedule::paper() : rs::LinePruneSchedule::none();
  for (auto _ : state) {
    model.forward(rs::Host{}, images.data(), batch, logits.data(), schedule);
    benchmark::DoNotOptimize(logits.data());
  }
  state.counters["images_per_s"] = benchmark::Counter(batch, benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(std::string(pruned ? "pruned" : "unpruned") + layout_name(state.range(2)));
}
BENCHMARK(BM_ResNet50)->ArgsProduct({{8, 64}, {0, 1}, kLayouts})->ArgNames({"batch", "pruned", "nhwc"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()->MinTime(2.0);

// Stage 2's four bottlenecks (256 -> 512 channels, stride 2) on a size x size input.
void BM_Stage2(benchmark::State& state) {
  const int batch = int(state.range(0)), size = int(state.range(1));
  using B = rs::Block<rs::policies::CnnRows, rs::policies::BlockOutput, rs::policies::L2>;
  const auto& w = *weights();
  const auto x = random_floats(std::size_t(batch) * 256 * size * size);
  std::vector<float> a(std::size_t(batch) * 512 * size * size), b(a.size());
  rs::Workspace<rs::Host> ws;
  for (auto _ : state) {
    const float* in = x.data();
    float* out = a.data();
    int s = size;
    for (int i = 0; i < w.config.blocks[1]; ++i) {
      const auto bw = w.block(1, i);
      auto args = rs::CnnBlockArgs::dense(in, out, batch, s, s);
      args.layout = layout_arg(state.range(2));
      B::forward(rs::Host{}, bw, args, ws);
      s = int(bw.conv2().out_size(s));
      in = out;
      out = out == a.data() ? b.data() : a.data();
    }
    benchmark::DoNotOptimize(in);
  }
  state.counters["images_per_s"] = benchmark::Counter(batch, benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(std::string(size == 56 ? "unpruned" : "pruned") + layout_name(state.range(2)));
}
BENCHMARK(BM_Stage2)->ArgsProduct({{8, 64}, {56, 48}, kLayouts})->ArgNames({"batch", "input", "nhwc"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()->MinTime(1.0);

}  // namespace

BENCHMARK_MAIN();
