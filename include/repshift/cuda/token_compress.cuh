#pragma once
// What the transformer Block needs on the GPU besides select and gather:
//   random_scores:      policies::Random's seeded hash, on the device
//   cls_attention:      scores[b, t] = mean over heads of map[b, h, 0, t]
//   fuse_dropped:       Compress = Fuse's extra token: the dropped rows'
//                       mean weighted by their scores (uniform when the
//                       scores do not sum to > 0), EViT's token fusion
//   rank_kept_token:    SsmScan's always-kept token (Vim's class token):
//                       scores copied with +inf at keep_token[b]; an index
//                       outside [0, tokens) is recorded in exec.status
//                       (code 4) and left unranked
//   relocate_kept_token: keep_token[b] = its position among the kept
//   log_sizes:          Compress = Merge's attention bias log(size); a size
//                       that is not finite and > 0 is recorded in
//                       exec.status (code 3) for rs::cuda::throw_if_status
// One thread per score; one CTA per sample for the fused row.

#include <cstdint>

#include "../params/fuse.hpp"
#include "../policies/importance.hpp"
#include "../varlen.hpp"
#include "dtype.cuh"
#include "error.cuh"
#include "exec.cuh"
#include "shared_memory.cuh"
#include "tiling.hpp"
#include "warp_reduce.cuh"

namespace repshift {
namespace cuda_detail {

constexpr int kScoreThreads = 256;

// One thread per element.
inline unsigned elementwise_grid(const char* where, std::int64_t n) {
  return cuda_tiling::grid_blocks(where, "elements", n, kScoreThreads);
}

// Sample b's tokens: cu_seqlens null: `tokens` each at b * tokens; else
// packed (device memory). The grid's y is the sample, x its tokens up to
// the longest.
__global__ void random_scores_kernel(std::uint64_t seed, const int* cu_seqlens, std::int64_t tokens, float* scores) {
  const std::int64_t b = blockIdx.y, t = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= seq_length(cu_seqlens, b, tokens)) return;
  scores[seq_begin(cu_seqlens, b, tokens) + t] = policies::Random::score(seed, std::uint64_t(t));
}

inline dim3 sample_grid(const char* where, std::int64_t batch, std::int64_t tokens) {
  detail::require_at_most(where, "batch", batch, "65535 (CUDA grid y)", 65535);
  return dim3(cuda_tiling::grid_blocks(where, "tokens", tokens, kScoreThreads), unsigned(batch));
}

inline void random_scores(const Cuda& exec, std::uint64_t seed, std::int64_t batch, std::int64_t tokens, float* scores,
                          const int* cu_seqlens = nullptr) {
  random_scores_kernel<<<sample_grid("random_scores", batch, tokens), kScoreThreads, 0, exec.stream>>>(
      seed, cu_seqlens, tokens, scores);
  check_launch("random_scores_kernel");
}

// map: [B, H, tokens, tokens] (tokens = the longest sample when packed).
__global__ void cls_attention_kernel(const float* map, const int* cu_seqlens, std::int64_t heads, std::int64_t tokens,
                                     float* scores) {
  const std::int64_t b = blockIdx.y, t = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= seq_length(cu_seqlens, b, tokens)) return;
  float sum = 0.0f;
  for (std::int64_t h = 0; h < heads; ++h) sum += map[((b * heads + h) * tokens) * tokens + t];
  scores[seq_begin(cu_seqlens, b, tokens) + t] = sum / float(heads);
}

inline void cls_attention(const Cuda& exec, const float* map, std::int64_t batch, std::int64_t heads,
                          std::int64_t tokens, float* scores, const int* cu_seqlens = nullptr) {
  cls_attention_kernel<<<sample_grid("cls_attention", batch, tokens), kScoreThreads, 0, exec.stream>>>(
      map, cu_seqlens, heads, tokens, scores);
  check_launch("cls_attention_kernel");
}

__global__ void rank_kept_token_kernel(const float* scores, const int* keep_token, std::int64_t batch,
                                       std::int64_t tokens, float* ranked, int* status) {
  const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= batch * tokens) return;
  const std::int64_t b = i / tokens, t = i % tokens;
  const int k = keep_token[b];
  if ((k < 0 || k >= tokens) && t == 0 && status && atomicCAS(status, 0, 4) == 0) {
    status[1] = int(b);
    status[2] = k;
  }
  ranked[i] = t == k ? INFINITY : scores[i];
}

inline void rank_kept_token(const Cuda& exec, const float* scores, const int* keep_token, std::int64_t batch,
                            std::int64_t tokens, float* ranked) {
  rank_kept_token_kernel<<<elementwise_grid("rank_kept_token", batch * tokens), kScoreThreads, 0, exec.stream>>>(
      scores, keep_token, batch, tokens, ranked, exec.status);
  check_launch("rank_kept_token_kernel");
}

// keep_idx rows are ascending: a binary search finds the kept token.
__global__ void relocate_kept_token_kernel(const int* keep_idx, std::int64_t batch, std::int64_t keep, int* keep_token) {
  const std::int64_t b = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b >= batch) return;
  const int* idx = keep_idx + b * keep;
  std::int64_t lo = 0, hi = keep;
  while (lo < hi) {
    const std::int64_t mid = (lo + hi) / 2;
    if (idx[mid] < keep_token[b]) lo = mid + 1; else hi = mid;
  }
  keep_token[b] = int(lo);
}

inline void relocate_kept_token(const Cuda& exec, const int* keep_idx, std::int64_t batch, std::int64_t keep,
                                int* keep_token) {
  relocate_kept_token_kernel<<<elementwise_grid("relocate_kept_token", batch), kScoreThreads, 0, exec.stream>>>(
      keep_idx, batch, keep, keep_token);
  check_launch("relocate_kept_token_kernel");
}

__global__ void log_sizes_kernel(const float* sizes, std::int64_t n, float* out, int* status) {
  const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float s = sizes[i];
  if (!(s > 0.0f) || !isfinite(s)) {
    if (status && atomicCAS(status, 0, 3) == 0) {
      status[1] = int(i);
      status[2] = __float_as_int(s);
    }
  }
  out[i] = logf(s);
}

inline void log_sizes(const Cuda& exec, const float* sizes, std::int64_t n, float* out) {
  log_sizes_kernel<<<elementwise_grid("log_sizes", n), kScoreThreads, 0, exec.stream>>>(sizes, n, out, exec.status);
  check_launch("log_sizes_kernel");
}

// Compress = Fuse's extra row (params/fuse.hpp has the contract), one CTA
// per sample. Dynamic shared memory: one byte per token, next to
// kFuseStaticFloats of block_reduce scratch.
constexpr int kFuseStaticFloats = 32;


template <class T>
__global__ void __launch_bounds__(kScoreThreads)
    fuse_dropped_kernel(FuseParams<T> p) {
  unsigned char* kept = dynamic_smem();
  __shared__ float scratch[kFuseStaticFloats];
  const std::int64_t b = blockIdx.x;
  const std::int64_t n = seq_length(p.cu_seqlens, b, p.tokens), k_b = seq_length(p.kept_cu_seqlens, b, p.keep);
  if (k_b >= n) return;  // uniform for the CTA: nothing dropped, no fused row
  const std::int64_t in = seq_begin(p.cu_seqlens, b, p.tokens);
  const int* idx = p.keep_idx + seq_begin(p.kept_cu_seqlens, b, p.keep);
  for (std::int64_t t = threadIdx.x; t < n; t += blockDim.x) kept[t] = 0;
  __syncthreads();
  for (std::int64_t k = threadIdx.x; k < k_b; k += blockDim.x) kept[idx[k]] = 1;
  __syncthreads();
  const float* s = p.scores + in;
  float local = 0.0f;
  for (std::int64_t t = threadIdx.x; t < n; t += blockDim.x) local += kept[t] ? 0.0f : s[t];
  const float total = block_reduce<false>(local, scratch);
  const float uniform = 1.0f / float(n - k_b);
  T* fused = p.out + (seq_begin(p.out_cu_seqlens, b, p.keep + 1) + k_b) * p.channels;
  for (std::int64_t c = threadIdx.x; c < p.channels; c += blockDim.x) {
    float acc = 0.0f;
    for (std::int64_t t = 0; t < n; ++t) {
      if (kept[t]) continue;
      const float w = total > 0.0f ? s[t] / total : uniform;
      acc += w * to_float(p.src[(in + t) * p.channels + c]);
    }
    fused[c] = from_float<T>(acc);
  }
}

template <class T>
void fuse_dropped(const Cuda& exec, const FuseParams<T>& p) {
  detail::require_at_most("fuse_dropped", "batch", p.batch, "2^31 - 1 (CUDA grid x)", 0x7fffffff);
  // The default 48 KiB per block holds the static scratch and the flags.
  constexpr std::int64_t kMaxTokens = 48 * 1024 - kFuseStaticFloats * std::int64_t(sizeof(float));
  detail::require_at_most("fuse_dropped", "tokens", p.tokens, "48 KiB less the static reduce scratch", kMaxTokens);
  fuse_dropped_kernel<T><<<unsigned(p.batch), kScoreThreads, std::size_t(p.tokens), exec.stream>>>(p);
  check_launch("fuse_dropped_kernel");
}

}  // namespace cuda_detail
}  // namespace repshift
