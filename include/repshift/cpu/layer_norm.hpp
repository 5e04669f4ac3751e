#pragma once
// LayerNorm of one row: out = (x - mean) / sqrt(var + eps) * gamma + beta,
// biased variance, as torch.nn.LayerNorm. Two passes over a row that sits
// in L1; the residual epilogues call it on the row they just formed.

#include <cmath>
#include <cstdint>

#include "../core/config.hpp"
#include "../core/exec.hpp"
#include "../params/layer_norm.hpp"
#include "parallel.hpp"

namespace repshift {
namespace cpu {

using LayerNormWeights = LayerNormParams<float>;

inline void layer_norm_row(const float* x, float* out,  // may alias: post-norm is in place
                           std::int64_t channels, const LayerNormWeights& w) {
  constexpr int kLanes = 16;
  float sum[kLanes] = {};
  std::int64_t c = 0;
  for (; c + kLanes <= channels; c += kLanes)
    for (int l = 0; l < kLanes; ++l) sum[l] += x[c + l];
  for (int l = 0; c < channels; ++c, ++l) sum[l] += x[c];
  float total = 0.0f;
  for (int l = 0; l < kLanes; ++l) total += sum[l];
  const float mean = total / float(channels);

  float sq[kLanes] = {};
  c = 0;
  for (; c + kLanes <= channels; c += kLanes)
    for (int l = 0; l < kLanes; ++l) sq[l] += (x[c + l] - mean) * (x[c + l] - mean);
  for (int l = 0; c < channels; ++c, ++l) sq[l] += (x[c] - mean) * (x[c] - mean);
  float var = 0.0f;
  for (int l = 0; l < kLanes; ++l) var += sq[l];
  const float inv = 1.0f / std::sqrt(var / float(channels) + w.eps);

  // omp simd: out may alias x. GCC vectorises a loop over rows that may
  // overlap only at -O3 (behind a run-time check); this way at -O2 too.
#pragma omp simd
  for (c = 0; c < channels; ++c) out[c] = (x[c] - mean) * inv * w.gamma[c] + w.beta[c];
}

// LayerNorm of `rows` rows (row r at src + r * src_stride), spread over
// the OpenMP threads; src and dst may be the same buffer. The strided form
// normalises e.g. only the CLS rows of [batch, tokens, C].
inline void layer_norm_rows(const Host& host, const float* src, std::int64_t src_stride, float* dst,
                            std::int64_t dst_stride, std::int64_t rows, std::int64_t channels,
                            const LayerNormWeights& w) {
#pragma omp parallel for schedule(static) num_threads(thread_count(host))
  for (std::int64_t r = 0; r < rows; ++r) layer_norm_row(src + r * src_stride, dst + r * dst_stride, channels, w);
}

}  // namespace cpu
}  // namespace repshift
