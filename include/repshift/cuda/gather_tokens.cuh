#pragma once
// CUDA gather: one warp per output row, 16-byte copies when rows allow.
// An index outside [0, tokens) is never read through: its row is zeroed
// and, when the exec carries a status array, the first such (b, k, value)
// is recorded there for rs::cuda::throw_if_status.

#include <cstdint>

#include "../params/gather_tokens.hpp"
#include "error.cuh"
#include "exec.cuh"
#include "status.cuh"
#include "tiling.hpp"
#include "warp_reduce.cuh"

namespace repshift {
namespace cuda_detail {

// Warps per sample: one per kept slot, and one where keep = 0.
__host__ __device__ inline std::int64_t gather_slots(std::int64_t keep) { return keep > 0 ? keep : 1; }

template <class T, bool Vector>
__global__ void __launch_bounds__(cuda_detail::ScoreTiling::kThreads)
    gather_tokens_kernel(GatherParams<T> p, int* status) {
  const int lane = threadIdx.x % cuda_detail::kWarp;
  const std::int64_t row = cuda_detail::warp_row_index();
  // Rows enumerate (sample, kept slot) up to the longest keep, and at least
  // one slot a sample, so a packed sample's device counts are checked even
  // where keep = 0; a sample keeping fewer has nothing past its own count.
  const std::int64_t slots = gather_slots(p.keep);
  if (row >= p.batch * slots) return;
  const std::int64_t b = row / slots, k = row % slots;
  const std::int64_t kept = p.keep_of(b, p.keep);
  if (p.cu_seqlens) {
    // The counts live in device memory: held to the rules the CPU checks
    // on the host (a sample keeping more than `keep` would lose rows, one
    // with too few output rows would write into the next sample's).
    if (!offsets_start_at_zero(p.cu_seqlens, p.kept_cu_seqlens, p.out_cu_seqlens, status)) return;
    const std::int64_t n = p.tokens_of(b, p.tokens);
    const std::int64_t out_rows = p.out_cu_seqlens ? seq_length(p.out_cu_seqlens, b, 0) : kept;
    const bool counts_ok = packed_counts_ok(n, kept, p.tokens, p.keep, 0);
    if (!counts_ok || out_rows < kept) {
      if (k == 0 && lane == 0) {
        if (!counts_ok) record_status(status, kStatusPackedCounts, int(b), int(n), int(kept));
        else record_status(status, kStatusOutRows, int(b), int(out_rows), int(kept));
      }
      return;
    }
  }
  if (k >= kept) return;
  const int n = p.keep_idx[p.keep_offset(b, p.keep_batch_stride, p.keep_token_stride) + k * p.keep_token_stride];
  T* dst = p.out + (p.out_cu_seqlens ? std::int64_t(p.out_cu_seqlens[b]) * p.out_token_stride
                                     : p.keep_offset(b, p.out_batch_stride, p.out_token_stride)) +
           k * p.out_token_stride;
  const bool valid = n >= 0 && n < p.tokens_of(b, p.tokens);
  if (!valid && lane == 0) record_status(status, kStatusGatherIndex, int(b), int(k), n);
  const T* src = p.x + p.token_offset(b, p.x_batch_stride, p.x_token_stride) + std::int64_t(valid ? n : 0) * p.x_token_stride;
  if constexpr (Vector) {
    const std::int64_t vecs = p.channels * std::int64_t(sizeof(T)) / 16;
    const auto* s4 = reinterpret_cast<const uint4*>(src);
    auto* d4 = reinterpret_cast<uint4*>(dst);
    for (std::int64_t i = lane; i < vecs; i += cuda_detail::kWarp) d4[i] = valid ? s4[i] : make_uint4(0, 0, 0, 0);
  } else {
    for (std::int64_t c = lane; c < p.channels; c += cuda_detail::kWarp) dst[c] = valid ? src[c] : T{};
  }
}

template <class T>
void gather_tokens(const Cuda& exec, const GatherParams<T>& p) {
  using Tiling = cuda_detail::ScoreTiling;
  const unsigned grid =
      cuda_detail::grid_blocks("gather_tokens", "batch * keep", p.batch * gather_slots(p.keep), Tiling::kWarps);
  const auto base = reinterpret_cast<std::uintptr_t>(p.x) | reinterpret_cast<std::uintptr_t>(p.out);
  const std::int64_t strides = p.x_batch_stride | p.x_token_stride | p.out_batch_stride | p.out_token_stride;
  if (cuda_detail::rows_vectorisable<T>(base, p.channels, strides, strides)) {
    gather_tokens_kernel<T, true><<<grid, Tiling::kThreads, 0, exec.stream>>>(p, exec.status);
  } else {
    gather_tokens_kernel<T, false><<<grid, Tiling::kThreads, 0, exec.stream>>>(p, exec.status);
  }
  check_launch("gather_tokens_kernel");
}

}  // namespace cuda_detail
}  // namespace repshift
