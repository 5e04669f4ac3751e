// Which CPU GEMM the transformer's dense layers should use, per shape:
// OpenBLAS's sgemm (y = x W^T, W as stored, packed on every call, C zeroed
// first) against a oneDNN matmul whose weights were reordered once into
// the layout it wants (format any), with and without the bias fused, and
// a oneDNN matmul reading W as stored ("ba", no reorder): what
// rs::cpu::DenseLayers runs where oneDNN's matmul is its plain sgemm
// (below AVX-512; ONEDNN_MAX_CPU_ISA=AVX2 shows it).
// DeiT-S / DeiT-B layer shapes at batch 1 and 8, unpruned (197 tokens per
// image) and at the paper schedule's smallest count (102), and UMT-B's at
// T = 12 (2352 tokens, and 1205 after video_retrieval()).
// bench/peer/kernels_vs_pytorch.py runs BM_OneDnnStored against PyTorch's
// F.linear. BM_Sgemm* time rs::cpu::sgemm, the GEMM of the map attention
// and the NCHW convolution, through each library at the map attention's
// shapes (Q K^T and P V of one head, DeiT-S and UMT-B at T = 12): the
// figures behind its choice (cpu/gemm.hpp). BM_DenseLayers* time
// rs::cpu::DenseLayers::linear itself, f32 and bf16, against the bare
// matmuls (BM_OneDnnPackedBias, BM_OneDnnPackedBiasBf16) at DeiT-S's
// shapes; BM_FmaPeak is the machine's float FMA ceiling. Run with
//   --benchmark_repetitions=5 --benchmark_enable_random_interleaving=true

#include <benchmark/benchmark.h>

#include <repshift/cpu/onednn_compat.hpp>  // oneDNN 2.x or 3.x

#include <cblas.h>

#include <repshift/cpu/gemm.hpp>
#include <repshift/cpu/onednn_linear.hpp>

#include <immintrin.h>
#include <omp.h>

#include <random>
#include <vector>

namespace {

struct Shape {
  int rows, in, out;
};

std::vector<float> random_floats(std::size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = d(gen);
  return v;
}

Shape shape_of(const benchmark::State& state) {
  return {int(state.range(0)), int(state.range(1)), int(state.range(2))};
}

// One layer's random input, weights [out, in] and bias.
struct Layer {
  std::vector<float> x, w, bias;
  explicit Layer(const Shape& s)
      : x(random_floats(std::size_t(s.rows) * s.in, 1)),
        w(random_floats(std::size_t(s.out) * s.in, 2)),
        bias(random_floats(std::size_t(s.out), 3)) {}
};

bool skipped_without_bf16(benchmark::State& state) {
  if (repshift::cpu::DenseLayers::bf16_native()) return false;
  state.SkipWithError("this CPU has no AVX512-BF16 / AMX");
  return true;
}

void report(benchmark::State& state, const Shape& s) {
  state.counters["GFLOP/s"] = benchmark::Counter(2.0 * s.rows * s.in * s.out * double(state.iterations()) * 1e-9,
                                                 benchmark::Counter::kIsRate);
}

void BM_OpenBlas(benchmark::State& state) {
  const Shape s = shape_of(state);
  const auto x = random_floats(std::size_t(s.rows) * s.in, 1), w = random_floats(std::size_t(s.out) * s.in, 2);
  std::vector<float> y(std::size_t(s.rows) * s.out);
  for (auto _ : state) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, s.rows, s.out, s.in, 1.0f, x.data(), s.in, w.data(), s.in,
                0.0f, y.data(), s.out);
    benchmark::DoNotOptimize(y.data());
  }
  report(state, s);
}

// bf16: the weights packed as bfloat16 and x rounded to it on every call
// (a reorder, as DenseMath::Bf16 does), on oneDNN's own thread split.
void onednn(benchmark::State& state, bool with_bias, bool stored_layout = false, bool bf16 = false) {
  using dnnl::memory;
  using tag = memory::format_tag;
  if (bf16 && skipped_without_bf16(state)) return;
  const Shape s = shape_of(state);
  const Layer layer(s);
  const auto &x = layer.x, &w = layer.w, &bias = layer.bias;
  std::vector<float> y(std::size_t(s.rows) * s.out);
  dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  dnnl::stream stream(engine);
  const auto operands = bf16 ? memory::data_type::bf16 : memory::data_type::f32;
  const memory::desc src({s.rows, s.in}, memory::data_type::f32, tag::ab);
  const memory::desc operand_src({s.rows, s.in}, operands, tag::ab);
  const memory::desc dst({s.rows, s.out}, memory::data_type::f32, tag::ab);
  const memory::desc weights_as_stored({s.in, s.out}, memory::data_type::f32, tag::ba);  // W [out, in] = W^T in "ba"
  const memory::desc weights_any({s.in, s.out}, operands, tag::any);
  const memory::desc bias_md({1, s.out}, memory::data_type::f32, tag::ab);
  const dnnl::matmul::primitive_desc pd = repshift::cpu::onednn::matmul_pd(
      engine, operand_src, stored_layout ? weights_as_stored : weights_any, with_bias ? bias_md : memory::desc(), dst);
  memory stored(weights_as_stored, engine, const_cast<float*>(w.data()));
  memory packed(pd.weights_desc(), engine);
  dnnl::reorder(stored, packed).execute(stream, stored, packed);  // once, as at model load
  stream.wait();
  dnnl::matmul mm(pd);
  memory xm(src, engine, const_cast<float*>(x.data())), ym(dst, engine, y.data()), rounded(operand_src, engine);
  dnnl::reorder round(xm, rounded);
  std::unordered_map<int, memory> args{
      {DNNL_ARG_SRC, bf16 ? rounded : xm}, {DNNL_ARG_WEIGHTS, packed}, {DNNL_ARG_DST, ym}};
  if (with_bias) args.emplace(DNNL_ARG_BIAS, memory(bias_md, engine, const_cast<float*>(bias.data())));
  for (auto _ : state) {
    if (bf16) round.execute(stream, xm, rounded);
    mm.execute(stream, args);
    stream.wait();
    benchmark::DoNotOptimize(y.data());
  }
  report(state, s);
}

void BM_OneDnnPacked(benchmark::State& state) { onednn(state, false); }
void BM_OneDnnPackedBias(benchmark::State& state) { onednn(state, true); }
void BM_OneDnnStored(benchmark::State& state) { onednn(state, false, true); }
void BM_OneDnnPackedBiasBf16(benchmark::State& state) { onednn(state, true, false, true); }

// rs::cpu::DenseLayers::linear with a bias, as the models call it: against
// BM_OneDnnPackedBias(Bf16), what its own scheduling (bf16 bands) gives.
void dense_layers(benchmark::State& state, repshift::DenseMath math) {
  if (math == repshift::DenseMath::Bf16 && skipped_without_bf16(state)) return;
  const Shape s = shape_of(state);
  const Layer layer(s);
  std::vector<float> y(std::size_t(s.rows) * s.out);
  repshift::cpu::DenseLayers dense;
  const repshift::Host host{0, math};
  for (auto _ : state) {
    dense.linear(host, layer.x.data(), s.in, s.rows, s.in, layer.w.data(), layer.bias.data(), s.out, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  report(state, s);
}
void BM_DenseLayersF32(benchmark::State& state) { dense_layers(state, repshift::DenseMath::F32); }
void BM_DenseLayersBf16(benchmark::State& state) { dense_layers(state, repshift::DenseMath::Bf16); }

// The machine's float FMA ceiling on the benchmark's threads
// (OMP_NUM_THREADS): every thread runs 12 independent chains of vector
// FMAs (more than latency x FMA ports on any x86 core of this kind), no
// memory traffic. What a GEMM-bound forward's GFLOP/s are read against.
// Intrinsics: -std=c++17 does not contract a * b + c into an FMA.
#if defined(__AVX512F__)
using FmaVec = __m512;
inline FmaVec fma_splat(float x) { return _mm512_set1_ps(x); }
inline FmaVec fma_step(FmaVec acc, FmaVec a, FmaVec b) { return _mm512_fmadd_ps(acc, a, b); }
inline float fma_lane0(FmaVec v) { return _mm512_cvtss_f32(v); }
#elif defined(__FMA__)
using FmaVec = __m256;
inline FmaVec fma_splat(float x) { return _mm256_set1_ps(x); }
inline FmaVec fma_step(FmaVec acc, FmaVec a, FmaVec b) { return _mm256_fmadd_ps(acc, a, b); }
inline float fma_lane0(FmaVec v) { return _mm256_cvtss_f32(v); }
#endif

void BM_FmaPeak(benchmark::State& state) {
#if defined(__AVX512F__) || defined(__FMA__)
  constexpr int kLanes = sizeof(FmaVec) / sizeof(float), kChains = 12;
  constexpr long kSteps = 1 << 16;
  int threads = 1;
  for (auto _ : state) {
    float sink = 0;
#pragma omp parallel reduction(+ : sink)
    {
#pragma omp single
      threads = omp_get_num_threads();
      FmaVec acc[kChains];
      for (int c = 0; c < kChains; ++c) acc[c] = fma_splat(float(c));
      const FmaVec a = fma_splat(0.999999f), b = fma_splat(1e-7f);
      for (long step = 0; step < kSteps; ++step) {
        for (int c = 0; c < kChains; ++c) acc[c] = fma_step(acc[c], a, b);
      }
      for (int c = 0; c < kChains; ++c) sink += fma_lane0(acc[c]);
    }
    benchmark::DoNotOptimize(sink);
  }
  state.counters["GFLOP/s"] = benchmark::Counter(
      2.0 * kLanes * kChains * kSteps * threads * double(state.iterations()) * 1e-9, benchmark::Counter::kIsRate);
  state.counters["threads"] = threads;
#else
  state.SkipWithError("built without FMA (REPSHIFT_NATIVE=OFF on a CPU without it)");
#endif
}

// One head of the map attention: Q K^T (rows x rows x 64, B transposed),
// then P V (rows x 64 x rows).
void sgemm(benchmark::State& state, repshift::cpu::SgemmLibrary library) {
  const int n = int(state.range(0)), dh = 64;
  const bool scores = state.range(1) == 0;
  const auto a = random_floats(std::size_t(n) * (scores ? dh : n), 1), b = random_floats(std::size_t(n) * dh, 2);
  std::vector<float> c(std::size_t(n) * (scores ? n : dh));
  const repshift::Host host{};
  const repshift::cpu::LibraryThreads threads(host);
  for (auto _ : state) {
    if (scores) {
      repshift::cpu::sgemm(library, true, n, n, dh, 0.125f, a.data(), dh, b.data(), dh, 0.0f, c.data(), n);
    } else {
      repshift::cpu::sgemm(library, false, n, dh, n, 1.0f, a.data(), n, b.data(), dh, 0.0f, c.data(), dh);
    }
    benchmark::DoNotOptimize(c.data());
  }
  state.counters["GFLOP/s"] =
      benchmark::Counter(2.0 * n * n * dh * double(state.iterations()) * 1e-9, benchmark::Counter::kIsRate);
}
void BM_SgemmOpenBlas(benchmark::State& state) { sgemm(state, repshift::cpu::SgemmLibrary::Blas); }
void BM_SgemmOneDnn(benchmark::State& state) { sgemm(state, repshift::cpu::SgemmLibrary::OneDnn); }

void attention_shapes(benchmark::internal::Benchmark* b) {
  for (int n : {197, 2352}) {
    for (int product : {0, 1}) b->Args({n, product});
  }
  b->ArgNames({"tokens", "pv"})->Unit(benchmark::kMicrosecond)->UseRealTime();
}

void layer_shapes(benchmark::internal::Benchmark* b, int rows, int dim) {
  b->Args({rows, dim, 3 * dim});  // qkv
  b->Args({rows, dim, dim});      // proj
  b->Args({rows, dim, 4 * dim});  // fc1
  b->Args({rows, 4 * dim, dim});  // fc2
}

void shapes(benchmark::internal::Benchmark* b) {
  for (int dim : {384, 768}) {
    for (int rows : {197, 102, 8 * 197, 8 * 102}) layer_shapes(b, rows, dim);
  }
  for (int rows : {2352, 1205}) layer_shapes(b, rows, 768);  // UMT-B, T = 12: unpruned, and after video_retrieval()
  b->ArgNames({"rows", "in", "out"})->Unit(benchmark::kMicrosecond)->UseRealTime();
}

// DeiT-S's layers at batch 1 and 8, unpruned.
void deit_s_shapes(benchmark::internal::Benchmark* b) {
  for (int rows : {197, 8 * 197}) layer_shapes(b, rows, 384);
  b->ArgNames({"rows", "in", "out"})->Unit(benchmark::kMicrosecond)->UseRealTime();
}
// DeiT-S's, and UMT-B's at T = 12 unpruned and after video_retrieval().
void model_shapes(benchmark::internal::Benchmark* b) {
  deit_s_shapes(b);
  for (int rows : {2352, 1205}) layer_shapes(b, rows, 768);
}

}  // namespace

BENCHMARK(BM_OpenBlas)->Apply(shapes);
BENCHMARK(BM_OneDnnPacked)->Apply(shapes);
BENCHMARK(BM_OneDnnPackedBias)->Apply(shapes);
BENCHMARK(BM_OneDnnStored)->Apply(shapes);
BENCHMARK(BM_SgemmOpenBlas)->Apply(attention_shapes);
BENCHMARK(BM_SgemmOneDnn)->Apply(attention_shapes);
BENCHMARK(BM_OneDnnPackedBiasBf16)->Apply(deit_s_shapes);
BENCHMARK(BM_DenseLayersF32)->Apply(model_shapes);
BENCHMARK(BM_DenseLayersBf16)->Apply(model_shapes);
BENCHMARK(BM_FmaPeak)->UseRealTime();
BENCHMARK_MAIN();
