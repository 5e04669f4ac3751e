#pragma once
// The flash-attention kernels' arithmetic that needs no GPU, as plain
// REPSHIFT_HD / constexpr code (tested on the host in
// tests/test_cuda_tiling.cpp): the online-softmax update, the head-dim
// bucket a runtime head_dim runs in, the shared-memory plans of the f32
// and the tensor-core kernel, and the tensor-core fragment layouts.

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
// against 0 so no inf - inf NaN appears. Base2: logits come in log2 units
// (scaled by log2 e) and exp2 replaces exp: one instruction on the GPU
// (the tensor-core kernel, where exp is the scarce unit).
template <bool Base2>
struct BasicOnlineSoftmax {
  float max = -INFINITY;
  float sum = 0.0f;

  REPSHIFT_HD static float exp(float x) { return Base2 ? exp2f(x) : expf(x); }
  REPSHIFT_HD float fold(float block_max) {
    const float next = fmaxf(max, block_max);
    const float factor = max == -INFINITY ? 0.0f : exp(max - next);
    max = next;
    sum *= factor;
    return factor;
  }
  // exp(logit - max), 0 for a masked logit.
  REPSHIFT_HD float weight(float logit) const { return exp(logit - (max == -INFINITY ? 0.0f : max)); }
};
using OnlineSoftmax = BasicOnlineSoftmax<false>;

constexpr float kLog2e = 1.4426950408889634f;

// Head dims run in three compiled buckets; a smaller head_dim is zero
// padded up to its bucket (zeros add nothing to Q.K and V columns past
// head_dim are never written). 0: not supported.
inline int attention_head_bucket(std::int64_t head_dim) { return compiled_bucket(head_dim, {32, 64, 128}); }

// The f32 kernel (FMA, exact f32). One CTA: kBlockQ queries of one
// (sample, head), kWarps warps of kRowsPerWarp query rows, streaming
// kBlockK keys per step. Each warp pairs lanes per query row: lane / 2 is
// the row; the pair's two lanes interleave, lane % 2 = h taking keys
// 2i + h of the block (scores, softmax) and columns 2i + h of the head dim
// (output). Shared memory, each segment 128-byte aligned:
//   Q, K, V   [kBlock][HeadDim + 2] float
//   S         per warp [kRowsPerWarp][kBlockK + 2] float: logits, then probabilities
//   O         per warp [kRowsPerWarp][HeadDim + 2] float: output accumulators
// Rows 2 words (mod 32) apart put a warp's 16 rows on 16 even banks and the
// interleave puts a pair's lanes one bank apart: every access below is
// free of bank conflicts (counted on the host, tests/test_cuda_tiling.cpp,
// from the *_word maps the kernel indexes with). Rows 4 words apart with
// each lane taking a contiguous half, as before, cost 2- to 4-way
// conflicts on S, O, K and V.
template <int HeadDim>
struct SimtAttentionTiling {
  static constexpr int kWarps = 4;
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kRowsPerWarp = 16;
  static constexpr int kBlockQ = kWarps * kRowsPerWarp;
  static constexpr int kBlockK = 64;
  static constexpr int kKeysPerLane = kBlockK / 2;
  static constexpr int kColumnsPerLane = HeadDim / 2;
  // Leading dims in floats.
  static constexpr int kLdQkv = HeadDim + 2;
  static constexpr int kLdS = kBlockK + 2;
  static constexpr int kLdO = HeadDim + 2;

  // A lane's query row within its warp, and which of the pair it is.
  REPSHIFT_HD static constexpr int pair_row(int lane) { return lane / 2; }
  REPSHIFT_HD static constexpr int pair_half(int lane) { return lane % 2; }
  // The block key, in [0, kBlockK), of a lane's i-th score, and the head-dim
  // column of its i-th output.
  REPSHIFT_HD static constexpr int key_of(int lane, int i) { return 2 * i + pair_half(lane); }
  REPSHIFT_HD static constexpr int column_of(int lane, int i) { return 2 * i + pair_half(lane); }

  // Word offsets of what a lane reads and writes: Q and S, O from the
  // warp's own rows, K and V from the tile's first row.
  REPSHIFT_HD static constexpr int q_word(int lane, int c) { return pair_row(lane) * kLdQkv + c; }
  REPSHIFT_HD static constexpr int k_word(int lane, int i, int c) { return key_of(lane, i) * kLdQkv + c; }
  REPSHIFT_HD static constexpr int s_word(int lane, int i) { return pair_row(lane) * kLdS + key_of(lane, i); }
  REPSHIFT_HD static constexpr int p_word(int lane, int key) { return pair_row(lane) * kLdS + key; }
  REPSHIFT_HD static constexpr int v_word(int lane, int key, int i) { return key * kLdQkv + column_of(lane, i); }
  REPSHIFT_HD static constexpr int o_word(int lane, int i) { return pair_row(lane) * kLdO + column_of(lane, i); }

  static constexpr int align(int bytes) { return (bytes + 127) / 128 * 128; }
  static constexpr int kTileBytes = align(kBlockQ * kLdQkv * 4);  // Q, and each of K, V
  static constexpr int kSBytes = align(kWarps * kRowsPerWarp * kLdS * 4);
  static constexpr int kOBytes = align(kWarps * kRowsPerWarp * kLdO * 4);

  static constexpr int kQOffset = 0;
  static constexpr int kKOffset = kQOffset + kTileBytes;
  static constexpr int kVOffset = kKOffset + kTileBytes;
  static constexpr int kSOffset = kVOffset + kTileBytes;
  static constexpr int kOOffset = kSOffset + kSBytes;
  static constexpr int kSharedBytes = kOOffset + kOBytes;

  static_assert(HeadDim % 32 == 0, "head-dim buckets are multiples of 32");
  static_assert(kBlockK == 64 && kRowsPerWarp == 16, "the lane pairing assumes 16 rows x 64 keys per warp");
  static_assert(kLdQkv % 32 == 2 && kLdS % 32 == 2 && kLdO % 32 == 2, "rows 2 banks apart");
};

// The f16 / bf16 kernel's plan (its schedule: cuda/flash_attention_mma.cuh):
// kBlockQ queries per CTA, kStages buffers of kBlockK keys. Shared memory,
// storage type, rows kLd = HeadDim + 8 elements
// apart: the 16-byte pad puts the 8 rows of every ldmatrix phase in 8
// different 16-byte bank groups (rows 2 (HeadDim + 8) bytes apart, an odd
// multiple of 16; checked on the host for every bucket).
//   Q [kBlockQ][kLd], then K[stage], V[stage] [kBlockK][kLd] each.
template <int HeadDim>
struct MmaAttentionTiling {
  static constexpr int kWarps = 4;
  static constexpr int kThreads = kWarps * 32;
  static constexpr int kRowsPerWarp = 16;  // one mma M
  static constexpr int kBlockQ = kWarps * kRowsPerWarp;
  static constexpr int kBlockK = 64;
  static constexpr int kStages = 2;
  static constexpr int kElemBytes = 2;
  static constexpr int kVector = 16 / kElemBytes;  // elements a cp.async moves
  static constexpr int kLd = HeadDim + kVector;
  static constexpr int kVectorsPerRow = HeadDim / kVector;
  static constexpr int kTileElems = kBlockK * kLd;
  static constexpr int kQOffset = 0;  // elements
  static constexpr int kKOffset = kBlockQ * kLd;
  static constexpr int kVOffset = kKOffset + kStages * kTileElems;
  static constexpr int kSharedBytes = (kVOffset + kStages * kTileElems) * kElemBytes;

  static_assert(HeadDim % 32 == 0, "head-dim buckets are multiples of 32");
  static_assert(kBlockQ == kBlockK, "Q and K/V tiles share one loader");
};

// Where each lane's elements sit in the fragments of mma.sync
// m16n8k16 (f16 / bf16 in, f32 accumulate) and of ldmatrix.x4, as the PTX
// ISA defines them (groups g = lane / 4, t = lane % 4). Host-tested by an
// emulation of both instructions (tests/test_cuda_tiling.cpp), so the
// kernel's fragment plumbing is checked without a GPU.
struct MmaLayout {
  // A, 16 x 16 row major: register r (0..3) holds two adjacent columns.
  REPSHIFT_HD static int a_row(int lane, int r) { return lane / 4 + (r % 2) * 8; }
  REPSHIFT_HD static int a_col(int lane, int r, int half) { return (lane % 4) * 2 + half + (r / 2) * 8; }
  // B, 16 x 8 (k x n), "col": register r (0..1) holds two adjacent k.
  REPSHIFT_HD static int b_k(int lane, int r, int half) { return (lane % 4) * 2 + half + r * 8; }
  REPSHIFT_HD static int b_n(int lane) { return lane / 4; }
  // C / D, 16 x 8 f32: element i (0..3).
  REPSHIFT_HD static int c_row(int lane, int i) { return lane / 4 + (i / 2) * 8; }
  REPSHIFT_HD static int c_col(int lane, int i) { return (lane % 4) * 2 + i % 2; }

  // ldmatrix.x4: lane l gives the address of row l % 8 of 8 x 8 matrix
  // l / 8 and receives register m of matrix m. Which row and column block
  // each lane addresses, per operand:
  //  A (Q, 16 x 16 at a row and k offset): matrices (rows 0-7, k 0-7),
  //    (rows 8-15, k 0-7), (rows 0-7, k 8-15), (rows 8-15, k 8-15) = a0..a3.
  REPSHIFT_HD static int ldsm_a_row(int lane) { return lane % 8 + ((lane / 8) % 2) * 8; }
  REPSHIFT_HD static int ldsm_a_col(int lane) { return (lane / 16) * 8; }
  //  B of S = Q K^T from K [key][dim] (not transposed): two 8-key n tiles,
  //    matrices (keys 0-7, dims 0-7), (keys 0-7, dims 8-15) = tile 0's b0,
  //    b1, then keys 8-15 = tile 1's.
  REPSHIFT_HD static int ldsm_k_key(int lane) { return lane % 8 + (lane / 16) * 8; }
  REPSHIFT_HD static int ldsm_k_dim(int lane) { return ((lane / 8) % 2) * 8; }
  //  B of O = P V from V [key][dim] (ldmatrix .trans): two 8-dim n tiles,
  //    matrices (keys 0-7, dims 0-7), (keys 8-15, dims 0-7) = tile 0's b0,
  //    b1, then dims 8-15 = tile 1's.
  REPSHIFT_HD static int ldsm_v_key(int lane) { return lane % 8 + ((lane / 8) % 2) * 8; }
  REPSHIFT_HD static int ldsm_v_dim(int lane) { return (lane / 16) * 8; }
  //  P as the A of O = P V, straight from the accumulators of S: k step kk
  //    (keys 16 kk ..) register r is S tile 2 kk + r / 2, elements
  //    2 (r % 2) and 2 (r % 2) + 1.
  REPSHIFT_HD static int p_tile(int kk, int r) { return 2 * kk + r / 2; }
  REPSHIFT_HD static int p_elem(int r, int half) { return 2 * (r % 2) + half; }
};

}  // namespace cuda_detail
}  // namespace repshift
