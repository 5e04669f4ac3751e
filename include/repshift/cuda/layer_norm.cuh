#pragma once
// LayerNorm of rows on the GPU: one warp per row, statistics in f32 (mean,
// then centred variance, no cancellation), storage type in and out.
// Aligned rows of up to 1024 channels are held in registers and moved 16
// bytes at a time (cuda/warp_row.cuh); others take the scalar kernel, which
// re-reads the row per pass. Rows may be strided (the ViT head normalises
// only the CLS rows of [B, N, C]). RMSNorm: cuda/rms_norm.cuh.

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
  const std::int64_t row = cuda_detail::warp_row_index();
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
  const std::int64_t row = cuda_detail::warp_row_index();
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

}  // namespace cuda_detail
}  // namespace repshift
