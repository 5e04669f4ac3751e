#pragma once
// The flash-attention kernel's arithmetic that needs no GPU, as plain
// REPSHIFT_HD / constexpr code (tested on the host in
// tests/test_cuda_tiling.cpp): the online-softmax update, the head-dim
// bucket a runtime head_dim runs in, and the shared-memory plan.

#include <cmath>
#include <cstdint>

#include "../core/config.hpp"
#include "tiling.hpp"

namespace repshift {
namespace cuda_detail {

// Running softmax of one query row over key blocks: max m and sum l of
// exp(logit - m). fold() takes a block's max and returns the factor that
// rescales what was accumulated before (output rows, l). A row that has
// seen only masked keys (-inf) keeps m = -inf; exp() is then taken
// against 0 so no inf - inf NaN appears.
struct OnlineSoftmax {
  float max = -INFINITY;
  float sum = 0.0f;

  REPSHIFT_HD float fold(float block_max) {
    const float next = fmaxf(max, block_max);
    const float factor = max == -INFINITY ? 0.0f : expf(max - next);
    max = next;
    sum *= factor;
    return factor;
  }
  // exp(logit - max), 0 for a masked logit.
  REPSHIFT_HD float weight(float logit) const { return expf(logit - (max == -INFINITY ? 0.0f : max)); }
};

// Head dims run in three compiled buckets; a smaller head_dim is zero
// padded up to its bucket (zeros add nothing to Q.K and V columns past
// head_dim are never written). 0: not supported.
inline int attention_head_bucket(std::int64_t head_dim) {
  if (head_dim <= 0) return 0;
  if (head_dim <= 32) return 32;
  if (head_dim <= 64) return 64;
  if (head_dim <= 128) return 128;
  return 0;
}

// One CTA: kBlockQ queries of one (sample, head), kWarps warps of
// kRowsPerWarp query rows, streaming kBlockK keys per step. Each warp
// pairs lanes per query row: lane / 2 is the row, lane % 2 the half of the
// key block (for softmax) or of the head dim (for the output).
// Shared memory, each segment 128-byte aligned:
//   Q, K, V   [kBlock][HeadDim + pad] storage type (Tensor) or float (SIMT)
//   S         per warp [kRowsPerWarp][kBlockK + 4] float: logits, then
//             probabilities on the SIMT path
//   P         per warp [kRowsPerWarp][kBlockK + 8] storage type (Tensor only)
//   O         per warp [kRowsPerWarp][HeadDim + 4] float: output accumulators
template <int HeadDim, int ElemBytes, bool Tensor>
struct AttentionTiling {
  static constexpr int kWarps = 4;
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kRowsPerWarp = 16;
  static constexpr int kBlockQ = kWarps * kRowsPerWarp;
  static constexpr int kBlockK = 64;
  static constexpr int kHeadDim = HeadDim;
  // Leading dims in elements. WMMA needs multiples of 16 bytes; the pads
  // also shift consecutive rows across banks.
  static constexpr int kLdQkv = HeadDim + (Tensor ? 16 / ElemBytes : 4);
  static constexpr int kQkvBytes = Tensor ? ElemBytes : 4;
  static constexpr int kLdS = kBlockK + 4;
  static constexpr int kLdP = kBlockK + 16 / ElemBytes;
  static constexpr int kLdO = HeadDim + 4;

  static constexpr int align(int bytes) { return (bytes + 127) / 128 * 128; }
  static constexpr int kTileBytes = align(kBlockQ * kLdQkv * kQkvBytes);  // Q, and each of K, V
  static constexpr int kSBytes = align(kWarps * kRowsPerWarp * kLdS * 4);
  static constexpr int kPBytes = Tensor ? align(kWarps * kRowsPerWarp * kLdP * ElemBytes) : 0;
  static constexpr int kOBytes = align(kWarps * kRowsPerWarp * kLdO * 4);

  static constexpr int kQOffset = 0;
  static constexpr int kKOffset = kQOffset + kTileBytes;
  static constexpr int kVOffset = kKOffset + kTileBytes;
  static constexpr int kSOffset = kVOffset + kTileBytes;
  static constexpr int kPOffset = kSOffset + kSBytes;
  static constexpr int kOOffset = kPOffset + kPBytes;
  static constexpr int kSharedBytes = kOOffset + kOBytes;

  static_assert(HeadDim % 32 == 0, "head-dim buckets are multiples of 32");
  static_assert(kBlockK == 64 && kRowsPerWarp == 16, "the lane pairing assumes 16 rows x 64 keys per warp");
};

inline std::int64_t attention_query_blocks(std::int64_t tokens, int block_q) { return blocks_needed(tokens, block_q); }

}  // namespace cuda_detail
}  // namespace repshift
