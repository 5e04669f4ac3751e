#pragma once
// Pooling of NCHW maps on the GPU, for the ResNet stem and head: 3x3
// stride-2 max pooling (one thread per output) and global average pooling
// (one warp per plane).

#include <cmath>
#include <cstdint>

#include "dtype.cuh"
#include "error.cuh"
#include "exec.cuh"
#include "tiling.hpp"
#include "warp_reduce.cuh"

namespace repshift {
namespace cuda_detail {

// 3x3 stride-2 pad-1 max pool of `planes` H x W planes (the ResNet stem).
template <class T>
__global__ void max_pool_3x3s2_kernel(const T* x, std::int64_t planes, std::int64_t H, std::int64_t W, T* out) {
  const std::int64_t Ho = (H + 2 - 3) / 2 + 1, Wo = (W + 2 - 3) / 2 + 1;
  const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= planes * Ho * Wo) return;
  const std::int64_t ox = i % Wo, oy = i / Wo % Ho, p = i / (Wo * Ho);
  float m = -INFINITY;
  for (int ky = 0; ky < 3; ++ky)
    for (int kx = 0; kx < 3; ++kx) {
      const std::int64_t iy = oy * 2 - 1 + ky, ix = ox * 2 - 1 + kx;
      if (iy >= 0 && iy < H && ix >= 0 && ix < W) m = fmaxf(m, to_float(x[(p * H + iy) * W + ix]));
    }
  out[i] = from_float<T>(m);
}

template <class T>
void max_pool_3x3s2(const Cuda& exec, const T* x, std::int64_t planes, std::int64_t H, std::int64_t W, T* out) {
  constexpr int kThreads = 256;
  const std::int64_t n = planes * ((H + 2 - 3) / 2 + 1) * ((W + 2 - 3) / 2 + 1);
  max_pool_3x3s2_kernel<T><<<cuda_detail::grid_blocks("max_pool_3x3s2", "output elements", n, kThreads), kThreads, 0,
                              exec.stream>>>(x, planes, H, W, out);
  check_launch("max_pool_3x3s2_kernel");
}

// out[p] = mean of plane p: one warp per plane.
template <class T>
__global__ void __launch_bounds__(cuda_detail::ScoreTiling::kThreads)
    global_avg_pool_kernel(const T* x, std::int64_t planes, std::int64_t hw, T* out) {
  const std::int64_t p = cuda_detail::warp_row_index();
  if (p >= planes) return;
  const int lane = threadIdx.x % cuda_detail::kWarp;
  float s = 0.0f;
  for (std::int64_t i = lane; i < hw; i += cuda_detail::kWarp) s += to_float(x[p * hw + i]);
  s = warp_sum(s);
  if (lane == 0) out[p] = from_float<T>(s / float(hw));
}

template <class T>
void global_avg_pool(const Cuda& exec, const T* x, std::int64_t planes, std::int64_t hw, T* out) {
  global_avg_pool_kernel<T><<<cuda_detail::row_grid("global_avg_pool", planes), cuda_detail::ScoreTiling::kThreads, 0,
                              exec.stream>>>(x, planes, hw, out);
  check_launch("global_avg_pool_kernel");
}

}  // namespace cuda_detail
}  // namespace repshift
