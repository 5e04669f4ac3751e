#pragma once
// Warp and block reductions, the result in every lane / thread.
// warp_combine<Metric>: all 32 lanes' Accums combined through the butterfly
// in cuda/tiling.hpp (tested on the host); an Accum made only of floats is
// shuffled field by field. warp_sum / block_reduce: one float or double;
// warp_max: one float.
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

// float, or double where a sum must round as the CPU's double one does.
template <class T>
__device__ __forceinline__ T warp_sum(T v) {
  for (int offset = cuda_detail::kWarp / 2; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

__device__ __forceinline__ float warp_max(float v) {
  for (int offset = cuda_detail::kWarp / 2; offset > 0; offset /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

// Block-wide reduction of one value per thread (blockDim.x a multiple of
// 32, at most 1024); every thread gets the result. Max: float only.
template <bool Max, class T>
__device__ T block_reduce(T v, T* scratch /* [32] */) {
  static_assert(!Max || std::is_same_v<T, float>, "block_reduce: the max is of floats");
  const int warp = threadIdx.x / cuda_detail::kWarp, lane = threadIdx.x % cuda_detail::kWarp;
  auto reduce = [](T x) {
    if constexpr (Max) return warp_max(x);
    else return warp_sum(x);
  };
  v = reduce(v);
  __syncthreads();  // scratch may still be read by a previous reduction
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  const int warps = int(blockDim.x) / cuda_detail::kWarp;
  return reduce(lane < warps ? scratch[lane] : (Max ? T(-INFINITY) : T(0)));
}

}  // namespace cuda_detail
}  // namespace repshift
