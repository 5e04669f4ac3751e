#pragma once
// The baseline importances and Merge's attention bias on the GPU, as
// cpu/token_scores.hpp has them on the CPU:
//   random_scores: policies::Random's seeded hash, on the device
//   attention_column_means<false>: ClsAttention, scores[b, t] = mean over
//                  heads of map[b, h, 0, t]
//   attention_column_means<true>: AttentionReceived, the mean over heads
//                  and the sample's queries of map[b, h, :, t]
//   log_sizes:     Compress = Merge's attention bias log(size); a size that
//                  is not finite and > 0 is recorded in exec.status (code 3)
//                  for rs::cuda::throw_if_status
// One thread per score.

#include <cstdint>

#include "../core/varlen.hpp"
#include "../policies/importance.hpp"
#include "elementwise.cuh"
#include "error.cuh"
#include "exec.cuh"
#include "status.cuh"

namespace repshift {
namespace cuda_detail {

// Sample b's tokens: cu_seqlens null: `tokens` each at b * tokens; else
// packed (device memory). The grid's x is the sample, y its tokens up to
// the longest (sample_grid).
template <int Threads>
__global__ void __launch_bounds__(Threads)
    random_scores_kernel(std::uint64_t seed, const int* cu_seqlens, std::int64_t tokens, float* scores) {
  const std::int64_t b = blockIdx.x, t = std::int64_t(blockIdx.y) * blockDim.x + threadIdx.x;
  if (t >= seq_length(cu_seqlens, b, tokens)) return;
  scores[seq_begin(cu_seqlens, b, tokens) + t] = policies::Random::score(seed, std::uint64_t(t));
}

inline void random_scores(const Cuda& exec, std::uint64_t seed, std::int64_t batch, std::int64_t tokens, float* scores,
                          const int* cu_seqlens = nullptr) {
  launch_elementwise("random_scores", random_scores_kernel<kElementwiseThreads>,
                     sample_grid("random_scores", batch, tokens), exec.stream, seed, cu_seqlens, tokens, scores);
}

// The map importances (cpu/token_scores.hpp has the contract): one thread
// per key t sums column t over heads and the first `queries` query rows
// (AllQueries: the sample's n; else the class token's row); adjacent
// threads read adjacent columns of a row. map: [B, H, tokens, tokens]
// (tokens = the longest sample when packed).
template <int Threads, bool AllQueries>
__global__ void __launch_bounds__(Threads)
    attention_column_means_kernel(const float* map, const int* cu_seqlens, std::int64_t heads, std::int64_t tokens,
                                  float* scores) {
  const std::int64_t b = blockIdx.x, t = std::int64_t(blockIdx.y) * blockDim.x + threadIdx.x;
  const std::int64_t n = seq_length(cu_seqlens, b, tokens), queries = AllQueries ? n : 1;
  if (t >= n) return;
  float sum = 0.0f;
  for (std::int64_t h = 0; h < heads; ++h)
    for (std::int64_t q = 0; q < queries; ++q) sum += map[((b * heads + h) * tokens + q) * tokens + t];
  scores[seq_begin(cu_seqlens, b, tokens) + t] = sum / float(heads * queries);
}

template <bool AllQueries>
void attention_column_means(const Cuda& exec, const float* map, std::int64_t batch, std::int64_t heads,
                            std::int64_t tokens, float* scores, const int* cu_seqlens) {
  launch_elementwise("attention_column_means", attention_column_means_kernel<kElementwiseThreads, AllQueries>,
                     sample_grid("attention_column_means", batch, tokens), exec.stream, map, cu_seqlens, heads,
                     tokens, scores);
}

template <int Threads>
__global__ void __launch_bounds__(Threads)
    log_sizes_kernel(const float* sizes, std::int64_t n, float* out, int* status) {
  const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float s = sizes[i];
  if (!(s > 0.0f) || !isfinite(s)) {
    record_status(status, kStatusTokenSize, int(i), __float_as_int(s));
  }
  out[i] = logf(s);
}

inline void log_sizes(const Cuda& exec, const float* sizes, std::int64_t n, float* out) {
  launch_elementwise("log_sizes", log_sizes_kernel<kElementwiseThreads>, elementwise_grid("log_sizes", n),
                     exec.stream, sizes, n, out, exec.status);
}

}  // namespace cuda_detail
}  // namespace repshift
