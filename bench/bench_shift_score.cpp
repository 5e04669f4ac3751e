// shift_score throughput per Metric and dtype at DeiT-S / DeiT-B shapes,
// next to a plain reduction over the same two arrays (the memory-bandwidth
// ceiling for a kernel that must read both once). Run with
//   --benchmark_repetitions=N --benchmark_enable_random_interleaving=true
// and feed the JSON to bench/ratio_to_ceiling.py for the ratios.

#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <cstdint>
#include <random>
#include <vector>

#include <repshift/repshift.hpp>

namespace rs = repshift;

namespace {

struct Shape {
  const char* name;
  int batch, tokens, channels;
};
constexpr Shape kShapes[] = {{"deit_s", 64, 197, 384}, {"deit_b", 64, 197, 768}};

template <class T>
struct Inputs {
  std::vector<T> before, after;
  std::vector<float> scores;
  explicit Inputs(const Shape& s) {
    const std::size_t n = std::size_t(s.batch) * s.tokens * s.channels;
    std::mt19937 gen(1);
    std::normal_distribution<float> normal;
    before.reserve(n);
    after.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      before.push_back(T(normal(gen)));
      after.push_back(T(normal(gen)));
    }
    scores.resize(std::size_t(s.batch) * s.tokens);
  }
};

// The ceiling: every element of both arrays read once and added into
// lanes, split over the OpenMP threads like the score kernel.
template <class T>
float plain_reduction(const T* REPSHIFT_RESTRICT a, const T* REPSHIFT_RESTRICT b, std::int64_t n) {
  constexpr int kLanes = 16;
  float total = 0.0f;
#pragma omp parallel reduction(+ : total)
  {
    alignas(64) float acc[kLanes] = {};
#pragma omp for schedule(static)
    for (std::int64_t blk = 0; blk < n / kLanes; ++blk) {
      for (int l = 0; l < kLanes; ++l) {
        acc[l] += rs::to_float(a[blk * kLanes + l]) + rs::to_float(b[blk * kLanes + l]);
      }
    }
    for (int l = 0; l < kLanes; ++l) total += acc[l];
  }
  return total;
}

template <class T>
void set_counters(benchmark::State& state, const Shape& s) {
  const double bytes = 2.0 * double(s.batch) * s.tokens * s.channels * sizeof(T);
  state.SetBytesProcessed(std::int64_t(bytes) * state.iterations());
  state.SetLabel(fmt::format("{}/{}", s.name, rs::dtype_name<T>()));
}

template <class Metric, class T>
void BM_ShiftScore(benchmark::State& state) {
  const Shape& s = kShapes[state.range(0)];
  Inputs<T> in(s);
  for (auto _ : state) {
    rs::shift_score<Metric>(rs::Host{}, in.before.data(), in.after.data(), in.scores.data(), s.batch,
                            s.tokens, s.channels);
    benchmark::DoNotOptimize(in.scores.data());
    benchmark::ClobberMemory();
  }
  set_counters<T>(state, s);
}

template <class T>
void BM_PlainReduction(benchmark::State& state) {
  const Shape& s = kShapes[state.range(0)];
  Inputs<T> in(s);
  const std::int64_t n = std::int64_t(s.batch) * s.tokens * s.channels;
  for (auto _ : state) benchmark::DoNotOptimize(plain_reduction(in.before.data(), in.after.data(), n));
  set_counters<T>(state, s);
}

void shapes(benchmark::internal::Benchmark* b) {
  for (int i = 0; i < int(std::size(kShapes)); ++i) b->Arg(i);
  b->UseRealTime()->Unit(benchmark::kMicrosecond);
}

}  // namespace

BENCHMARK(BM_PlainReduction<float>)->Apply(shapes);
BENCHMARK(BM_ShiftScore<rs::policies::L2, float>)->Apply(shapes);
BENCHMARK(BM_ShiftScore<rs::policies::L1, float>)->Apply(shapes);
BENCHMARK(BM_ShiftScore<rs::policies::Cosine, float>)->Apply(shapes);
BENCHMARK(BM_PlainReduction<rs::bf16>)->Apply(shapes);
BENCHMARK(BM_ShiftScore<rs::policies::L2, rs::bf16>)->Apply(shapes);
BENCHMARK(BM_ShiftScore<rs::policies::L1, rs::bf16>)->Apply(shapes);
BENCHMARK(BM_ShiftScore<rs::policies::Cosine, rs::bf16>)->Apply(shapes);

BENCHMARK_MAIN();
