#pragma once
// Warp and block reductions, the result in every lane / thread.
// warp_combine<Metric>: all 32 lanes' Accums combined through the butterfly
// in cuda/tiling.hpp (tested on the host); an Accum made only of floats is
// shuffled field by field. warp_sum / warp_max / block_reduce: one float.
// warp_row_index: the row a warp of a ScoreTiling block takes.

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "tiling.hpp"

namespace repshift {
namespace cuda_detail {

// Row kernels launched in ScoreTiling blocks give each warp one row: warp
// w of block b takes row b * kWarps + w.
__device__ __forceinline__ std::int64_t warp_row_index() {
  return std::int64_t(blockIdx.x) * ScoreTiling::kWarps + threadIdx.x / kWarp;
}

template <class Metric>
__device__ __forceinline__ typename Metric::Accum warp_combine(typename Metric::Accum acc) {
  using Accum = typename Metric::Accum;
  static_assert(std::is_trivially_copyable_v<Accum> && sizeof(Accum) % sizeof(float) == 0,
                "CUDA kernels need a Metric::Accum made of floats");
  constexpr int kFields = int(sizeof(Accum) / sizeof(float));
  auto shuffle = [](Accum a, int offset) {
    float f[kFields];
    memcpy(f, &a, sizeof a);
    for (int i = 0; i < kFields; ++i) f[i] = __shfl_xor_sync(0xffffffffu, f[i], offset);
    Accum out;
    memcpy(&out, f, sizeof out);
    return out;
  };
  return cuda_detail::butterfly_combine<Metric>(acc, shuffle);
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int offset = cuda_detail::kWarp / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
  for (int offset = cuda_detail::kWarp / 2; offset > 0; offset /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

// Block-wide reduction of one float per thread (blockDim.x a multiple of
// 32, at most 1024); every thread gets the result.
template <bool Max>
__device__ float block_reduce(float v, float* scratch /* [32] */) {
  const int warp = threadIdx.x / cuda_detail::kWarp, lane = threadIdx.x % cuda_detail::kWarp;
  v = Max ? warp_max(v) : warp_sum(v);
  __syncthreads();  // scratch may still be read by a previous reduction
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  const int warps = int(blockDim.x) / cuda_detail::kWarp;
  float r = lane < warps ? scratch[lane] : (Max ? -INFINITY : 0.0f);
  return Max ? warp_max(r) : warp_sum(r);
}

}  // namespace cuda_detail
}  // namespace repshift
