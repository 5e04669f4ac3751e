#pragma once
// Multi-head self-attention on the GPU.
//
// flash_attention: FlashAttention's schedule, so the N x N matrix is
// never formed. f16 / bf16 run on tensor cores (cuda/flash_attention_mma.cuh:
// mma.sync with Q and O in registers, K/V by cp.async, double-buffered).
// f32 runs the kernel below with FMA loops (exact f32, as the CPU path):
// one CTA per (64 queries, head, sample), four warps of 16 query rows; K
// and V stream through shared memory 64 keys at a time and an online
// softmax (running max and sum per row, cuda/attention_tiling.hpp)
// rescales the output rows. head_dim runs in a compiled bucket of 32, 64
// or 128, zero padded (attention_head_bucket).
//
// attention_with_map: the plain path for attention-based baselines
// (ClsAttention): one CTA per query row writes its softmax row to a
// [B, H, N, N] f32 map, then O = P V from it. It costs O(N^2) memory
// traffic, which is the point of measuring it.
//
// Input is the QKV projection with its bias already added (cuBLASLt's
// epilogue), per token [3][heads][head_dim]; output [B, N, heads*head_dim].
// key_bias (optional, f32 [B, N]) is added to every logit of key n after
// scaling: log(token size) gives ToMe's proportional attention.
// Packed batches: cu_seqlens is device memory and `tokens` must be the
// longest sample; a longer one is cut to `tokens` (no access outside the
// buffers) and recorded in exec.status (code 6, rs::cuda::throw_if_status).

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "../params/attention.hpp"
#include "../core/error.hpp"
#include "attention_tiling.hpp"
#include "dtype.cuh"
#include "error.cuh"
#include "exec.cuh"
#include "flash_attention_mma.cuh"
#include "shared_memory.cuh"
#include "warp_reduce.cuh"

namespace repshift {
namespace cuda_detail {

template <int HeadDim>
__global__ void __launch_bounds__(SimtAttentionTiling<HeadDim>::kThreads)
    flash_attention_f32_kernel(BasicAttentionParams<float> p, int* status) {
  using Tl = SimtAttentionTiling<HeadDim>;
  constexpr int D = HeadDim, kKeys = Tl::kBlockK, kRows = Tl::kRowsPerWarp;
  unsigned char* smem = dynamic_smem();
  float* Qs = reinterpret_cast<float*>(smem + Tl::kQOffset);
  float* Ks = reinterpret_cast<float*>(smem + Tl::kKOffset);
  float* Vs = reinterpret_cast<float*>(smem + Tl::kVOffset);
  const int warp = threadIdx.x / cuda_detail::kWarp, lane = threadIdx.x % cuda_detail::kWarp;
  float* S = reinterpret_cast<float*>(smem + Tl::kSOffset) + warp * kRows * Tl::kLdS;
  float* O = reinterpret_cast<float*>(smem + Tl::kOOffset) + warp * kRows * Tl::kLdO;

  const FlashCta<float> cta(p, Tl::kBlockQ, status);
  if (cta.idle()) return;
  const std::int64_t N = cta.N, q0 = cta.q0, dim = cta.dim;
  const float* const base = cta.qkv;
  const float* const key_bias = cta.key_bias;

  // rows [r0, r0 + 64) of the part at column offset `col` (0: Q, dim: K,
  // 2 dim: V), zero past the sequence and past head_dim.
  auto load_tile = [&](float* dst, std::int64_t r0, std::int64_t col) {
    for (int i = threadIdx.x; i < kKeys * D; i += Tl::kThreads) {
      const int r = i / D, c = i % D;
      const std::int64_t n = r0 + r;
      dst[r * Tl::kLdQkv + c] = n < N && c < p.head_dim ? base[n * p.qkv_token_stride + col + c] : 0.0f;
    }
  };

  load_tile(Qs, q0, 0);
  for (int i = lane; i < kRows * Tl::kLdO; i += cuda_detail::kWarp) O[i] = 0.0f;
  // Lane pairs own a query row, each lane every other key and column
  // (attention_tiling.hpp: the *_word maps keep every access conflict free).
  const float* const Qw = Qs + warp * kRows * Tl::kLdQkv;
  cuda_detail::OnlineSoftmax softmax;

  for (std::int64_t k0 = 0; k0 < N; k0 += kKeys) {
    __syncthreads();  // every warp is done with the previous K, V
    load_tile(Ks, k0, dim);
    load_tile(Vs, k0, 2 * dim);
    __syncthreads();

    // ---- S = Q K^T for this warp's 16 rows --------------------------------
    {
      float s[Tl::kKeysPerLane] = {};
      for (int c = 0; c < D; ++c) {
        const float qc = Qw[Tl::q_word(lane, c)];
#pragma unroll
        for (int i = 0; i < Tl::kKeysPerLane; ++i) s[i] += qc * Ks[Tl::k_word(lane, i, c)];
      }
#pragma unroll
      for (int i = 0; i < Tl::kKeysPerLane; ++i) S[Tl::s_word(lane, i)] = s[i];
    }
    __syncwarp();

    // ---- online softmax over this block's 64 keys -------------------------
    float logit[Tl::kKeysPerLane];
    float block_max = -INFINITY;
#pragma unroll
    for (int i = 0; i < Tl::kKeysPerLane; ++i) {
      const std::int64_t key = k0 + Tl::key_of(lane, i);
      float v = -INFINITY;
      if (key < N) {
        v = S[Tl::s_word(lane, i)] * p.scale;
        if (key_bias) v += key_bias[key];
      }
      logit[i] = v;
      block_max = fmaxf(block_max, v);
    }
    block_max = fmaxf(block_max, __shfl_xor_sync(0xffffffffu, block_max, 1));
    const float factor = softmax.fold(block_max);
    float row_sum = 0.0f;
#pragma unroll
    for (int i = 0; i < Tl::kKeysPerLane; ++i) {
      const float w = softmax.weight(logit[i]);
      row_sum += w;
      S[Tl::s_word(lane, i)] = w;
    }
    softmax.sum += row_sum + __shfl_xor_sync(0xffffffffu, row_sum, 1);
    for (int i = 0; i < Tl::kColumnsPerLane; ++i) O[Tl::o_word(lane, i)] *= factor;
    __syncwarp();

    // ---- O += P V ----------------------------------------------------------
    for (int i = 0; i < Tl::kColumnsPerLane; ++i) {
      float acc = O[Tl::o_word(lane, i)];
#pragma unroll 8
      for (int j = 0; j < kKeys; ++j) acc += S[Tl::p_word(lane, j)] * Vs[Tl::v_word(lane, j, i)];
      O[Tl::o_word(lane, i)] = acc;
    }
    __syncwarp();
  }

  const std::int64_t n = q0 + warp * kRows + Tl::pair_row(lane);
  if (n >= N) return;
  const float inv = 1.0f / softmax.sum;
  float* out = cta.out_row(p, n);
  for (int i = 0; i < Tl::kColumnsPerLane; ++i) {
    const int c = Tl::column_of(lane, i);
    if (c < p.head_dim) out[c] = O[Tl::o_word(lane, i)] * inv;
  }
}

// f32: the FMA kernel; f16 / bf16: the tensor-core kernel, its 16-byte
// cp.async loads where qkv allows them.
template <class T, int HeadDim>
void launch_flash_attention(const Cuda& exec, const BasicAttentionParams<T>& p) {
  // One CTA per (block_q queries, head, sample).
  auto launch = [&](auto* kernel, int block_q, int threads, int shared_bytes) {
    const dim3 grid(cuda_detail::grid_blocks("cuda::flash_attention", "tokens", p.tokens, block_q), unsigned(p.heads),
                    unsigned(p.batch));
    if constexpr (!std::is_same_v<T, float>) {
      require_sm80_code("cuda::flash_attention (f16 / bf16)", reinterpret_cast<const void*>(kernel));
    }
    allow_dynamic_smem(kernel, shared_bytes, "cudaFuncSetAttribute(flash_attention, MaxDynamicSharedMemorySize)");
    kernel<<<grid, threads, shared_bytes, exec.stream>>>(p, exec.status);
    check_launch("flash_attention");
  };
  if constexpr (std::is_same_v<T, float>) {
    using Tl = SimtAttentionTiling<HeadDim>;
    launch(&flash_attention_f32_kernel<HeadDim>, Tl::kBlockQ, Tl::kThreads, Tl::kSharedBytes);
  } else {
    using Tl = MmaAttentionTiling<HeadDim>;
    // The one runtime -> template switch: 16-byte async loads or element loads.
    // Packed batches place samples by cu_seqlens: their batch stride is unused.
    const std::int64_t batch_stride = p.cu_seqlens ? 0 : p.qkv_batch_stride;
    const bool async = rows_vectorisable<T>(address_bits(p.qkv), p.head_dim, batch_stride, p.qkv_token_stride);
    launch(async ? &flash_attention_mma_kernel<T, HeadDim, true> : &flash_attention_mma_kernel<T, HeadDim, false>,
           Tl::kBlockQ, Tl::kThreads, Tl::kSharedBytes);
  }
}

constexpr int kMapThreads = 128;

// One CTA per (query n, head h, sample b): map row = softmax(q K^T), then
// out row = map row . V. The map is [B, H, T, T] with T = p.tokens; a
// packed sample of N < T tokens fills its N x N top-left, the rest 0.
// Both products read K and V rows whole (coalesced): a warp per key, its
// lanes across the channels, for the scores; thread groups of Dh threads,
// each over every groups-th key, for P V.
template <class T>
__global__ void __launch_bounds__(kMapThreads) attention_with_map_kernel(BasicAttentionParams<T> p, float* map, int* status) {
  static_assert(kMapThreads >= 128, "one thread per channel of the largest head (128)");
  __shared__ float q[128];
  __shared__ float scratch[32];
  __shared__ float partial[kMapThreads];
  constexpr int kWarps = kMapThreads / kWarp;
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const std::int64_t n = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const std::int64_t N = checked_queries(p, b, status), ld = p.tokens, dim = p.heads * p.head_dim;
  const int Dh = int(p.head_dim);  // at most 128 (check_device_attention)
  float* row = map + ((b * p.heads + h) * ld + n) * ld;
  for (std::int64_t j = (n < N ? N : 0) + threadIdx.x; j < ld; j += kMapThreads) row[j] = 0.0f;
  if (n >= N) return;  // uniform for the CTA
  const T* base = p.qkv + p.qkv_offset(b) + h * Dh;
  const float* key_bias = p.key_bias ? p.key_bias + p.key_bias_offset(b) : nullptr;
  for (int c = threadIdx.x; c < Dh; c += kMapThreads) q[c] = to_float(base[n * p.qkv_token_stride + c]) * p.scale;
  __syncthreads();
  float local_max = -INFINITY;
  for (std::int64_t j = warp; j < N; j += kWarps) {
    const T* k = base + j * p.qkv_token_stride + dim;
    float s = 0.0f;
    for (int c = lane; c < Dh; c += kWarp) s += q[c] * to_float(k[c]);
    s = warp_sum(s);  // every lane holds the dot product
    if (key_bias) s += key_bias[j];
    if (lane == 0) row[j] = s;
    local_max = fmaxf(local_max, s);
  }
  const float max = block_reduce<true>(local_max, scratch);  // its barrier publishes row to every thread
  float local_sum = 0.0f;
  for (std::int64_t j = threadIdx.x; j < N; j += kMapThreads) {
    const float e = expf(row[j] - max);
    row[j] = e;
    local_sum += e;
  }
  const float inv = 1.0f / block_reduce<false>(local_sum, scratch);
  for (std::int64_t j = threadIdx.x; j < N; j += kMapThreads) row[j] *= inv;
  __syncthreads();  // the whole row is normalised before any thread reads it
  const int groups = kMapThreads / Dh, group = threadIdx.x / Dh, c = threadIdx.x % Dh;
  if (group < groups) {
    float acc = 0.0f;
    for (std::int64_t j = group; j < N; j += groups) acc += row[j] * to_float(base[j * p.qkv_token_stride + 2 * dim + c]);
    partial[threadIdx.x] = acc;
  }
  __syncthreads();
  if (threadIdx.x < Dh) {
    float acc = partial[threadIdx.x];
    for (int g = 1; g < groups; ++g) acc += partial[g * Dh + threadIdx.x];
    T* out = p.out + p.out_offset(b) + n * p.out_token_stride + h * Dh;
    out[threadIdx.x] = from_float<T>(acc);
  }
}

}  // namespace cuda_detail

namespace cuda {

// What the CUDA kernels add to check_shape: no qkv bias (the QKV GEMM adds
// it), no key lengths (packed batches instead: cu_seqlens, device memory,
// p.tokens the longest sample), grid limits, the head-dim bucket.
template <class T>
void check_device_attention(const char* where, const BasicAttentionParams<T>& p) {
  p.check_shape(where);
  if (p.qkv_bias) detail::fail(where, "qkv_bias is not taken on CUDA: add it in the QKV GEMM (cuda::Blas::linear's bias)");
  if (p.key_lengths) detail::fail(where, "key_lengths (padded batches) are CPU-only: pack the batch (cu_seqlens)");
  detail::require_at_most(where, "batch", p.batch, "65535 (CUDA grid z)", 65535);
  detail::require_at_most(where, "heads", p.heads, "65535 (CUDA grid y)", 65535);
  if (cuda_detail::attention_head_bucket(p.head_dim) == 0) {
    detail::fail(where, "head_dim = {} is not supported on CUDA (at most 128)", p.head_dim);
  }
}

template <class T>
void flash_attention(const Cuda& exec, const BasicAttentionParams<T>& p) {
  check_device_attention("cuda::flash_attention", p);
  if constexpr (!std::is_same_v<T, float>) cuda_detail::require_sm80("cuda::flash_attention (f16 / bf16)");
  // The one runtime -> template switch: the head-dim bucket.
  switch (cuda_detail::attention_head_bucket(p.head_dim)) {
    case 32: return cuda_detail::launch_flash_attention<T, 32>(exec, p);
    case 64: return cuda_detail::launch_flash_attention<T, 64>(exec, p);
    default: return cuda_detail::launch_flash_attention<T, 128>(exec, p);
  }
}

// map: [B, H, N, N] f32 attention probabilities (device).
template <class T>
void attention_with_map(const Cuda& exec, const BasicAttentionParams<T>& p, float* map) {
  check_device_attention("cuda::attention_with_map", p);
  detail::require_pointer("cuda::attention_with_map", "map", map);
  detail::checked_extent("cuda::attention_with_map", "map", p.batch * p.heads, p.tokens, p.tokens, sizeof(float));
  detail::require_at_most("cuda::attention_with_map", "tokens", p.tokens, "2^31 - 1 (CUDA grid x)", 0x7fffffff);
  const dim3 grid(unsigned(p.tokens), unsigned(p.heads), unsigned(p.batch));
  cuda_detail::attention_with_map_kernel<T><<<grid, cuda_detail::kMapThreads, 0, exec.stream>>>(p, map, exec.status);
  cuda_detail::check_launch("attention_with_map_kernel");
}

}  // namespace cuda
}  // namespace repshift
