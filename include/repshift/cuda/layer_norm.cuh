#pragma once
// LayerNorm and RMSNorm of rows on the GPU: one warp per row, statistics
// in f32 (LayerNorm: mean, then centred variance, no cancellation),
// storage type in and out. Aligned rows of up to 1024 channels are held in
// registers and moved 16 bytes at a time (cuda/warp_row.cuh); others take
// the scalar kernels, which re-read the row per pass. Rows may be strided
// (the ViT head normalises only the CLS rows of [B, N, C]) or picked per
// sample (the Vim head normalises the class token wherever pruning has
// moved it).

#include <cstdint>

#include "../params/layer_norm.hpp"
#include "dtype.cuh"
#include "error.cuh"
#include "exec.cuh"
#include "tiling.hpp"
#include "warp_reduce.cuh"
#include "warp_row.cuh"

namespace repshift {
namespace cuda_detail {

using repshift::LayerNormParams;

// 1 / sqrt(var + eps) and the mean of a row that `value(c)` yields, every
// lane of the warp taking part (and getting the result).
template <class Value>
__device__ __forceinline__ float2 warp_row_stats(Value&& value, std::int64_t channels, float eps) {
  const int lane = threadIdx.x % cuda_detail::kWarp;
  float sum = 0.0f;
  for (std::int64_t c = lane; c < channels; c += cuda_detail::kWarp) sum += value(c);
  const float mean = warp_sum(sum) / float(channels);
  float sq = 0.0f;
  for (std::int64_t c = lane; c < channels; c += cuda_detail::kWarp) {
    const float d = value(c) - mean;
    sq += d * d;
  }
  const float inv = rsqrtf(warp_sum(sq) / float(channels) + eps);
  return make_float2(mean, inv);
}

template <class T>
__global__ void __launch_bounds__(cuda_detail::ScoreTiling::kThreads)
    layer_norm_rows_kernel(const T* src, std::int64_t src_stride, T* dst, std::int64_t dst_stride, std::int64_t rows,
                           std::int64_t channels, LayerNormParams<T> w) {
  const std::int64_t row = std::int64_t(blockIdx.x) * cuda_detail::ScoreTiling::kWarps + threadIdx.x / cuda_detail::kWarp;
  if (row >= rows) return;
  const int lane = threadIdx.x % cuda_detail::kWarp;
  const T* x = src + row * src_stride;
  T* y = dst + row * dst_stride;
  const float2 stats = warp_row_stats([&](std::int64_t c) { return to_float(x[c]); }, channels, w.eps);
  for (std::int64_t c = lane; c < channels; c += cuda_detail::kWarp) {
    y[c] = from_float<T>((to_float(x[c]) - stats.x) * stats.y * to_float(w.gamma[c]) + to_float(w.beta[c]));
  }
}

template <class T>
__global__ void __launch_bounds__(cuda_detail::ScoreTiling::kThreads)
    layer_norm_rows_vector_kernel(const T* src, std::int64_t src_stride, T* dst, std::int64_t dst_stride,
                                  std::int64_t rows, std::int64_t channels, LayerNormParams<T> w) {
  const std::int64_t row = std::int64_t(blockIdx.x) * cuda_detail::ScoreTiling::kWarps + threadIdx.x / cuda_detail::kWarp;
  if (row >= rows) return;
  const WarpRow<T> line(channels);
  typename WarpRow<T>::Values x;
  line.load(src + row * src_stride, x);
  line.store_layer_norm(dst + row * dst_stride, x, line.layer_norm_stats(x, channels, w.eps), w.gamma, w.beta);
}

// dst rows = LayerNorm(src rows); src and dst may be the same buffer.
template <class T>
void layer_norm_rows(const Cuda& exec, const T* src, std::int64_t src_stride, T* dst, std::int64_t dst_stride,
                     std::int64_t rows, std::int64_t channels, const LayerNormParams<T>& w) {
  if (rows == 0) return;
  const unsigned grid = cuda_detail::row_grid("layer_norm_rows", rows);
  const std::uintptr_t addresses = address_bits(src) | address_bits(dst) | address_bits(w.gamma) | address_bits(w.beta);
  // The one runtime -> template switch: register rows or scalar rows.
  auto* kernel = warp_row_fits<T>(channels, addresses, src_stride | dst_stride) ? &layer_norm_rows_vector_kernel<T>
                                                                                : &layer_norm_rows_kernel<T>;
  kernel<<<grid, cuda_detail::ScoreTiling::kThreads, 0, exec.stream>>>(src, src_stride, dst, dst_stride, rows, channels,
                                                                       w);
  check_launch("layer_norm_rows_kernel");
}

// out[r] = src_row(r) / sqrt(mean(src_row^2) + eps) * weight, where
// src_row(r) = src + (r * tokens + (token ? token[r] : 0)) * channels when
// tokens > 0 (one row per sample), else src + r * channels.
template <class T>
__global__ void __launch_bounds__(cuda_detail::ScoreTiling::kThreads)
    rms_norm_rows_kernel(const T* src, const int* token, std::int64_t tokens, T* dst, std::int64_t rows,
                         std::int64_t channels, const T* weight, float eps) {
  const std::int64_t row = std::int64_t(blockIdx.x) * cuda_detail::ScoreTiling::kWarps + threadIdx.x / cuda_detail::kWarp;
  if (row >= rows) return;
  const int lane = threadIdx.x % cuda_detail::kWarp;
  const std::int64_t src_row = tokens > 0 ? row * tokens + (token ? token[row] : 0) : row;
  const T* x = src + src_row * channels;
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
  const std::int64_t row = std::int64_t(blockIdx.x) * cuda_detail::ScoreTiling::kWarps + threadIdx.x / cuda_detail::kWarp;
  if (row >= rows) return;
  const std::int64_t src_row = tokens > 0 ? row * tokens + (token ? token[row] : 0) : row;
  using Row = WarpRow<T>;
  const Row line(channels);
  typename Row::Values x;
  line.load(src + src_row * channels, x);
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
