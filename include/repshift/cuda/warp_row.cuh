#pragma once
// One row held by one warp in registers, moved 16 bytes at a time: lane l
// keeps the row's vectors l, l + 32, l + 64, ... (kWarpRowSlots<T> of
// them, cuda/tiling.hpp) widened to f32. The row kernels read each operand
// once with full 16-byte transactions and take their LayerNorm / RMSNorm
// statistics and shift scores from registers, where the scalar kernels
// issue 4-byte (2-byte) accesses and re-read the row for every pass.
// Launch-edge condition: warp_row_fits (aligned rows, channels <= 1024).

#include <cstdint>

#include "dtype.cuh"
#include "tiling.hpp"
#include "warp_reduce.cuh"

namespace repshift {
namespace cuda_detail {

template <class T>
struct WarpRow {
  static constexpr int kWidth = kVectorElems<T>;
  static constexpr int kSlots = kWarpRowSlots<T>;
  using Values = float[kSlots][kWidth];

  int lane;
  int vectors;  // channels / kWidth

  __device__ explicit WarpRow(std::int64_t channels)
      : lane(int(threadIdx.x % kWarp)), vectors(int(channels / kWidth)) {}

  __device__ bool holds(int slot) const { return lane + slot * kWarp < vectors; }
  __device__ std::int64_t channel(int slot) const { return std::int64_t(lane + slot * kWarp) * kWidth; }

  // x = row (zeros in the slots this lane does not hold).
  __device__ void load(const T* row, Values& x) const {
#pragma unroll
    for (int s = 0; s < kSlots; ++s) {
      if (holds(s)) {
        load_vector(row + channel(s), x[s]);
      } else {
#pragma unroll
        for (int i = 0; i < kWidth; ++i) x[s][i] = 0.0f;
      }
    }
  }
  __device__ void store(T* row, const Values& x) const {
#pragma unroll
    for (int s = 0; s < kSlots; ++s)
      if (holds(s)) store_vector(row + channel(s), x[s]);
  }
  // x = x rounded to the storage type, as a store and reload would give.
  __device__ static void round(Values& x) {
#pragma unroll
    for (int s = 0; s < kSlots; ++s)
#pragma unroll
      for (int i = 0; i < kWidth; ++i) x[s][i] = to_float(from_float<T>(x[s][i]));
  }

  // Mean and 1 / sqrt(var + eps) of the row, the variance centred (no
  // cancellation); the zeros of unheld slots are kept out of it.
  __device__ float2 layer_norm_stats(const Values& x, std::int64_t channels, float eps) const {
    float sum = 0.0f;
#pragma unroll
    for (int s = 0; s < kSlots; ++s)
#pragma unroll
      for (int i = 0; i < kWidth; ++i) sum += x[s][i];
    const float mean = warp_sum(sum) / float(channels);
    float sq = 0.0f;
#pragma unroll
    for (int s = 0; s < kSlots; ++s)
      if (holds(s))
#pragma unroll
        for (int i = 0; i < kWidth; ++i) sq += (x[s][i] - mean) * (x[s][i] - mean);
    return make_float2(mean, rsqrtf(warp_sum(sq) / float(channels) + eps));
  }

  // y = (x - mean) * inv * gamma + beta, stored to `out`.
  __device__ void store_layer_norm(T* out, const Values& x, float2 stats, const T* gamma, const T* beta) const {
#pragma unroll
    for (int s = 0; s < kSlots; ++s) {
      if (!holds(s)) continue;
      float g[kWidth], b[kWidth], y[kWidth];
      load_vector(gamma + channel(s), g);
      load_vector(beta + channel(s), b);
#pragma unroll
      for (int i = 0; i < kWidth; ++i) y[i] = (x[s][i] - stats.x) * stats.y * g[i] + b[i];
      store_vector(out + channel(s), y);
    }
  }
};

}  // namespace cuda_detail
}  // namespace repshift
