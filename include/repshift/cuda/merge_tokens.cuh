#pragma once
// Compress = Merge on the GPU: the contract of cpu/merge_tokens.hpp
// (ToMe's bipartite soft matching with the importance choosing who merges),
// one CTA per sample, deterministic (no atomics):
//   1. a warp per token forms 1 / |key| (zero keys: similarity 0);
//   2. each A token's place among the A tokens by selection rank (a count
//      of smaller ranks: |A|^2 compares, cheap next to the matching); the
//      r = N - keep lowest merge;
//   3. a warp per merging A token scans the B tokens for the highest
//      cosine (strict >, so ties keep the lower index);
//   4. thread 0 numbers the survivors in token order and pushes each merged
//      token onto its target's member list;
//   5. a warp per survivor writes the size-weighted mean of its members
//      and their summed size.
// Shared memory: 28 bytes per token (opted in beyond 48 KiB).

#include <cstdint>
#include <string>

#include "../params/merge_tokens.hpp"
#include "../policies/compress.hpp"
#include "../policies/select.hpp"
#include "dtype.cuh"
#include "error.cuh"
#include "exec.cuh"
#include "shared_memory.cuh"
#include "status.cuh"
#include "tiling.hpp"
#include "warp_reduce.cuh"

namespace repshift {
namespace cuda_detail {

constexpr int kMergeThreads = 256;
constexpr int kMergeWarps = kMergeThreads / cuda_detail::kWarp;
constexpr int kMergeBytesPerToken = 4 /*inv_norm*/ + 8 /*rank*/ + 4 * 4 /*target, slot, head, next*/;

template <class T>
__global__ void __launch_bounds__(kMergeThreads) merge_tokens_kernel(BasicMergeParams<T> p, int* status) {
  unsigned char* smem = dynamic_smem();
  // Sample b: padded, or packed (PackedRows: its own length, keep count and rows).
  const std::int64_t b = blockIdx.x, n = p.tokens_of(b, p.tokens), keep = p.keep_of(b, p.keep);
  if (!offsets_start_at_zero(p.cu_seqlens, p.kept_cu_seqlens, nullptr, status)) return;  // uniform for the CTA
  if (!sample_fits(b, n, keep, p.tokens, p.keep, p.protect, status)) return;            // uniform for the CTA
  // Merge can remove at most |A| tokens (the host's check_reachable, which
  // a packed batch's device-side counts escape).
  if (keep < n && keep < policies::Merge::min_keep(n, p.protect)) {
    if (threadIdx.x == 0) record_status(status, kStatusMergeReach, int(b), int(n), int(keep));
    return;
  }
  const std::int64_t in = seq_begin(p.cu_seqlens, b, p.tokens), out = seq_begin(p.kept_cu_seqlens, b, p.keep);
  const std::int64_t protect = p.protect < n ? p.protect : n;
  const std::int64_t ck = p.key_channels, c = p.channels, ks = p.key_stride();
  std::uint64_t* rank = reinterpret_cast<std::uint64_t*>(smem);
  float* inv_norm = reinterpret_cast<float*>(rank + n);
  int* target = reinterpret_cast<int*>(inv_norm + n);
  int* slot = target + n;
  int* head = slot + n;
  int* next = head + n;
  const int warp = threadIdx.x / cuda_detail::kWarp, lane = threadIdx.x % cuda_detail::kWarp;
  const float* scores = p.scores + in;
  const float* sizes = p.sizes ? p.sizes + in : nullptr;
  auto key = [&](std::int64_t t, std::int64_t i) {
    return to_float(p.keys[(in + t) * ks + i]) + (p.key_bias ? to_float(p.key_bias[i]) : 0.0f);
  };

  // 1. inverse key norms; every token starts as its own target
  for (std::int64_t t = warp; t < n; t += kMergeWarps) {
    double sq = 0.0;  // in double, as the CPU sums and rounds it
    for (std::int64_t i = lane; i < ck; i += cuda_detail::kWarp) sq += double(key(t, i)) * key(t, i);
    sq = warp_sum(sq);
    if (lane == 0) inv_norm[t] = sq > 0.0 ? float(1.0 / sqrt(sq)) : 0.0f;
  }
  for (std::int64_t t = threadIdx.x; t < n; t += kMergeThreads) {
    target[t] = int(t);
    head[t] = next[t] = -1;
    rank[t] = policies::selection_rank(scores[t], std::uint32_t(t));
  }
  __syncthreads();

  // 2. + 3. A tokens whose rank is among the r lowest find their B match
  const std::int64_t r = n - keep;
  for (std::int64_t a = protect + 2 * warp; a < n && r > 0; a += 2 * kMergeWarps) {
    std::int64_t below = 0;
    for (std::int64_t j = protect + 2 * lane; j < n; j += 2 * cuda_detail::kWarp) below += rank[j] < rank[a];
    below = std::int64_t(warp_sum(float(below)) + 0.5f);  // exact: counts stay far below 2^24
    if (below >= r) continue;
    std::int64_t best = protect + 1;
    float best_sim = -INFINITY;
    for (std::int64_t bt = protect + 1; bt < n; bt += 2) {
      // Unit vectors rounded to float before the product, as the CPU
      // forms them: only the summation order differs.
      float dot = 0.0f;
      for (std::int64_t i = lane; i < ck; i += cuda_detail::kWarp) {
        dot += (key(a, i) * inv_norm[a]) * (key(bt, i) * inv_norm[bt]);
      }
      const float sim = warp_sum(dot);
      if (sim > best_sim) best_sim = sim, best = bt;  // every lane holds the same sums
    }
    if (lane == 0) target[a] = int(best);
  }
  __syncthreads();

  // 4. survivors in order (exactly keep, as keep is reachable); merged
  // tokens pushed onto their target's list
  if (threadIdx.x == 0) {
    int k = 0;
    for (std::int64_t t = 0; t < n; ++t) {
      if (target[t] == t) {
        slot[t] = k;
        p.keep_idx[out + k] = int(t);
        ++k;
      } else {
        slot[t] = -1;
        next[t] = head[target[t]];
        head[target[t]] = int(t);
      }
    }
  }
  __syncthreads();

  // 5. size-weighted means of each survivor's group
  for (std::int64_t s = warp; s < n; s += kMergeWarps) {
    if (slot[s] < 0) continue;
    const std::int64_t o = slot[s];
    float weight = sizes ? sizes[s] : 1.0f;
    for (int m = head[s]; m >= 0; m = next[m]) weight += sizes ? sizes[m] : 1.0f;
    const float inv = 1.0f / weight;
    T* dst = p.out + (out + o) * c;
    for (std::int64_t i = lane; i < c; i += cuda_detail::kWarp) {
      float acc = (sizes ? sizes[s] : 1.0f) * to_float(p.x[(in + s) * c + i]);
      for (int m = head[s]; m >= 0; m = next[m]) acc += (sizes ? sizes[m] : 1.0f) * to_float(p.x[(in + m) * c + i]);
      dst[i] = from_float<T>(acc * inv);
    }
    if (p.out_sizes && lane == 0) p.out_sizes[out + o] = weight;
  }
}

}  // namespace cuda_detail

namespace cuda {

// p's pointers are device pointers; sizes, when set, are validated by the
// caller (the Block reports bad ones through exec.status).
template <class T>
void merge_tokens(const Cuda& exec, const BasicMergeParams<T>& p) {
  constexpr const char* where = "cuda::merge_tokens";
  p.check(where);
  detail::require_at_most(where, "batch", p.batch, "2^31 - 1 (CUDA grid x)", 0x7fffffff);
  detail::require_at_most(where, "tokens", p.tokens, "4096 (shared-memory plan)", 4096);
  const int bytes = int(p.tokens) * cuda_detail::kMergeBytesPerToken;
  auto* kernel = &cuda_detail::merge_tokens_kernel<T>;
  cuda_detail::allow_dynamic_smem(kernel, bytes, "cudaFuncSetAttribute(merge_tokens_kernel, MaxDynamicSharedMemorySize)");
  kernel<<<unsigned(p.batch), cuda_detail::kMergeThreads, bytes, exec.stream>>>(p, exec.status);
  cuda_detail::check_launch("merge_tokens_kernel");
}

}  // namespace cuda
}  // namespace repshift
