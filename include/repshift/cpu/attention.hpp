#pragma once
// Multi-head self-attention on the CPU.
//
// flash_attention: FlashAttention's schedule on a CPU core. One task per
// (sample, head); blocks of kBlockQ queries stream over key/value blocks
// through an online softmax (running max m, running sum l, output
// rescaled by exp(m_old - m_new)). Memory is O(N x head_dim) per thread
// (the head's K^T and V, prepared once): the N x N score matrix is never
// formed. Each key block's K^T is packed contiguous, so Q K^T and P V are
// both small GEMMs on register tiles (gemm_tile.hpp) for any head_dim, and
// a power-of-two sequence length cannot alias the rows of a block onto the
// same cache sets. Up to kWholeKeys keys are one block (an image's
// tokens): one softmax pass, no rescaling of O and no ragged last block.
// The logits are taken in base 2 (Q and the key bias scaled by log2 e as
// they are prepared), so the softmax's exponential, about a fifth of the
// kernel at 2352 tokens (AVX2), is a bare 2^x (exp2_nonpositive): 21
// instructions per vector instead of exp's 29.
//
// attention_with_map: the plain path, materialising softmax(Q K^T) as
// [B, H, N, N] probabilities for attention-based baselines (CLS attention),
// then O = P V; both products go through cpu::sgemm (OpenBLAS or oneDNN).
//
// key_lengths (optional, per sample) masks padding keys, as a BERT
// attention mask does; padded query rows are still computed (over the
// valid keys) and left for the caller to ignore. cu_seqlens (optional)
// packs samples of different lengths instead (FlashAttention's varlen): a
// sample's queries see only its keys, and padding costs nothing.
//
// key_bias (optional, [B, N] or packed [total]) is added to every query's logit for key n:
// log(token size) gives ToMe's proportional attention for merged tokens.
//
// Input is the fused QKV projection as timm lays it out, per token
// [3][heads][head_dim]; the QKV bias is added here while blocks are loaded,
// so the QKV GEMM needs no epilogue pass. Output is [B, N, heads*head_dim].
//
// flash_attention's per-(sample, head) kernel is target/flash_head.inl,
// compiled for each x86 ISA (simd_targets.hpp); the copy runs that this
// CPU runs best (cpu_isa.hpp).

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <memory>
#include <new>
#include <vector>

#include "../params/attention.hpp"
#include "../core/error.hpp"
#include "../core/exec.hpp"
#include "cpu_isa.hpp"
#include "flash_attention_amx.hpp"
#include "gemm.hpp"
#include "math.hpp"
#include "parallel.hpp"
#include "simd_targets.hpp"

namespace repshift {

namespace cpu {

namespace detail {

// The calling thread's flash scratch, at least `floats` long. It outlives
// the call, so a forward reuses it layer after layer: a fresh zeroed
// vector per call (0.5 MiB at DeiT-S's shape) went to mmap, page faults
// and memset every layer. Grows, never shrinks; each OpenMP worker has its
// own, so forwards running at once on different threads share none.
inline float* flash_scratch(std::int64_t floats) {
  thread_local std::unique_ptr<float[]> buffer;
  thread_local std::int64_t capacity = 0;
  if (capacity < floats) {
    buffer.reset();  // the old one first: peak memory one buffer, not two
    capacity = 0;    // and none held if the next line throws
    buffer.reset(new float[std::size_t(floats)]);
    capacity = floats;
  }
  return buffer.get();
}

}  // namespace detail

// isa: the vector copy to run, capped at what this CPU runs (default: the
// best, within REPSHIFT_MAX_CPU_ISA); tests compare every copy against the
// reference on one machine.
// With host.dense_math = Bf16 on a CPU with AMX (and isa AVX-512), the
// products run on AMX tiles in bfloat16 (flash_attention_amx.hpp).
inline void flash_attention(const Host& host, const AttentionParams& p, CpuIsa isa = active_cpu_isa()) {
  p.check("flash_attention");
  // Packed, `tokens` only bounds the samples: the scratch is sized for the
  // longest, and each task lays it out for its own sample.
  const std::int64_t longest = p.cu_seqlens ? max_seqlen(p.cu_seqlens, p.batch) : p.tokens;
  const int threads = thread_count(host);
  bool out_of_memory = false;
  // Every (sample, head) task on the host's threads, each with its thread's scratch.
  auto run_tasks = [&](std::int64_t scratch_floats, auto task) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (std::int64_t bh = 0; bh < p.batch * p.heads; ++bh) {
      float* scratch = nullptr;
      try {  // an exception must not leave the OpenMP region: it would terminate the process
        scratch = detail::flash_scratch(scratch_floats);
      } catch (const std::bad_alloc&) {  // scratch stays null: reported after the region
      }
      if (scratch) {
        task(bh, scratch);
      } else {
#pragma omp atomic write
        out_of_memory = true;
      }
    }
  };
#if REPSHIFT_AMX_KERNELS
  if (dense_math(host, "flash_attention") == DenseMath::Bf16 && isa == CpuIsa::Avx512 &&
      amx_attention_supports(p.head_dim) && amx_bf16_usable()) {
    run_tasks((amx_flash_scratch_bytes(longest, p.head_dim) + 3) / 4,
              [&](std::int64_t bh, float* scratch) { amx_flash_task(p, bh, scratch); });
    if (out_of_memory) throw std::bad_alloc();
    return;
  }
#endif
  with_cpu_target(isa, [&](auto target) {
    run_tasks(flash_scratch_floats(target, longest, p.head_dim),
              [&](std::int64_t bh, float* scratch) { flash_task(target, p, bh, scratch); });
  });
  if (out_of_memory) throw std::bad_alloc();
}

// probs: [B, H, N, N] softmax(scale Q K^T) rows, written and returned.
// Packed: sample b's map is the top-left n_b x n_b of its [N, N] planes
// (N the longest sample), the rest 0.
inline void attention_with_map(const Host& host, const AttentionParams& p, float* probs) {
  p.check("attention_with_map");
  repshift::detail::require_pointer("attention_with_map", "probs", probs);
  repshift::detail::checked_extent("attention_with_map", "probs", p.batch * p.heads, p.tokens,
                                   p.tokens, sizeof(float));
  // The GEMMs take int leading dimensions (the flash path strides in 64 bits).
  repshift::detail::require_at_most("attention_with_map", "out_token_stride", p.out_token_stride,
                                    "INT_MAX (the GEMM's ldc)", INT_MAX);
  const std::int64_t n = p.tokens, dh = p.head_dim;
  // Q, K, V with bias, head-major: [3][B][H][N][Dh].
  std::vector<float> qkv(std::size_t(3 * p.batch * p.heads * n * dh));
  auto plane = [&](int which, std::int64_t b, std::int64_t h) {
    return qkv.data() + (((which * p.batch + b) * p.heads + h) * n) * dh;
  };
  const SgemmLibrary library = sgemm_library();
  const int threads = thread_count(host);
#pragma omp parallel for num_threads(threads)
  for (std::int64_t bn = 0; bn < p.batch * n; ++bn) {
    const std::int64_t b = bn / n, t = bn % n;
    if (t >= p.queries(b)) continue;
    for (int which = 0; which < 3; ++which) {
      for (std::int64_t h = 0; h < p.heads; ++h) {
        const float* src = detail::qkv_row(p, b, t, which, h);
        const float* bias = detail::qkv_bias_row(p, which, h);
        float* dst = plane(which, b, h) + t * dh;
        for (std::int64_t d = 0; d < dh; ++d) dst[d] = src[d] + (bias ? bias[d] : 0.0f);
      }
    }
  }
  for (std::int64_t b = 0; b < p.batch; ++b) {
    const std::int64_t rows = p.queries(b);
    for (std::int64_t h = 0; h < p.heads; ++h) {
      float* s = probs + (b * p.heads + h) * n * n;
      if (rows < n) std::fill(s, s + n * n, 0.0f);
      if (rows == 0) continue;
      sgemm_on(host, library, true, int(rows), int(rows), int(dh), p.scale, plane(0, b, h), int(dh), plane(1, b, h),
               int(dh), 0.0f, s, int(n));
    }
  }
#pragma omp parallel for num_threads(threads)
  for (std::int64_t row = 0; row < p.batch * p.heads * n; ++row) {
    float* s = probs + row * n;
    const std::int64_t b = row / (p.heads * n), keys = p.keys(b);
    if (row % n >= p.queries(b)) continue;  // past a packed sample: stays 0
    if (p.key_bias) {
      const float* bias = p.key_bias + p.key_bias_offset(b);
      for (std::int64_t c = 0; c < keys; ++c) s[c] += bias[c];
    }
    std::fill(s + keys, s + n, 0.0f);  // masked keys: probability 0
    const float mx = *std::max_element(s, s + keys);
    vfloat lanes{};
    std::int64_t c = 0;
    for (; c + kVec <= keys; c += kVec) {
      const vfloat e = exp_approx(loadv(s + c) - mx);
      storev(s + c, e);
      lanes += e;
    }
    float sum = hsum(lanes);
    for (; c < keys; ++c) {
      s[c] = exp_approx(s[c] - mx);
      sum += s[c];
    }
    const float inv = 1.0f / sum;
    for (c = 0; c < keys; ++c) s[c] *= inv;
  }
  for (std::int64_t b = 0; b < p.batch; ++b) {
    const std::int64_t rows = p.queries(b);
    if (rows == 0) continue;
    for (std::int64_t h = 0; h < p.heads; ++h) {
      sgemm_on(host, library, false, int(rows), int(dh), int(rows), 1.0f, probs + (b * p.heads + h) * n * n, int(n),
               plane(2, b, h), int(dh), 0.0f, p.out + p.out_offset(b) + h * dh, int(p.out_token_stride));
    }
  }
}

}  // namespace cpu
}  // namespace repshift
