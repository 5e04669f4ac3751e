#pragma once
// SsmScan's always-kept token (Vim's class token) on the GPU, as
// cpu/kept_token.hpp has it on the CPU:
//   rank_kept_token:     scores copied with +inf at keep_token[b] (another
//                        +inf lowered to FLT_MAX); an index
//                        outside [0, tokens) is recorded in exec.status
//                        (code 4) and left unranked
//   relocate_kept_token: keep_token[b] = its position among the kept; one
//                        not among them (a bad index, already recorded by
//                        rank_kept_token) becomes 0, so the rows read by
//                        it later stay inside the sample

#include <cstdint>

#include "../policies/select.hpp"
#include "elementwise.cuh"
#include "error.cuh"
#include "exec.cuh"
#include "status.cuh"

namespace repshift {
namespace cuda_detail {

template <int Threads>
__global__ void __launch_bounds__(Threads)
    rank_kept_token_kernel(const float* scores, const int* keep_token, std::int64_t batch,
                           std::int64_t tokens, float* ranked, int* status) {
  const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= batch * tokens) return;
  const std::int64_t b = i / tokens, t = i % tokens;
  const int k = keep_token[b];
  if ((k < 0 || k >= tokens) && t == 0) record_status(status, kStatusKeptToken, int(b), k);
  ranked[i] = t == k ? INFINITY : policies::below_forced(scores[i]);
}

inline void rank_kept_token(const Cuda& exec, const float* scores, const int* keep_token, std::int64_t batch,
                            std::int64_t tokens, float* ranked) {
  launch_elementwise("rank_kept_token", rank_kept_token_kernel<kElementwiseThreads>,
                     elementwise_grid("rank_kept_token", batch * tokens), exec.stream, scores, keep_token, batch,
                     tokens, ranked, exec.status);
}

// keep_idx rows are ascending: a binary search finds the kept token.
template <int Threads>
__global__ void __launch_bounds__(Threads)
    relocate_kept_token_kernel(const int* keep_idx, std::int64_t batch, std::int64_t keep, int* keep_token) {
  const std::int64_t b = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= batch) return;
  const int* idx = keep_idx + b * keep;
  std::int64_t lo = 0, hi = keep;
  while (lo < hi) {
    const std::int64_t mid = (lo + hi) / 2;
    if (idx[mid] < keep_token[b]) lo = mid + 1; else hi = mid;
  }
  keep_token[b] = lo < keep && idx[lo] == keep_token[b] ? int(lo) : 0;
}

inline void relocate_kept_token(const Cuda& exec, const int* keep_idx, std::int64_t batch, std::int64_t keep,
                                int* keep_token) {
  launch_elementwise("relocate_kept_token", relocate_kept_token_kernel<kElementwiseThreads>,
                     elementwise_grid("relocate_kept_token", batch), exec.stream, keep_idx, batch, keep, keep_token);
}

}  // namespace cuda_detail
}  // namespace repshift
