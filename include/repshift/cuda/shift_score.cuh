#pragma once
// CUDA shift score: one warp per token (ScoreTiling::kWarps tokens per
// CTA). Lanes stride over the channels with 16-byte loads when the rows
// allow (EvenC: chosen at the launch edge, the kernel has no tail), each
// lane accumulating the Metric's partial Accum; warp_combine merges them.

#include <cstdint>

#include "../params/shift_score.hpp"
#include "dtype.cuh"
#include "error.cuh"
#include "exec.cuh"
#include "tiling.hpp"
#include "warp_reduce.cuh"

namespace repshift {
namespace cuda_detail {

template <class Metric, class T, bool EvenC>
__global__ void __launch_bounds__(cuda_detail::ScoreTiling::kThreads)
    shift_score_kernel(ShiftParams<T> p) {
  constexpr int kV = cuda_detail::kVectorElems<T>;
  const int lane = threadIdx.x % cuda_detail::kWarp;
  const std::int64_t row = cuda_detail::warp_row_index();
  if (row >= p.batch * p.tokens) return;  // whole warps exit together
  const std::int64_t b = row / p.tokens, n = row % p.tokens;
  const T* before = p.before + b * p.before_batch_stride + n * p.before_token_stride;
  const T* after = p.after + b * p.after_batch_stride + n * p.after_token_stride;

  typename Metric::Accum acc = Metric::init();
  if constexpr (EvenC) {
    const auto* a4 = reinterpret_cast<const Pack<T, kV>*>(after);
    const auto* b4 = reinterpret_cast<const Pack<T, kV>*>(before);
    for (std::int64_t i = lane; i < p.channels / kV; i += cuda_detail::kWarp) {
      const Pack<T, kV> av = a4[i], bv = b4[i];
#pragma unroll
      for (int e = 0; e < kV; ++e) Metric::accumulate(acc, to_float(av.v[e]), to_float(bv.v[e]));
    }
  } else {
    for (std::int64_t c = lane; c < p.channels; c += cuda_detail::kWarp) {
      Metric::accumulate(acc, to_float(after[c]), to_float(before[c]));
    }
  }
  acc = warp_combine<Metric>(acc);
  if (lane == 0) p.scores[b * p.scores_batch_stride + n * p.scores_token_stride] = Metric::finalize(acc);
}

template <class Metric, class T>
void shift_score(const Cuda& exec, const ShiftParams<T>& p) {
  using Tiling = cuda_detail::ScoreTiling;
  const unsigned grid = cuda_detail::grid_blocks("shift_score", "batch * tokens", p.batch * p.tokens, Tiling::kWarps);
  // OR-ing addresses and strides tests both at once: the vector width is a
  // power of two, so a | b is a multiple of it iff a and b are.
  const auto base = cuda_detail::address_bits(p.before) | cuda_detail::address_bits(p.after);
  const bool even = cuda_detail::rows_vectorisable<T>(base, p.channels, p.before_batch_stride | p.after_batch_stride,
                                                      p.before_token_stride | p.after_token_stride);
  // The one runtime -> template switch: vector path or scalar path.
  auto* kernel = even ? &shift_score_kernel<Metric, T, true> : &shift_score_kernel<Metric, T, false>;
  kernel<<<grid, Tiling::kThreads, 0, exec.stream>>>(p);
  check_launch("shift_score_kernel");
}

}  // namespace cuda_detail
}  // namespace repshift
