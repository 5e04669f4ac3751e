// Which CPU convolution the CnnRows path should use: repshift's im2col +
// OpenBLAS SGEMM (cpu/conv2d.hpp) against oneDNN (2.x or 3.x), on the
// ResNet-50 convolutions line pruning shrinks, batch 8, f32, same threads.
// oneDNN runs three times: on plain NCHW / OIHW memory (what the rest of
// the path uses), on NHWC activations (channels last, weights in its own
// layout), and on its own blocked layouts chosen with format_tag::any, the
// reorders left out (its best case, as if the whole network were blocked).
//   bench_conv_onednn --benchmark_repetitions=5 --benchmark_enable_random_interleaving=true
// Built only where CMake finds oneDNN (REPSHIFT_HAS_ONEDNN).

#include <benchmark/benchmark.h>

#include <repshift/cpu/onednn_compat.hpp>  // oneDNN 2.x or 3.x

#include <random>
#include <vector>

#include <repshift/cpu/conv2d.hpp>

namespace rs = repshift;

namespace {

struct Shape {
  int cin, cout, k, stride, size;
};
// stage 1: 1x1 64 -> 256 at 56; stage 2: 3x3 128 at 28, its stride-2 entry 3x3 at 56 -> 28; 1x1 512 -> 128 at 28.
const Shape kShapes[] = {{64, 256, 1, 1, 56}, {128, 128, 3, 1, 28}, {128, 128, 3, 2, 56}, {512, 128, 1, 1, 28}};
constexpr int kBatch = 8;

std::vector<float> random_floats(std::size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal;
  std::vector<float> v(n);
  for (auto& x : v) x = normal(gen);
  return v;
}

double flops(const Shape& s) {
  const int out = (s.size + 2 * (s.k / 2) - s.k) / s.stride + 1;
  return 2.0 * kBatch * s.cout * out * out * s.cin * s.k * s.k;
}

void BM_Repshift(benchmark::State& state) {
  const Shape s = kShapes[state.range(0)];
  const rs::Conv2dShape c{s.cin, s.cout, s.k, s.stride, s.k / 2};
  const auto x = random_floats(std::size_t(kBatch) * s.cin * s.size * s.size, 1);
  const auto w = random_floats(std::size_t(s.cout) * s.cin * s.k * s.k, 2), b = random_floats(std::size_t(s.cout), 3);
  const int out = int(c.out_size(s.size));
  std::vector<float> y(std::size_t(kBatch) * s.cout * out * out), cols;
  for (auto _ : state) {
    rs::cpu::conv2d<rs::ConvEpilogue::BiasRelu>(rs::Host{}, c, x.data(), kBatch, s.size, s.size, w.data(), b.data(),
                                                y.data(), cols);
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(flops(s) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

enum class Layout { Nchw, Nhwc, Blocked };

void run_onednn(benchmark::State& state, Layout layout) {
  using namespace dnnl;
  using tag = memory::format_tag;
  const Shape s = kShapes[state.range(0)];
  const int pad = s.k / 2, out = (s.size + 2 * pad - s.k) / s.stride + 1;
  engine eng(engine::kind::cpu, 0);
  stream strm(eng);
  const memory::dims src_d{kBatch, s.cin, s.size, s.size}, w_d{s.cout, s.cin, s.k, s.k}, b_d{s.cout},
      dst_d{kBatch, s.cout, out, out};
  auto md = [&](const memory::dims& d, tag t) { return memory::desc(d, memory::data_type::f32, t); };
  const tag act = layout == Layout::Blocked ? tag::any : layout == Layout::Nhwc ? tag::nhwc : tag::nchw;
  const tag wt = layout == Layout::Nchw ? tag::oihw : tag::any;
  primitive_attr attr;
  attr.set_post_ops(repshift::cpu::onednn::eltwise_post_op(algorithm::eltwise_relu));
  const convolution_forward::primitive_desc pd = repshift::cpu::onednn::conv_pd(
      eng, md(src_d, act), md(w_d, wt), md(b_d, tag::x), md(dst_d, act), s.stride, pad, attr);
  // Inputs in the primitive's own layouts (random contents; reorders are not timed).
  auto filled = [&](const memory::desc& d, unsigned seed) {
    memory m(d, eng);
    const auto v = random_floats(d.get_size() / sizeof(float), seed);
    std::copy(v.begin(), v.end(), static_cast<float*>(m.get_data_handle()));
    return m;
  };
  memory src = filled(pd.src_desc(), 1), weights = filled(pd.weights_desc(), 2), bias = filled(pd.bias_desc(), 3);
  memory dst(pd.dst_desc(), eng);
  convolution_forward conv(pd);
  for (auto _ : state) {
    conv.execute(strm, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, weights}, {DNNL_ARG_BIAS, bias}, {DNNL_ARG_DST, dst}});
    strm.wait();
  }
  state.counters["GFLOP/s"] = benchmark::Counter(flops(s) * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
}

void BM_OneDnnNchw(benchmark::State& state) { run_onednn(state, Layout::Nchw); }
void BM_OneDnnNhwc(benchmark::State& state) { run_onednn(state, Layout::Nhwc); }
void BM_OneDnnBlocked(benchmark::State& state) { run_onednn(state, Layout::Blocked); }

BENCHMARK(BM_Repshift)->DenseRange(0, 3)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_OneDnnNchw)->DenseRange(0, 3)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_OneDnnNhwc)->DenseRange(0, 3)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_OneDnnBlocked)->DenseRange(0, 3)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
