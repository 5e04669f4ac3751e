#pragma once
// Multi-head self-attention on the CPU.
//
// flash_attention: FlashAttention's schedule on a CPU core. One task per
// (sample, head, block of kBlockQ queries); key/value blocks of kBlockK
// stream through an online softmax (running max m, running sum l, output
// rescaled by exp(m_old - m_new)). Memory is O(kBlockQ x head_dim) per
// thread: the N x N score matrix is never formed. Q K^T is computed
// against a transposed key block so both inner loops run unit-stride.
//
// attention_with_map: the plain path, materialising softmax(Q K^T) as
// [B, H, N, N] probabilities for attention-based baselines (CLS attention),
// then O = P V; both products go through BLAS.
//
// Input is the fused QKV projection as timm lays it out, per token
// [3][heads][head_dim]; the QKV bias is added here while blocks are loaded,
// so the QKV GEMM needs no epilogue pass. Output is [B, N, heads*head_dim].

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include <cblas.h>

#include "../error.hpp"
#include "../exec.hpp"
#include "math.hpp"
#include "parallel.hpp"

namespace repshift {

struct AttentionParams {
  const float* qkv = nullptr;       // [B, N, 3, H, Dh] with the strides below
  const float* qkv_bias = nullptr;  // [3, H, Dh] or null
  float* out = nullptr;             // [B, N, H*Dh]
  std::int64_t batch = 0, tokens = 0, heads = 0, head_dim = 0;
  std::int64_t qkv_batch_stride = 0, qkv_token_stride = 0;
  std::int64_t out_batch_stride = 0, out_token_stride = 0;
  float scale = 0.0f;  // usually 1/sqrt(head_dim)

  // Contiguous [B, N, 3C] input and [B, N, C] output.
  static AttentionParams contiguous(const float* qkv, const float* qkv_bias, float* out,
                                    std::int64_t batch, std::int64_t tokens, std::int64_t heads,
                                    std::int64_t head_dim) {
    AttentionParams p;
    p.qkv = qkv;
    p.qkv_bias = qkv_bias;
    p.out = out;
    p.batch = batch;
    p.tokens = tokens;
    p.heads = heads;
    p.head_dim = head_dim;
    const std::int64_t dim = heads * head_dim;
    p.qkv_token_stride = 3 * dim;
    p.qkv_batch_stride = tokens * 3 * dim;
    p.out_token_stride = dim;
    p.out_batch_stride = tokens * dim;
    p.scale = 1.0f / std::sqrt(float(head_dim));
    return p;
  }

  void check(const char* where) const {
    detail::require_pointer(where, "qkv", qkv);
    detail::require_pointer(where, "out", out);
    detail::require_positive(where, "batch", batch);
    detail::require_positive(where, "tokens", tokens);
    detail::require_positive(where, "heads", heads);
    detail::require_positive(where, "head_dim", head_dim);
    detail::checked_extent(where, "qkv", batch, tokens, 3 * heads * head_dim, sizeof(float));
    if (!(scale > 0.0f) || !std::isfinite(scale)) {
      detail::fail(where, "scale = " + std::to_string(scale) + " must be finite and > 0");
    }
  }
};

namespace cpu {

constexpr int kBlockQ = 32;
constexpr int kBlockK = 64;

namespace detail_attention {

// Scratch for one task, sized for head_dim once per call.
struct FlashScratch {
  std::int64_t head_dim;
  float* q;   // [kBlockQ][Dh], pre-scaled
  float* kt;  // [Dh][kBlockK], transposed key block
  float* v;   // [kBlockK][Dh]
  float* s;   // [kBlockQ][kBlockK]
  float* o;   // [kBlockQ][Dh]
  float* m;   // [kBlockQ]
  float* l;   // [kBlockQ]
  static std::int64_t floats(std::int64_t dh) {
    return kBlockQ * dh + dh * kBlockK + kBlockK * dh + kBlockQ * kBlockK + kBlockQ * dh + 2 * kBlockQ;
  }
  FlashScratch(float* base, std::int64_t dh) : head_dim(dh) {
    q = base;
    kt = q + kBlockQ * dh;
    v = kt + dh * kBlockK;
    s = v + kBlockK * dh;
    o = s + kBlockQ * kBlockK;
    m = o + kBlockQ * dh;
    l = m + kBlockQ;
  }
};

// Pointer to token n's part `which` (0 = q, 1 = k, 2 = v) of head h.
inline const float* qkv_row(const AttentionParams& p, std::int64_t b, std::int64_t n, int which,
                            std::int64_t h) {
  return p.qkv + b * p.qkv_batch_stride + n * p.qkv_token_stride + (which * p.heads + h) * p.head_dim;
}

inline const float* qkv_bias_row(const AttentionParams& p, int which, std::int64_t h) {
  return p.qkv_bias ? p.qkv_bias + (which * p.heads + h) * p.head_dim : nullptr;
}

inline void flash_task(const AttentionParams& p, std::int64_t b, std::int64_t h, std::int64_t q0,
                       FlashScratch& w) {
  const std::int64_t dh = w.head_dim;
  const int rows = int(std::min<std::int64_t>(kBlockQ, p.tokens - q0));
  const float* qb = qkv_bias_row(p, 0, h);
  const float* kb = qkv_bias_row(p, 1, h);
  const float* vb = qkv_bias_row(p, 2, h);

  for (int r = 0; r < rows; ++r) {
    const float* src = qkv_row(p, b, q0 + r, 0, h);
    float* dst = w.q + r * dh;
    for (std::int64_t d = 0; d < dh; ++d) dst[d] = (src[d] + (qb ? qb[d] : 0.0f)) * p.scale;
    w.m[r] = -INFINITY;
    w.l[r] = 0.0f;
  }
  std::fill(w.o, w.o + kBlockQ * dh, 0.0f);

  for (std::int64_t k0 = 0; k0 < p.tokens; k0 += kBlockK) {
    const int cols = int(std::min<std::int64_t>(kBlockK, p.tokens - k0));
    for (int c = 0; c < cols; ++c) {
      const float* ks = qkv_row(p, b, k0 + c, 1, h);
      const float* vs = qkv_row(p, b, k0 + c, 2, h);
      float* vd = w.v + c * dh;
      for (std::int64_t d = 0; d < dh; ++d) {
        w.kt[d * kBlockK + c] = ks[d] + (kb ? kb[d] : 0.0f);
        vd[d] = vs[d] + (vb ? vb[d] : 0.0f);
      }
    }
    // Zero padding keeps the fixed-width loops below free of NaN garbage.
    for (int c = cols; c < kBlockK; ++c) {
      for (std::int64_t d = 0; d < dh; ++d) w.kt[d * kBlockK + c] = 0.0f;
      std::fill(w.v + c * dh, w.v + (c + 1) * dh, 0.0f);
    }

    for (int r = 0; r < rows; ++r) {
      // s = q_r . K^T over the full block width (unit-stride in c).
      float s[kBlockK];
      for (int c = 0; c < kBlockK; ++c) s[c] = 0.0f;
      const float* q = w.q + r * dh;
      for (std::int64_t d = 0; d < dh; ++d) {
        const float qd = q[d];
        const float* kt = w.kt + d * kBlockK;
        for (int c = 0; c < kBlockK; ++c) s[c] += qd * kt[c];
      }
      float block_max = -INFINITY;
      for (int c = 0; c < cols; ++c) block_max = std::max(block_max, s[c]);
      const float m_new = std::max(w.m[r], block_max);
      const float alpha = exp_approx(w.m[r] - m_new);  // exp(-inf) = 0 on the first block
      float row_sum = 0.0f;
      for (int c = 0; c < kBlockK; ++c) {
        s[c] = c < cols ? exp_approx(s[c] - m_new) : 0.0f;
        row_sum += s[c];
      }
      w.l[r] = w.l[r] * alpha + row_sum;
      w.m[r] = m_new;
      float* o = w.o + r * dh;
      for (std::int64_t d = 0; d < dh; ++d) o[d] *= alpha;
      for (int c = 0; c < cols; ++c) {
        const float pc = s[c];
        const float* v = w.v + c * dh;
        for (std::int64_t d = 0; d < dh; ++d) o[d] += pc * v[d];
      }
    }
  }

  for (int r = 0; r < rows; ++r) {
    const float inv = 1.0f / w.l[r];
    float* dst = p.out + b * p.out_batch_stride + (q0 + r) * p.out_token_stride + h * dh;
    const float* o = w.o + r * dh;
    for (std::int64_t d = 0; d < dh; ++d) dst[d] = o[d] * inv;
  }
}

}  // namespace detail_attention

inline void flash_attention(const Host& host, const AttentionParams& p) {
  p.check("flash_attention");
  using detail_attention::FlashScratch;
  const int threads = thread_count(host);
  const std::int64_t per_thread = FlashScratch::floats(p.head_dim);
  std::vector<float> scratch(std::size_t(threads) * std::size_t(per_thread));
  const std::int64_t q_blocks = (p.tokens + kBlockQ - 1) / kBlockQ;
  const std::int64_t tasks = p.batch * p.heads * q_blocks;

#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (std::int64_t t = 0; t < tasks; ++t) {
    FlashScratch w(scratch.data() + std::int64_t(thread_index()) * per_thread, p.head_dim);
    const std::int64_t qb = t % q_blocks, bh = t / q_blocks;
    detail_attention::flash_task(p, bh / p.heads, bh % p.heads, qb * kBlockQ, w);
  }
}

// probs: [B, H, N, N] softmax(scale Q K^T) rows, written and returned.
inline void attention_with_map(const Host& host, const AttentionParams& p, float* probs) {
  p.check("attention_with_map");
  repshift::detail::require_pointer("attention_with_map", "probs", probs);
  repshift::detail::checked_extent("attention_with_map", "probs", p.batch * p.heads, p.tokens,
                                   p.tokens, sizeof(float));
  const std::int64_t n = p.tokens, dh = p.head_dim;
  // Q, K, V with bias, head-major: [3][B][H][N][Dh].
  std::vector<float> qkv(std::size_t(3 * p.batch * p.heads * n * dh));
  auto plane = [&](int which, std::int64_t b, std::int64_t h) {
    return qkv.data() + (((which * p.batch + b) * p.heads + h) * n) * dh;
  };
  const int threads = thread_count(host);
#pragma omp parallel for num_threads(threads)
  for (std::int64_t bn = 0; bn < p.batch * n; ++bn) {
    const std::int64_t b = bn / n, t = bn % n;
    for (int which = 0; which < 3; ++which) {
      for (std::int64_t h = 0; h < p.heads; ++h) {
        const float* src = detail_attention::qkv_row(p, b, t, which, h);
        const float* bias = detail_attention::qkv_bias_row(p, which, h);
        float* dst = plane(which, b, h) + t * dh;
        for (std::int64_t d = 0; d < dh; ++d) dst[d] = src[d] + (bias ? bias[d] : 0.0f);
      }
    }
  }
  for (std::int64_t b = 0; b < p.batch; ++b) {
    for (std::int64_t h = 0; h < p.heads; ++h) {
      float* s = probs + (b * p.heads + h) * n * n;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(n), int(n), int(dh), p.scale,
                  plane(0, b, h), int(dh), plane(1, b, h), int(dh), 0.0f, s, int(n));
    }
  }
#pragma omp parallel for num_threads(threads)
  for (std::int64_t row = 0; row < p.batch * p.heads * n; ++row) {
    float* s = probs + row * n;
    const float mx = *std::max_element(s, s + n);
    float sum = 0.0f;
    for (std::int64_t c = 0; c < n; ++c) {
      s[c] = exp_approx(s[c] - mx);
      sum += s[c];
    }
    const float inv = 1.0f / sum;
    for (std::int64_t c = 0; c < n; ++c) s[c] *= inv;
  }
  for (std::int64_t b = 0; b < p.batch; ++b) {
    for (std::int64_t h = 0; h < p.heads; ++h) {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(n), int(dh), int(n), 1.0f,
                  probs + (b * p.heads + h) * n * n, int(n), plane(2, b, h), int(dh), 0.0f,
                  p.out + b * p.out_batch_stride + h * dh, int(p.out_token_stride));
    }
  }
}

}  // namespace cpu
}  // namespace repshift
