#pragma once
// Mean pooling of token rows on the GPU (params/pool_tokens.hpp): one CTA
// per sample, each thread a channel at a time summing the sample's rows in
// order in f32 (adjacent threads on adjacent channels); the L2 norm is a
// block reduction, after which the means are summed again rather than kept
// in shared memory, so any width fits.

#include <cstdint>

#include "../core/varlen.hpp"
#include "../params/pool_tokens.hpp"
#include "dtype.cuh"
#include "error.cuh"
#include "exec.cuh"
#include "tiling.hpp"
#include "warp_reduce.cuh"

namespace repshift {
namespace cuda_detail {

constexpr int kPoolThreads = 256;

template <class T>
__global__ void __launch_bounds__(kPoolThreads) pool_tokens_kernel(PoolParams<T> p) {
  __shared__ float scratch[kWarp];
  const std::int64_t b = blockIdx.x;
  const std::int64_t begin = seq_begin(p.cu_seqlens, b, p.tokens), n = seq_length(p.cu_seqlens, b, p.tokens);
  float weight = 0.0f;
  for (std::int64_t i = begin; i < begin + n; ++i) weight += p.sizes ? p.sizes[i] : 1.0f;
  const auto mean = [&](std::int64_t c) {
    float sum = 0.0f;
    for (std::int64_t i = begin; i < begin + n; ++i) sum += (p.sizes ? p.sizes[i] : 1.0f) * to_float(p.x[i * p.channels + c]);
    return sum / weight;
  };
  float scale = 1.0f;
  if (p.normalize) {
    float sq = 0.0f;
    for (std::int64_t c = threadIdx.x; c < p.channels; c += kPoolThreads) {
      const float m = mean(c);
      sq += m * m;
    }
    scale = 1.0f / fmaxf(sqrtf(block_reduce<false>(sq, scratch)), 1e-12f);
  }
  for (std::int64_t c = threadIdx.x; c < p.channels; c += kPoolThreads) {
    p.out[b * p.channels + c] = from_float<T>(mean(c) * scale);
  }
}

template <class T>
void pool_tokens(const Cuda& exec, const PoolParams<T>& p) {
  if (p.batch == 0) return;
  const unsigned grid = grid_blocks("pool_tokens", "batch", p.batch, 1);
  pool_tokens_kernel<T><<<grid, kPoolThreads, 0, exec.stream>>>(p);
  check_launch("pool_tokens_kernel");
}

}  // namespace cuda_detail
}  // namespace repshift
