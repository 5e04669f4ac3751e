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
// Samples longer than one tile (SelectTiling::kMaxTokens) take
// BlockRadixSelect: no sort, the rank of the last chosen token found digit
// by digit, then one sweep in token order.

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

// Sample b of a select, padded or packed (PackedRows: its own length and
// keep count): its counts, its tokens' ranks and where its kept indices go.
struct SelectSample {
  const float* scores = nullptr;
  int* out = nullptr;
  std::int64_t score_stride = 0, out_stride = 0;
  int tokens = 0, keep = 0, protect = 0;  // protect: at most tokens

  // False (recorded in status) when b's packed counts break the rules: the
  // CTA, which calls this uniformly, then skips the sample.
  __device__ bool load(const SelectParams& p, std::int64_t b, int* status) {
    const std::int64_t tokens_b = p.tokens_of(b, p.tokens), keep_b = p.keep_of(b, p.keep);
    if (!offsets_start_at_zero(p.cu_seqlens, p.kept_cu_seqlens, nullptr, status)) return false;
    if (!sample_fits(b, tokens_b, keep_b, p.tokens, p.keep, p.protect, status)) return false;
    scores = p.scores + p.token_offset(b, p.scores_batch_stride, p.scores_token_stride);
    out = p.keep_idx + p.keep_offset(b, p.keep_batch_stride, p.keep_token_stride);
    score_stride = p.scores_token_stride, out_stride = p.keep_token_stride;
    tokens = int(tokens_b), keep = int(keep_b);
    protect = p.protect < tokens_b ? int(p.protect) : tokens;  // compared in 64 bits, then narrowed
    return true;
  }
  // Kept beside the protected prefix.
  __device__ int chosen() const { return keep - protect; }
  __device__ std::uint64_t rank(std::int64_t t) const {
    return policies::selection_rank(scores[t * score_stride], std::uint32_t(t));
  }
  __device__ void write(std::int64_t slot, std::int64_t t) const { out[slot * out_stride] = int(t); }
};

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

  __device__ static void run(TempStorage& smem, const SelectSample& s) {
    const int first = int(threadIdx.x) * Items;
    std::uint64_t ranks[Items];
#pragma unroll
    for (int i = 0; i < Items; ++i) {
      const int t = first + i;
      ranks[i] = (t >= s.protect && t < s.tokens) ? s.rank(t) : 0u;
      smem.kept[t] = t < s.protect ? 1 : 0;
    }
    Sort(smem.cub.sort).SortDescending(ranks);
    __syncthreads();  // kept[] of protected tokens written before flags below; sort storage free

#pragma unroll
    for (int i = 0; i < Items; ++i) {
      if (first + i < s.chosen()) smem.kept[policies::rank_index(ranks[i])] = 1;
    }
    __syncthreads();

    int flags[Items], slots[Items];
#pragma unroll
    for (int i = 0; i < Items; ++i) flags[i] = (first + i < s.tokens) ? smem.kept[first + i] : 0;
    Scan(smem.cub.scan).ExclusiveSum(flags, slots);
#pragma unroll
    for (int i = 0; i < Items; ++i) {
      if (flags[i]) s.write(slots[i], first + i);
    }
  }
};

// Any number of tokens, one CTA per sample. Ranks are unique (they hold
// the token's index), so the chosen = keep - protect highest are exactly
// those at or above the chosen-th highest rank, which 8 passes of 8-bit
// digits find from the top: each pass counts the candidates (ranks that
// match the digits found so far) per next digit, one bin per thread, and a
// scan from the highest bin picks the digit where the count reaches what
// is still needed. A sweep in token order then flags protected tokens and
// ranks at or above it, and a BlockScan per 256 tokens gives each its
// ascending output slot. Scores are re-read per pass (from L2), never
// held: shared memory stays about 2 KiB whatever the length.
struct BlockRadixSelect {
  static constexpr int kThreads = cuda_detail::SelectTiling::kThreads;
  static constexpr int kDigitBits = 8, kBins = 1 << kDigitBits;
  static_assert(kThreads == kBins, "one histogram bin per thread");
  using Scan = cub::BlockScan<int, kThreads>;

  struct TempStorage {
    typename Scan::TempStorage scan;
    int bins[kBins];
    std::uint64_t prefix;  // the digits found so far
    int needed;            // chosen tokens still to find among the candidates
  };

  __device__ static void run(TempStorage& smem, const SelectSample& s) {
    const int chosen = s.chosen();
    std::uint64_t prefix = 0, found_mask = 0;
    int needed = chosen;
    for (int shift = 64 - kDigitBits; chosen > 0 && shift >= 0; shift -= kDigitBits) {
      smem.bins[threadIdx.x] = 0;
      __syncthreads();
      for (std::int64_t t = s.protect + threadIdx.x; t < s.tokens; t += kThreads) {  // 64-bit: tokens may near INT_MAX
        const std::uint64_t r = s.rank(t);
        if ((r & found_mask) == prefix) atomicAdd(&smem.bins[int((r >> shift) & (kBins - 1))], 1);
      }
      __syncthreads();
      // Thread i holds digit kBins - 1 - i: the inclusive sum counts the
      // candidates at or above its digit.
      const int digit = kBins - 1 - int(threadIdx.x), count = smem.bins[digit];
      int at_or_above = 0;
      Scan(smem.scan).InclusiveSum(count, at_or_above);
      const int above = at_or_above - count;
      if (above < needed && needed <= at_or_above) {  // exactly one thread: needed <= the candidates
        smem.prefix = prefix | (std::uint64_t(digit) << shift);
        smem.needed = needed - above;
      }
      __syncthreads();
      prefix = smem.prefix;
      needed = smem.needed;
      found_mask |= std::uint64_t(kBins - 1) << shift;
    }
    // prefix is now the chosen-th highest rank itself.
    int written = 0;
    for (std::int64_t first = 0; first < s.tokens; first += kThreads) {
      const std::int64_t t = first + threadIdx.x;
      const int flag = t < s.tokens && (t < s.protect || (chosen > 0 && s.rank(t) >= prefix)) ? 1 : 0;
      int slot = 0, flagged = 0;
      Scan(smem.scan).ExclusiveSum(flag, slot, flagged);
      if (flag) s.write(written + slot, t);
      written += flagged;
      __syncthreads();  // the scan's storage is reused by the next chunk
    }
  }
};

// One CTA per sample; BlockAlgorithm: BlockSelect<Items> or BlockRadixSelect.
template <class BlockAlgorithm>
__global__ void __launch_bounds__(cuda_detail::SelectTiling::kThreads) select_top_kernel(SelectParams p, int* status) {
  __shared__ typename BlockAlgorithm::TempStorage smem;
  SelectSample sample;
  if (!sample.load(p, blockIdx.x, status)) return;  // uniform for the CTA
  BlockAlgorithm::run(smem, sample);
}

inline void select_top(const Cuda& exec, const SelectParams& p) {
  using Tiling = cuda_detail::SelectTiling;
  if (p.batch > 0x7fffffff) detail::fail("select_top", "batch = {} exceeds one CUDA grid", p.batch);
  // tokens == 0 still launches: packed counts on the device are checked
  // (a sample there claiming tokens is named), and an empty one selects nothing.
  const unsigned grid = unsigned(p.batch);
  // The one runtime -> template switch: the block's algorithm and tile
  // size from the token count.
  const int items = p.tokens > Tiling::kMaxTokens ? 0 : cuda_detail::select_items_per_thread(p.tokens);
  switch (items) {
    case 0: select_top_kernel<BlockRadixSelect><<<grid, Tiling::kThreads, 0, exec.stream>>>(p, exec.status); break;
    case 1: select_top_kernel<BlockSelect<1>><<<grid, Tiling::kThreads, 0, exec.stream>>>(p, exec.status); break;
    case 2: select_top_kernel<BlockSelect<2>><<<grid, Tiling::kThreads, 0, exec.stream>>>(p, exec.status); break;
    case 4: select_top_kernel<BlockSelect<4>><<<grid, Tiling::kThreads, 0, exec.stream>>>(p, exec.status); break;
    case 8: select_top_kernel<BlockSelect<8>><<<grid, Tiling::kThreads, 0, exec.stream>>>(p, exec.status); break;
    default: select_top_kernel<BlockSelect<16>><<<grid, Tiling::kThreads, 0, exec.stream>>>(p, exec.status); break;
  }
  check_launch("select_top_kernel");
}

}  // namespace cuda_detail
}  // namespace repshift
