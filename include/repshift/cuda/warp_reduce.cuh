#pragma once
// warp_combine<Metric>: all 32 lanes' Accums combined, result in every
// lane, through the butterfly in cuda/tiling.hpp (tested on the host). An
// Accum made only of floats is shuffled field by field.

#include <cstring>
#include <type_traits>

#include "tiling.hpp"

namespace repshift {
namespace cuda_detail {

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
  return cuda_tiling::butterfly_combine<Metric>(acc, shuffle);
}

}  // namespace cuda_detail
}  // namespace repshift
