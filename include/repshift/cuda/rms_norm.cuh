#pragma once
// RMSNorm of rows on the GPU (Mamba / Vim), as cuda/layer_norm.cuh runs
// LayerNorm: one warp per row, the mean square in f32, aligned rows of up
// to 1024 channels in registers (cuda/warp_row.cuh), others through the
// scalar kernel. Rows may be picked per sample: the Vim head normalises the
// class token wherever pruning has moved it.

#include <cstdint>

#include "../params/rms_norm.hpp"
#include "dtype.cuh"
#include "error.cuh"
#include "exec.cuh"
#include "tiling.hpp"
#include "warp_reduce.cuh"
#include "warp_row.cuh"

namespace repshift {
namespace cuda_detail {

// out[r] = x / sqrt(mean(x^2) + eps) * weight, x the source row
// rms_norm_source_row(r, token, tokens) (params/rms_norm.hpp).
template <class T>
__global__ void __launch_bounds__(cuda_detail::ScoreTiling::kThreads)
    rms_norm_rows_kernel(const T* src, const int* token, std::int64_t tokens, T* dst, std::int64_t rows,
                         std::int64_t channels, const T* weight, float eps) {
  const std::int64_t row = cuda_detail::warp_row_index();
  if (row >= rows) return;
  const int lane = threadIdx.x % cuda_detail::kWarp;
  const T* x = src + rms_norm_source_row(row, token, tokens) * channels;
  T* y = dst + row * channels;
  float sq = 0.0f;
  for (std::int64_t c = lane; c < channels; c += cuda_detail::kWarp) sq += to_float(x[c]) * to_float(x[c]);
  const float inv = rsqrtf(warp_sum(sq) / float(channels) + eps);
  for (std::int64_t c = lane; c < channels; c += cuda_detail::kWarp) y[c] = from_float<T>(to_float(x[c]) * inv * to_float(weight[c]));
}

template <class T>
__global__ void __launch_bounds__(cuda_detail::ScoreTiling::kThreads)
    rms_norm_rows_vector_kernel(const T* src, const int* token, std::int64_t tokens, T* dst, std::int64_t rows,
                                std::int64_t channels, const T* weight, float eps) {
  const std::int64_t row = cuda_detail::warp_row_index();
  if (row >= rows) return;
  using Row = WarpRow<T>;
  const Row line(channels);
  typename Row::Values x;
  line.load(src + rms_norm_source_row(row, token, tokens) * channels, x);
  float sq = 0.0f;
#pragma unroll
  for (int s = 0; s < Row::kSlots; ++s)
#pragma unroll
    for (int i = 0; i < Row::kWidth; ++i) sq += x[s][i] * x[s][i];
  const float inv = rsqrtf(warp_sum(sq) / float(channels) + eps);
#pragma unroll
  for (int s = 0; s < Row::kSlots; ++s) {
    if (!line.holds(s)) continue;
    float g[Row::kWidth];
    load_vector(weight + line.channel(s), g);
#pragma unroll
    for (int i = 0; i < Row::kWidth; ++i) x[s][i] *= inv * g[i];
  }
  line.store(dst + row * channels, x);
}

template <class T>
void rms_norm_rows(const Cuda& exec, const T* src, T* dst, std::int64_t rows, std::int64_t channels, const T* weight,
                   float eps, const int* token = nullptr, std::int64_t tokens = 0) {
  if (rows == 0) return;
  const unsigned grid = cuda_detail::row_grid("rms_norm_rows", rows);
  const bool fits = warp_row_fits<T>(channels, address_bits(src) | address_bits(dst) | address_bits(weight), channels);
  auto* kernel = fits ? &rms_norm_rows_vector_kernel<T> : &rms_norm_rows_kernel<T>;
  kernel<<<grid, cuda_detail::ScoreTiling::kThreads, 0, exec.stream>>>(src, token, tokens, dst, rows, channels, weight,
                                                                       eps);
  check_launch("rms_norm_rows_kernel");
}

}  // namespace cuda_detail
}  // namespace repshift
