#pragma once
// CUDA top-k per sample: one CTA per sample, built on CUB block primitives.
//   1. each thread ranks its `Items` consecutive tokens with the shared
//      64-bit selection_rank (policies/select.hpp); protected tokens and
//      padding get rank 0, below every real rank;
//   2. cub::BlockRadixSort orders the ranks descending; the first
//      keep - protect are chosen and flagged in shared memory by index;
//   3. cub::BlockScan over the flags, in token order, gives each kept token
//      its output slot: the result is ascending with no second sort.
// Same ranks, same rule as the CPU path, so the index sets are identical.

#include <cub/block/block_radix_sort.cuh>
#include <cub/block/block_scan.cuh>

#include <cstdint>

#include "../params/select_top.hpp"
#include "../policies/select.hpp"
#include "error.cuh"
#include "exec.cuh"
#include "status.cuh"
#include "tiling.hpp"

namespace repshift {
namespace cuda_detail {

template <int Items>
struct BlockSelect {
  static constexpr int kThreads = cuda_detail::SelectTiling::kThreads;
  static constexpr int kTile = kThreads * Items;
  using Sort = cub::BlockRadixSort<std::uint64_t, kThreads, Items>;
  using Scan = cub::BlockScan<int, kThreads>;

  // Caller-owned, as CUB's: sort and scan never overlap, so they alias.
  struct TempStorage {
    union {
      typename Sort::TempStorage sort;
      typename Scan::TempStorage scan;
    } cub;
    unsigned char kept[kTile];
  };

  // Sample b, padded or packed (PackedRows: its own length and keep count).
  __device__ static void run(TempStorage& smem, const SelectParams& p, std::int64_t b, int* status) {
    const std::int64_t tokens_b = p.tokens_of(b, p.tokens), keep_b = p.keep_of(b, p.keep);
    if (!sample_fits(b, tokens_b, keep_b, p.tokens, p.keep, p.protect, status)) return;  // uniform for the CTA
    const float* scores = p.scores + p.token_offset(b, p.scores_batch_stride, p.scores_token_stride);
    int* out = p.keep_idx + p.keep_offset(b, p.keep_batch_stride, p.keep_token_stride);
    const int tokens = int(tokens_b), keep = int(keep_b);
    const int protect = int(p.protect) < tokens ? int(p.protect) : tokens;
    const int first = int(threadIdx.x) * Items;

    std::uint64_t ranks[Items];
#pragma unroll
    for (int i = 0; i < Items; ++i) {
      const int t = first + i;
      ranks[i] = (t >= protect && t < tokens)
                     ? policies::selection_rank(scores[t * p.scores_token_stride], std::uint32_t(t))
                     : 0u;
      smem.kept[t] = t < protect ? 1 : 0;
    }
    Sort(smem.cub.sort).SortDescending(ranks);
    __syncthreads();  // kept[] of protected tokens written before flags below; sort storage free

    const int chosen = keep - protect;
#pragma unroll
    for (int i = 0; i < Items; ++i) {
      if (first + i < chosen) smem.kept[policies::rank_index(ranks[i])] = 1;
    }
    __syncthreads();

    int flags[Items], slots[Items];
#pragma unroll
    for (int i = 0; i < Items; ++i) flags[i] = (first + i < tokens) ? smem.kept[first + i] : 0;
    Scan(smem.cub.scan).ExclusiveSum(flags, slots);
#pragma unroll
    for (int i = 0; i < Items; ++i) {
      if (flags[i]) out[slots[i] * p.keep_token_stride] = first + i;
    }
  }
};

template <int Items>
__global__ void __launch_bounds__(cuda_detail::SelectTiling::kThreads) select_top_kernel(SelectParams p, int* status) {
  __shared__ typename BlockSelect<Items>::TempStorage smem;
  BlockSelect<Items>::run(smem, p, blockIdx.x, status);
}

inline void select_top(const Cuda& exec, const SelectParams& p) {
  using Tiling = cuda_detail::SelectTiling;
  if (p.tokens > Tiling::kMaxTokens) {
    detail::fail("select_top", "tokens = {} exceeds the CUDA path's {} tokens per sample", p.tokens,
                 Tiling::kMaxTokens);
  }
  if (p.batch > 0x7fffffff) detail::fail("select_top", "batch = {} exceeds one CUDA grid", p.batch);
  const unsigned grid = unsigned(p.batch);
  // The one runtime -> template switch: tile size from the token count.
  switch (cuda_detail::select_items_per_thread(p.tokens)) {
    case 1: select_top_kernel<1><<<grid, Tiling::kThreads, 0, exec.stream>>>(p, exec.status); break;
    case 2: select_top_kernel<2><<<grid, Tiling::kThreads, 0, exec.stream>>>(p, exec.status); break;
    case 4: select_top_kernel<4><<<grid, Tiling::kThreads, 0, exec.stream>>>(p, exec.status); break;
    case 8: select_top_kernel<8><<<grid, Tiling::kThreads, 0, exec.stream>>>(p, exec.status); break;
    default: select_top_kernel<16><<<grid, Tiling::kThreads, 0, exec.stream>>>(p, exec.status); break;
  }
  check_launch("select_top_kernel");
}

}  // namespace cuda_detail
}  // namespace repshift
