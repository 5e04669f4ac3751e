#pragma once
// Flash attention in f16 / bf16 on tensor cores, FlashAttention-2's
// schedule (plan and fragment layouts: MmaAttentionTiling and MmaLayout in
// cuda/attention_tiling.hpp). Per CTA, 64 queries of one (sample, head);
// per warp, 16 query rows:
//   - the warp's Q fragments are read once (ldmatrix) and stay in registers;
//   - K and V tiles of 64 keys stream through two shared-memory stages by
//     cp.async, block j + 1 loading while block j computes;
//   - S = Q K^T and O += P V run as mma.sync m16n8k16 with f32
//     accumulators; S never leaves registers: the online softmax works on
//     the accumulators (each row is spread over the 4 lanes of a quad, so
//     its max and sum take two shuffles, no shared memory) and P is
//     re-packed from them as the A operand of P V;
//   - O stays in registers until the one normalised store.
// Async: the loads are 16-byte cp.async (qkv 16-byte aligned, head_dim and
// the strides multiples of 8 elements, as cuda::flash_attention checks);
// otherwise the same schedule loads element-wise. Needs sm_80 or newer.

#include <cstdint>

#include "../params/attention.hpp"
#include "attention_tiling.hpp"
#include "dtype.cuh"
#include "mma.cuh"
#include "shared_memory.cuh"
#include "status.cuh"

namespace repshift {
namespace cuda_detail {

// Sample b's length, in [0, p.tokens]. cu_seqlens is device memory, so the
// host cannot check that `tokens` is the longest sample, nor that the
// offsets never decrease (the CPU does): a longer sample is cut to
// `tokens` and a negative length (decreasing offsets, which would overlap
// the sample before) runs nothing, and so does a sample whose rows would
// end past batch x tokens (after a longer sample before it), which keeps
// every read and write inside the buffers; each is recorded in status
// (codes 6 and 12) for rs::cuda::throw_if_status.
template <class T>
__device__ std::int64_t checked_queries(const BasicAttentionParams<T>& p, std::int64_t b, int* status) {
  if (!offsets_start_at_zero(p.cu_seqlens, nullptr, nullptr, status)) return 0;  // runs nothing
  const std::int64_t n = p.queries(b);
  if (n < 0 || n > p.tokens) {
    if (threadIdx.x == 0) record_status(status, kStatusSampleLength, int(b), int(n), int(p.tokens));
    if (n < 0) return 0;
  }
  const std::int64_t begin = seq_begin(p.cu_seqlens, b, p.tokens), rows = p.batch * p.tokens;
  const std::int64_t clamped = n > p.tokens ? p.tokens : n;
  if (begin + clamped <= rows) return clamped;
  if (threadIdx.x == 0) record_status(status, kStatusSampleEnd, int(b), int(begin), int(rows));
  return 0;
}

// One flash CTA's share, for both flash kernels: (query block, head,
// sample) from the grid, the sample's length N (packed samples differ; the
// grid covers the longest), its Q rows (K at + dim, V at + 2 dim), its
// key_bias and its output rows.
template <class T>
struct FlashCta {
  std::int64_t b, h, q0, N, dim;
  const T* qkv;
  const float* key_bias;  // or null

  __device__ FlashCta(const BasicAttentionParams<T>& p, int block_q, int* status)
      : b(blockIdx.z),
        h(blockIdx.y),
        q0(std::int64_t(blockIdx.x) * block_q),
        N(checked_queries(p, b, status)),
        dim(p.heads * p.head_dim),
        qkv(p.qkv + p.qkv_offset(b) + h * p.head_dim),
        key_bias(p.key_bias ? p.key_bias + p.key_bias_offset(b) : nullptr) {}
  // Past its sample: nothing to do, uniformly for all the CTA's threads.
  __device__ bool idle() const { return q0 >= N; }
  __device__ T* out_row(const BasicAttentionParams<T>& p, std::int64_t n) const {
    return p.out + p.out_offset(b) + n * p.out_token_stride + h * p.head_dim;
  }
};

template <class T, int HeadDim, bool Async>
__global__ void __launch_bounds__(MmaAttentionTiling<HeadDim>::kThreads)
    flash_attention_mma_kernel(BasicAttentionParams<T> p, int* status) {
  using Tl = MmaAttentionTiling<HeadDim>;
  using L = MmaLayout;
  constexpr int D = HeadDim, kLd = Tl::kLd, kKeys = Tl::kBlockK;
  constexpr int kKeyTiles = kKeys / 8, kDimTiles = D / 8;  // mma n tiles of S and of O
  T* smem = reinterpret_cast<T*>(dynamic_smem());
  T* const Qs = smem + Tl::kQOffset;
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;

  const FlashCta<T> cta(p, Tl::kBlockQ, status);
  if (cta.idle()) return;
  const std::int64_t N = cta.N, q0 = cta.q0, dim = cta.dim;
  const T* const base = cta.qkv;
  const float* const key_bias = cta.key_bias;

  // Rows [r0, r0 + 64) of the part at column `col` (0: Q, dim: K, 2 dim:
  // V) into a tile; zeros past the sequence and past head_dim (V rows past
  // N must be finite: their P is 0, and 0 * NaN is not).
  auto load_tile = [&](T* tile, std::int64_t r0, std::int64_t col) {
    if constexpr (Async) {
      for (int i = threadIdx.x; i < kKeys * Tl::kVectorsPerRow; i += Tl::kThreads) {
        const int r = i / Tl::kVectorsPerRow, c = (i % Tl::kVectorsPerRow) * Tl::kVector;
        const std::int64_t n = r0 + r;
        const bool live = n < N && c < p.head_dim;  // head_dim is whole vectors
        cp_async_16(tile + r * kLd + c, live ? base + n * p.qkv_token_stride + col + c : base, live ? 16 : 0);
      }
    } else {
      for (int i = threadIdx.x; i < kKeys * D; i += Tl::kThreads) {
        const int r = i / D, c = i % D;
        const std::int64_t n = r0 + r;
        tile[r * kLd + c] = n < N && c < p.head_dim ? base[n * p.qkv_token_stride + col + c] : from_float<T>(0.0f);
      }
    }
  };
  auto load_keys = [&](int stage, std::int64_t k0) {
    load_tile(smem + Tl::kKOffset + stage * Tl::kTileElems, k0, dim);
    load_tile(smem + Tl::kVOffset + stage * Tl::kTileElems, k0, 2 * dim);
    if constexpr (Async) cp_async_commit();
  };

  load_tile(Qs, q0, 0);
  load_keys(0, 0);  // one group: Q and the first K, V

  unsigned q_frag[D / 16][4];
  float o[kDimTiles][4] = {};
  // This lane's two rows, g = lane / 4 and g + 8 of the warp's 16; each
  // lane sums its own columns, the quad adds them up at the end.
  BasicOnlineSoftmax<true> row_softmax[2];
  const float scale = p.scale * kLog2e;
  const std::int64_t key_blocks = (N + kKeys - 1) / kKeys;

  for (std::int64_t kb = 0; kb < key_blocks; ++kb) {
    const int stage = int(kb % Tl::kStages);
    if (kb + 1 < key_blocks) {
      load_keys(stage ^ 1, (kb + 1) * kKeys);  // overlaps this block's math
      if constexpr (Async) cp_async_wait<1>();
    } else if constexpr (Async) {
      cp_async_wait<0>();
    }
    __syncthreads();  // this block's K, V (and at kb = 0, Q) are in for every thread
    const T* Ks = smem + Tl::kKOffset + stage * Tl::kTileElems;
    const T* Vs = smem + Tl::kVOffset + stage * Tl::kTileElems;
    if (kb == 0) {
#pragma unroll
      for (int k = 0; k < D / 16; ++k) {
        ldmatrix_x4(q_frag[k], Qs + (warp * 16 + L::ldsm_a_row(lane)) * kLd + k * 16 + L::ldsm_a_col(lane));
      }
    }

    // ---- S = Q K^T: 16 rows x 64 keys, 8 n tiles ---------------------------
    float s[kKeyTiles][4] = {};
#pragma unroll
    for (int j = 0; j < kKeyTiles / 2; ++j) {
#pragma unroll
      for (int k = 0; k < D / 16; ++k) {
        unsigned kf[4];
        ldmatrix_x4(kf, Ks + (j * 16 + L::ldsm_k_key(lane)) * kLd + k * 16 + L::ldsm_k_dim(lane));
        mma_16816<T>(s[2 * j], q_frag[k], kf[0], kf[1]);
        mma_16816<T>(s[2 * j + 1], q_frag[k], kf[2], kf[3]);
      }
    }

    // ---- online softmax on the accumulators, in log2 units -----------------
    const std::int64_t k0 = kb * kKeys;
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
      float block_max = -INFINITY;
#pragma unroll
      for (int j = 0; j < kKeyTiles; ++j) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int i = 2 * rr + e;
          const std::int64_t key = k0 + j * 8 + L::c_col(lane, i);
          float v = -INFINITY;
          if (key < N) v = s[j][i] * scale + (key_bias ? key_bias[key] * kLog2e : 0.0f);
          s[j][i] = v;
          block_max = fmaxf(block_max, v);
        }
      }
      block_max = fmaxf(block_max, __shfl_xor_sync(0xffffffffu, block_max, 1));
      block_max = fmaxf(block_max, __shfl_xor_sync(0xffffffffu, block_max, 2));
      const float factor = row_softmax[rr].fold(block_max);
#pragma unroll
      for (int j = 0; j < kKeyTiles; ++j) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const float w = row_softmax[rr].weight(s[j][2 * rr + e]);
          s[j][2 * rr + e] = w;
          row_softmax[rr].sum += w;
        }
      }
#pragma unroll
      for (int d = 0; d < kDimTiles; ++d) {
        o[d][2 * rr] *= factor;
        o[d][2 * rr + 1] *= factor;
      }
    }

    // ---- O += P V: P re-packed from S's accumulators ------------------------
#pragma unroll
    for (int kk = 0; kk < kKeys / 16; ++kk) {
      unsigned pa[4];
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        pa[r] = pack2<T>(s[L::p_tile(kk, r)][L::p_elem(r, 0)], s[L::p_tile(kk, r)][L::p_elem(r, 1)]);
      }
#pragma unroll
      for (int d = 0; d < kDimTiles / 2; ++d) {
        unsigned vf[4];
        ldmatrix_x4_trans(vf, Vs + (kk * 16 + L::ldsm_v_key(lane)) * kLd + d * 16 + L::ldsm_v_dim(lane));
        mma_16816<T>(o[2 * d], pa, vf[0], vf[1]);
        mma_16816<T>(o[2 * d + 1], pa, vf[2], vf[3]);
      }
    }
    __syncthreads();  // every warp is done with this stage before it is refilled
  }

#pragma unroll
  for (int rr = 0; rr < 2; ++rr) {
    float sum = row_softmax[rr].sum;
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    const std::int64_t n = q0 + warp * 16 + L::c_row(lane, 2 * rr);
    if (n >= N) continue;
    const float inv = 1.0f / sum;
    T* out = cta.out_row(p, n);
#pragma unroll
    for (int d = 0; d < kDimTiles; ++d) {
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int c = d * 8 + L::c_col(lane, 2 * rr + e);
        if (c < p.head_dim) out[c] = from_float<T>(o[d][2 * rr + e] * inv);
      }
    }
  }
}

}  // namespace cuda_detail
}  // namespace repshift
