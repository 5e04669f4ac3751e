#pragma once
// RMSNorm (Mamba / Vim): out = x / sqrt(mean(x^2) + eps) * weight, no
// centring and no bias.

#include <cmath>
#include <cstdint>

#include "../core/exec.hpp"
#include "../params/rms_norm.hpp"
#include "parallel.hpp"

namespace repshift {
namespace cpu {

using RmsNormWeights = RmsNormParams<float>;

inline void rms_norm_row(const float* x, float* out, std::int64_t channels, const RmsNormWeights& w) {
  constexpr int kLanes = 16;
  float sq[kLanes] = {};
  std::int64_t c = 0;
  for (; c + kLanes <= channels; c += kLanes)
    for (int l = 0; l < kLanes; ++l) sq[l] += x[c + l] * x[c + l];
  for (int l = 0; c < channels; ++c, ++l) sq[l] += x[c] * x[c];
  float total = 0.0f;
  for (int l = 0; l < kLanes; ++l) total += sq[l];
  const float inv = 1.0f / std::sqrt(total / float(channels) + w.eps);
  for (c = 0; c < channels; ++c) out[c] = x[c] * inv * w.weight[c];
}

// dst row r = RMSNorm of src row rms_norm_source_row(r, token, tokens)
// (params/rms_norm.hpp): row r, or one row per sample, as on CUDA.
inline void rms_norm_rows(const Host& host, const float* src, float* dst, std::int64_t rows, std::int64_t channels,
                          const RmsNormWeights& w, const int* token = nullptr, std::int64_t tokens = 0) {
#pragma omp parallel for schedule(static) num_threads(thread_count(host))
  for (std::int64_t r = 0; r < rows; ++r) {
    rms_norm_row(src + rms_norm_source_row(r, token, tokens) * channels, dst + r * channels, channels, w);
  }
}

}  // namespace cpu
}  // namespace repshift
