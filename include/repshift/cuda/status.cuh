#pragma once
// Bad input that only the device can see. Some inputs of the CUDA ops live
// in device memory (indices, token ids, token sizes, packed samples'
// cu_seqlens), so the host cannot check them before a launch. A kernel
// that meets a bad one never reads or writes through it (the row is zeroed
// or the sample skipped) and, when the exec carries a status array (4
// device ints, zeroed by the caller), records the first one there:
// record_status. rs::cuda::throw_if_status(exec) reads it back (the only
// call that synchronises), zeroes it for the next forward and throws
// InvalidArgument naming the value; rs::cuda::clear_status(exec) zeroes it
// after a forward that stopped on a CudaError.

#include <cuda_runtime.h>

#include <cstdint>
#include <cstring>

#include "../core/error.hpp"
#include "../core/varlen.hpp"
#include "error.cuh"
#include "exec.cuh"

namespace repshift {
namespace cuda_detail {

// What status[0] says; status[1..3] are the values the code names.
enum StatusCode : int {
  kStatusGatherIndex = 1,    // gather_tokens: sample, slot, index
  kStatusLineIndex = 2,      // remove_lines: which list (0 rows, 1 columns), position, index
  kStatusTokenSize = 3,      // Merge's log sizes: position, size's float bits
  kStatusKeptToken = 4,      // SsmScan: sample, kept token
  kStatusTokenId = 5,        // embed_tokens: position, id
  kStatusSampleLength = 6,   // attention: sample, its tokens, `tokens`
  kStatusPackedCounts = 7,   // select / gather / merge / fuse: sample, its tokens, its keep count
  kStatusMergeReach = 8,     // merge: sample, its tokens, its keep count
  kStatusOutRows = 9,        // gather: sample, its output rows, its keep count
  kStatusFirstOffset = 10,   // packed ops: which array (0 cu, 1 kept, 2 out _seqlens), its first entry
  kStatusFusedRow = 11,      // fuse: sample, its output rows, its keep count
  kStatusSampleEnd = 12,     // attention: sample, its first row, batch x tokens
};

// The array's length: the code and the three values it names.
constexpr int kStatusInts = 4;

// The first caller wins; later ones leave the record alone.
__device__ inline void record_status(int* status, StatusCode code, int a, int b = 0, int c = 0) {
  if (status && atomicCAS(status, 0, int(code)) == 0) {
    status[1] = a;
    status[2] = b;
    status[3] = c;
  }
}

// A packed sample's counts as read from device-side cu_seqlens /
// kept_cu_seqlens, held to the rules the CPU checks on the host
// (PackedRows::check_host): sample b has n <= tokens tokens and keeps k
// (kept_count_ok) with k <= keep; `tokens` and `keep` are the longest
// sample's, which size the kernel's shared memory and its output.
// Padded batches were checked on the host.
__device__ inline bool packed_counts_ok(std::int64_t n, std::int64_t k, std::int64_t tokens, std::int64_t keep,
                                        std::int64_t protect) {
  return n >= 0 && n <= tokens && k <= keep && kept_count_ok(n, k, protect);
}
// packed_counts_ok, recorded when false: the caller's CTA then skips the
// sample.
__device__ inline bool sample_fits(std::int64_t b, std::int64_t n, std::int64_t k, std::int64_t tokens,
                                   std::int64_t keep, std::int64_t protect, int* status) {
  if (packed_counts_ok(n, k, tokens, keep, protect)) return true;
  if (threadIdx.x == 0) record_status(status, kStatusPackedCounts, int(b), int(n), int(k));
  return false;
}

// Packed offsets start at 0, as the CPU checks on the host: one that
// starts later would place the samples past a buffer sized by the sum of
// their lengths. Every CTA of a packed kernel checks (the entries are one
// cached line) and, when false, writes nothing; thread 0 records it.
__device__ inline bool offsets_start_at_zero(const int* cu_seqlens, const int* kept_cu_seqlens,
                                             const int* out_cu_seqlens, int* status) {
  const int* arrays[3] = {cu_seqlens, kept_cu_seqlens, out_cu_seqlens};
  for (int i = 0; i < 3; ++i) {
    if (arrays[i] && arrays[i][0] != 0) {
      if (threadIdx.x == 0) record_status(status, kStatusFirstOffset, i, arrays[i][0]);
      return false;
    }
  }
  return true;
}

}  // namespace cuda_detail

namespace cuda {

// Zeroes the status array, enqueued on the exec's stream. A forward that
// threw a CudaError part way may have recorded a bad input before it
// stopped; clearing before the exec runs again keeps that record from
// being reported as the next forward's.
inline void clear_status(const Cuda& exec) {
  if (!exec.status) return;
  cuda_detail::check(cudaMemsetAsync(exec.status, 0, cuda_detail::kStatusInts * sizeof(int), exec.stream),
                     "cudaMemsetAsync(status)");
}

inline void throw_if_status(const Cuda& exec) {
  using namespace cuda_detail;
  if (!exec.status) return;
  int host[kStatusInts] = {};
  check(cudaMemcpyAsync(host, exec.status, sizeof host, cudaMemcpyDeviceToHost, exec.stream), "cudaMemcpyAsync(status)");
  check(cudaStreamSynchronize(exec.stream), "cudaStreamSynchronize");
  if (host[0] == 0) return;
  // Cleared before throwing: an exec whose error was caught starts the
  // next forward clean.
  clear_status(exec);
  switch (host[0]) {
    case kStatusGatherIndex:
      detail::fail("gather_tokens", "keep_idx[{}, {}] = {} is outside [0, tokens)", host[1], host[2], host[3]);
    case kStatusLineIndex:
      detail::fail("remove_lines", "{}[{}] = {} is outside the map", host[1] ? "keep_cols" : "keep_rows", host[2],
                   host[3]);
    case kStatusTokenSize: {
      float size = 0.0f;
      std::memcpy(&size, &host[2], sizeof size);
      detail::fail("Block<Transformer, ..., Merge>::forward", "sizes[{}] = {} must be finite and > 0", host[1], size);
    }
    case kStatusKeptToken:
      detail::fail("Block<SsmScan>::forward", "keep_token[{}] = {} is outside [0, tokens)", host[1], host[2]);
    case kStatusTokenId:
      detail::fail("embed_tokens", "ids[{}] = {} is outside [0, vocab_size)", host[1], host[2]);
    case kStatusSampleLength:
      detail::fail("attention", "cu_seqlens: sample {} has {} tokens, outside [0, tokens = {}] (the longest sample)",
                   host[1], host[2], host[3]);
    case kStatusPackedCounts:
      detail::fail("select_top / merge_tokens / fuse / gather_tokens",
                   "cu_seqlens / kept_cu_seqlens: sample {} has {} tokens and keeps {}: a sample has at most `tokens` "
                   "and keeps at most `keep` (the longest sample's), and keeps [max(1, min(protect, its tokens)), "
                   "its tokens]",
                   host[1], host[2], host[3]);
    case kStatusMergeReach:
      detail::fail("merge_tokens",
                   "kept_cu_seqlens: sample {} of {} tokens keeps {}, fewer than one merge can leave (it removes "
                   "at most half of the unprotected tokens)",
                   host[1], host[2], host[3]);
    case kStatusOutRows:
      detail::fail("gather_tokens", "out_cu_seqlens gives sample {} {} rows for its {} kept tokens", host[1], host[2],
                   host[3]);
    case kStatusFusedRow:
      detail::fail("fuse_dropped", "out_cu_seqlens gives sample {} {} rows: no room for its fused row after its {} kept tokens",
                   host[1], host[2], host[3]);
    case kStatusSampleEnd:
      detail::fail("attention", "cu_seqlens: sample {} starts at row {} and runs past batch x tokens = {} rows",
                   host[1], host[2], host[3]);
    case kStatusFirstOffset: {
      const char* names[3] = {"cu_seqlens", "kept_cu_seqlens", "out_cu_seqlens"};
      detail::fail("packed layout", "{}[0] = {} must be 0", names[host[1] >= 0 && host[1] < 3 ? host[1] : 0], host[2]);
    }
    default:
      detail::fail("throw_if_status", "status[0] = {} is no code a kernel writes (was the array zeroed?)", host[0]);
  }
}

}  // namespace cuda
}  // namespace repshift
