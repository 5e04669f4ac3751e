#pragma once
// Compress = Fuse's extra token on the GPU (params/fuse_tokens.hpp has the
// contract, cpu/fuse_tokens.hpp the CPU twin): the dropped rows' mean
// weighted by their scores (uniform when the scores do not sum to > 0),
// EViT's token fusion. One CTA per sample.

#include <cstdint>

#include "../core/varlen.hpp"
#include "../params/fuse_tokens.hpp"
#include "dtype.cuh"
#include "error.cuh"
#include "exec.cuh"
#include "shared_memory.cuh"
#include "status.cuh"
#include "warp_reduce.cuh"

namespace repshift {
namespace cuda_detail {

// Dynamic shared memory: one byte per token, next to the static
// block_reduce scratch (one double per warp).
constexpr int kFuseScratch = 32;
constexpr int kFuseThreads = 256;

template <class T>
__global__ void __launch_bounds__(kFuseThreads)
    fuse_dropped_kernel(FuseParams<T> p, int* status) {
  unsigned char* kept = dynamic_smem();
  __shared__ double scratch[kFuseScratch];
  const std::int64_t b = blockIdx.x;
  const std::int64_t n = seq_length(p.cu_seqlens, b, p.tokens), k_b = seq_length(p.kept_cu_seqlens, b, p.keep);
  if (!offsets_start_at_zero(p.cu_seqlens, p.kept_cu_seqlens, p.out_cu_seqlens, status)) return;  // uniform
  if (!sample_fits(b, n, k_b, p.tokens, p.keep, 0, status)) return;  // uniform for the CTA
  if (k_b >= n) return;  // uniform for the CTA: nothing dropped, no fused row
  // Row k_b of the sample's output is written: out_cu_seqlens, device data
  // too, must give it k_b + 1 rows, or the row would land in the next sample.
  const std::int64_t out_rows = p.out_cu_seqlens ? seq_length(p.out_cu_seqlens, b, 0) : k_b + 1;
  if (out_rows < k_b + 1) {  // uniform for the CTA
    if (threadIdx.x == 0) record_status(status, kStatusFusedRow, int(b), int(out_rows), int(k_b));
    return;
  }
  const std::int64_t in = seq_begin(p.cu_seqlens, b, p.tokens);
  const int* idx = p.keep_idx + seq_begin(p.kept_cu_seqlens, b, p.keep);
  for (std::int64_t t = threadIdx.x; t < n; t += blockDim.x) kept[t] = 0;
  __syncthreads();
  // keep_idx is select_top's output: an index outside the sample cannot
  // come from it, and is skipped rather than written through.
  for (std::int64_t k = threadIdx.x; k < k_b; k += blockDim.x) {
    if (unsigned(idx[k]) < unsigned(n)) kept[idx[k]] = 1;
  }
  __syncthreads();
  const float* s = p.scores + in;
  // In double, as the CPU sums: with scores of both signs a float total
  // can cancel to 0 (uniform weights) where the CPU's does not.
  double local = 0.0, local_infinite = 0.0;
  for (std::int64_t t = threadIdx.x; t < n; t += blockDim.x) {
    if (kept[t]) continue;
    local += double(s[t]);
    local_infinite += s[t] == INFINITY;
  }
  FuseWeights weights;
  weights.dropped = n - k_b;
  weights.total = block_reduce<false>(local, scratch);
  weights.infinite = std::int64_t(block_reduce<false>(local_infinite, scratch));  // exact: counts far below 2^53
  T* fused = p.out + (seq_begin(p.out_cu_seqlens, b, p.keep + 1) + k_b) * p.channels;
  for (std::int64_t c = threadIdx.x; c < p.channels; c += blockDim.x) {
    float acc = 0.0f;
    for (std::int64_t t = 0; t < n; ++t) {
      if (kept[t]) continue;
      acc += weights.of(s[t]) * to_float(p.src[(in + t) * p.channels + c]);
    }
    fused[c] = from_float<T>(acc);
  }
}

template <class T>
void fuse_dropped(const Cuda& exec, const FuseParams<T>& p) {
  detail::require_at_most("fuse_dropped", "batch", p.batch, "2^31 - 1 (CUDA grid x)", 0x7fffffff);
  // The default 48 KiB per block holds the static scratch and the flags.
  constexpr std::int64_t kMaxTokens = 48 * 1024 - kFuseScratch * std::int64_t(sizeof(double));
  detail::require_at_most("fuse_dropped", "tokens", p.tokens, "48 KiB less the static reduce scratch", kMaxTokens);
  fuse_dropped_kernel<T><<<unsigned(p.batch), kFuseThreads, std::size_t(p.tokens), exec.stream>>>(p, exec.status);
  check_launch("fuse_dropped_kernel");
}

}  // namespace cuda_detail
}  // namespace repshift
