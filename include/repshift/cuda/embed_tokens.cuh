#pragma once
// Text token embedding on the GPU (params/embed_tokens.hpp): one warp per
// packed row finds its sample by binary search over cu_seqlens, sums the
// three embeddings in f32 and writes the row's LayerNorm, with no store in
// between. A bad id zeroes its row and is recorded in exec.status (code 5).

#include <cstdint>

#include "../params/embed_tokens.hpp"
#include "dtype.cuh"
#include "error.cuh"
#include "exec.cuh"
#include "status.cuh"
#include "layer_norm.cuh"
#include "tiling.hpp"
#include "warp_reduce.cuh"

namespace repshift {
namespace cuda_detail {

// The sample b with cu_seqlens[b] <= row < cu_seqlens[b + 1] (empty samples skipped).
__device__ inline std::int64_t sample_of_row(const int* cu_seqlens, std::int64_t batch, std::int64_t row) {
  std::int64_t lo = 0, hi = batch;  // cu_seqlens[lo] <= row < cu_seqlens[hi]
  while (hi - lo > 1) {
    const std::int64_t mid = (lo + hi) / 2;
    if (cu_seqlens[mid] <= row) lo = mid; else hi = mid;
  }
  return lo;
}

template <class T>
__global__ void __launch_bounds__(ScoreTiling::kThreads) embed_tokens_kernel(EmbedParams<T> p, int* status) {
  const std::int64_t row = warp_row_index();
  if (row >= p.rows) return;
  const int lane = threadIdx.x % kWarp;
  const std::int64_t b = sample_of_row(p.cu_seqlens, p.batch, row), t = row - p.cu_seqlens[b];
  const std::int64_t at = p.id_at(b, t);
  const int id = p.ids[at];
  T* out = p.out + row * p.dim;
  if (id < 0 || id >= p.vocab) {
    if (lane == 0) record_status(status, kStatusTokenId, int(at), id);
    for (std::int64_t c = lane; c < p.dim; c += kWarp) out[c] = T{};
    return;
  }
  const T* word = p.word + std::int64_t(id) * p.dim;
  const T* position = p.position + t * p.dim;
  const auto value = [&](std::int64_t c) {
    return to_float(word[c]) + to_float(position[c]) + to_float(p.token_type[c]);
  };
  const float2 stats = warp_row_stats(value, p.dim, p.norm.eps);
  for (std::int64_t c = lane; c < p.dim; c += kWarp) {
    out[c] = from_float<T>((value(c) - stats.x) * stats.y * to_float(p.norm.gamma[c]) + to_float(p.norm.beta[c]));
  }
}

template <class T>
void embed_tokens(const Cuda& exec, const EmbedParams<T>& p) {
  if (p.rows == 0) return;
  embed_tokens_kernel<T><<<row_grid("embed_tokens", p.rows), ScoreTiling::kThreads, 0, exec.stream>>>(p, exec.status);
  check_launch("embed_tokens_kernel");
}

}  // namespace cuda_detail
}  // namespace repshift
