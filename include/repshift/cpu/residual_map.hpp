#pragma once
// The bottleneck's residual epilogue on the CPU (params/residual_map.hpp):
// out = ReLU(branch + bias[c] + shortcut) and, with Score, each pixel's
// Metric over channels of (out, before), in the pass that writes out, so
// the shift costs no extra pass over the maps.

#include <algorithm>
#include <cstdint>

#include "../core/exec.hpp"
#include "../params/residual_map.hpp"
#include "parallel.hpp"
#include "reduce_channels.hpp"

namespace repshift {
namespace cpu {

// NCHW: one task per (sample, run of pixels) with the channel loop
// outside, so every plane streams once; a run's accumulators stay on the stack.
template <class Metric, bool Score>
void residual_map_nchw(const Host& host, const ResidualMap& r) {
  constexpr std::int64_t kRun = 512;
  const std::int64_t n = r.pixels, C = r.channels, runs = (n + kRun - 1) / kRun;
#pragma omp parallel for schedule(static) num_threads(thread_count(host))
  for (std::int64_t task = 0; task < r.batch * runs; ++task) {
    const std::int64_t b = task / runs, p0 = (task % runs) * kRun, len = std::min(kRun, n - p0);
    typename Metric::Accum acc[kRun];
    if constexpr (Score) {
      for (std::int64_t i = 0; i < len; ++i) acc[i] = Metric::init();
    }
    for (std::int64_t c = 0; c < C; ++c) {
      const std::int64_t off = (b * C + c) * n + p0;
      const float bias = r.bias[c];
      for (std::int64_t i = 0; i < len; ++i) {
        const float v = r.branch[off + i] + bias + r.shortcut[off + i];
        r.out[off + i] = v < 0.0f ? 0.0f : v;  // NaN stays NaN, as torch.relu
        if constexpr (Score) Metric::accumulate(acc[i], r.out[off + i], r.before[off + i]);
      }
    }
    if constexpr (Score) {
      for (std::int64_t i = 0; i < len; ++i) r.scores[b * n + p0 + i] = Metric::finalize(acc[i]);
    }
  }
}

// NHWC: one pixel at a time; the Metric reads its channels, now
// contiguous, while they are in L1.
template <class Metric, bool Score>
void residual_map_nhwc(const Host& host, const ResidualMap& r) {
  const std::int64_t C = r.channels;
#pragma omp parallel for schedule(static) num_threads(thread_count(host))
  for (std::int64_t i = 0; i < r.batch * r.pixels; ++i) {
    const float* branch = r.branch + i * C;
    const float* shortcut = r.shortcut + i * C;
    float* y = r.out + i * C;
#pragma omp simd  // vectorised at -O2 too (see layer_norm_row)
    for (std::int64_t c = 0; c < C; ++c) y[c] = std::max(branch[c] + r.bias[c] + shortcut[c], 0.0f);
    if constexpr (Score) r.scores[i] = reduce_channels<Metric>(y, r.before + i * C, C);
  }
}

template <class Metric, bool Score>
void residual_map(const Host& host, const ResidualMap& r) {
  if (r.layout == MapLayout::Nhwc) return residual_map_nhwc<Metric, Score>(host, r);
  residual_map_nchw<Metric, Score>(host, r);
}

}  // namespace cpu
}  // namespace repshift
