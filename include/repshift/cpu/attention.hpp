#pragma once
// Multi-head self-attention on the CPU.
//
// flash_attention: FlashAttention's schedule on a CPU core. One task per
// (sample, head); blocks of kBlockQ queries stream over key/value blocks
// of kBlockK through an online softmax (running max m, running sum l,
// output rescaled by exp(m_old - m_new)). Memory is O(N x head_dim) per
// thread (the head's K^T and V, prepared once): the N x N score matrix is
// never formed. Each key block's K^T is packed contiguous, so Q K^T and
// P V are both small GEMMs on register tiles (gemm_tile.hpp) for any
// head_dim, and a power-of-two sequence length cannot alias the rows of a
// block onto the same cache sets.
//
// attention_with_map: the plain path, materialising softmax(Q K^T) as
// [B, H, N, N] probabilities for attention-based baselines (CLS attention),
// then O = P V; both products go through BLAS.
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

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include <cblas.h>

#include "../params/attention.hpp"
#include "../core/error.hpp"
#include "../core/exec.hpp"
#include "gemm_tile.hpp"
#include "math.hpp"
#include "parallel.hpp"

namespace repshift {

namespace cpu {

// Queries per block (whole register tiles) and keys per block: one key
// block's K^T (64 x Dh floats, 16 KiB at Dh = 64) stays in L1 while every
// query tile of the block streams past it, and so does its V.
constexpr int kBlockQ = 16 * detail::kTileRows;
static_assert(kBlockQ % kVec == 0, "the softmax's per-row state is whole vectors");
constexpr int kBlockK = 64;
static_assert(kBlockK % (detail::kTileVecs * kVec) == 0, "key block must be whole register tiles");

namespace detail {

// Scratch for one (sample, head) task: Q, K^T and V of the whole sequence
// (bias added, prepared in one pass and reused by every block) and one
// query block's state. O(N x head_dim) floats, never N x N.
struct FlashScratch {
  std::int64_t head_dim, head_dim_padded;
  float* kt;     // [key blocks][Dh][kBlockK]: each key block's K^T contiguous, zero past N
  float* v;      // [N][Dh padded to whole vectors], zero past Dh
  float* q;      // [N][Dh], pre-scaled
  float* o;      // [kBlockQ][Dh padded]
  float* s;      // [kBlockQ][kBlockK]: scores, then probabilities
  float* m;      // [kBlockQ] running max
  float* l;      // [kBlockQ][kVec] running sum, in partial lanes
  float* alpha;  // [kBlockQ] rescale of o at this key block
  float* bias;   // [key blocks * kBlockK] key_bias of the sample, zero past N
  static std::int64_t keys_padded(std::int64_t n) { return (n + kBlockK - 1) / kBlockK * kBlockK; }
  static std::int64_t vectors(std::int64_t dh) { return (dh + kVec - 1) / kVec; }
  static std::int64_t floats(std::int64_t n, std::int64_t dh) {
    const std::int64_t dp = vectors(dh) * kVec;
    return dh * keys_padded(n) + n * (dp + dh) + kBlockQ * (dp + kBlockK + kVec + 2) + keys_padded(n);
  }
  FlashScratch(float* base, std::int64_t n, std::int64_t dh) : head_dim(dh), head_dim_padded(vectors(dh) * kVec) {
    kt = base;
    v = kt + dh * keys_padded(n);
    q = v + n * head_dim_padded;
    o = q + n * dh;
    s = o + kBlockQ * head_dim_padded;
    m = s + kBlockQ * kBlockK;
    l = m + kBlockQ;
    alpha = l + kBlockQ * kVec;
    bias = alpha + kBlockQ;
  }
};

// Pointer to token n's part `which` (0 = q, 1 = k, 2 = v) of head h.
inline const float* qkv_row(const AttentionParams& p, std::int64_t b, std::int64_t n, int which,
                            std::int64_t h) {
  return p.qkv + p.qkv_offset(b) + n * p.qkv_token_stride + (which * p.heads + h) * p.head_dim;
}

inline const float* qkv_bias_row(const AttentionParams& p, int which, std::int64_t h) {
  return p.qkv_bias ? p.qkv_bias + (which * p.heads + h) * p.head_dim : nullptr;
}

// One online-softmax step for `rows` query rows over one key block.
// s[r][0..kBlockK): raw scores, the first `cols` real; bias: the keys'
// bias (null: none). Afterwards s holds the block's unnormalised
// probabilities exp(s - m_new) (~0 past cols: at most 1.2e-38, which the
// P V product skips and l cannot register), m the new running max, alpha
// exp(m_old - m_new), by which o must be rescaled, and l_lanes the running
// sum of each row, kept as kVec partial lanes so that the horizontal sum
// runs once per query block and not once per key block. alpha's exp runs
// across rows, vector by vector.
inline void online_softmax_block(float* s, int rows, const float* bias, int cols, float* m, float* l_lanes,
                                 float* alpha) {
  for (int r = 0; r < rows; ++r) {
    float* row = s + r * kBlockK;
    vfloat mx = broadcast<vfloat>(-INFINITY);
    for (int c = 0; c < kBlockK; c += kVec) {
      vfloat x = loadv(row + c);
      if (bias) x += loadv(bias + c);
      if (cols < kBlockK) x = iotav(float(c)) < float(cols) ? x : broadcast<vfloat>(-INFINITY);
      storev(row + c, x);
      mx = maxv(mx, x);
    }
    alpha[r] = std::max(m[r], hmax(mx));  // m_new, for now
  }
  for (int r = 0; r < rows; r += kVec) {  // m and alpha hold kBlockQ, a whole number of vectors
    const vfloat m_new = loadv(alpha + r);
    storev(alpha + r, exp_approx(loadv(m + r) - m_new));  // ~0 on the first block, where o is overwritten
    storev(m + r, m_new);
  }
  for (int r = 0; r < rows; ++r) {
    float* row = s + r * kBlockK;
    const vfloat m_new = broadcast<vfloat>(m[r]);
    vfloat sum{};
    for (int c = 0; c < kBlockK; c += kVec) {
      const vfloat e = exp_approx(loadv(row + c) - m_new);
      storev(row + c, e);
      sum += e;
    }
    storev(l_lanes + r * kVec, loadv(l_lanes + r * kVec) * alpha[r] + sum);
  }
}

// One (sample, head): prepare K^T and V once, then stream every block of
// kBlockQ queries over the key blocks: S = Q K^T, the online softmax, and
// O = alpha O + P V, both products on register tiles (gemm_tile.hpp).
inline void flash_head(const AttentionParams& p, std::int64_t b, std::int64_t h, FlashScratch& w) {
  const std::int64_t dh = w.head_dim, dp = w.head_dim_padded, keys = p.keys(b);
  const float* qb = qkv_bias_row(p, 0, h);
  const float* kb = qkv_bias_row(p, 1, h);
  const float* vb = qkv_bias_row(p, 2, h);
  // One pass over the sample's tokens. A token's q/k/v rows lie 3 x heads x
  // head_dim floats apart, more than a page at DeiT-S's 1152, so the
  // hardware prefetchers do not follow them: the rows a few tokens ahead
  // are prefetched here (measured 1.1x on the whole kernel, AVX2).
  const std::int64_t queries = p.queries(b), tokens = std::max(queries, keys);
  const std::int64_t row_bytes = dh * std::int64_t(sizeof(float));
  auto prefetch = [&](const float* row, bool for_write = false) {
    for (std::int64_t off = 0; off < row_bytes; off += 64) {
      const char* line = reinterpret_cast<const char*>(row) + off;
      if (for_write) {
        __builtin_prefetch(line, 1);
      } else {
        __builtin_prefetch(line);
      }
    }
  };
  constexpr std::int64_t kAhead = 4;
  for (std::int64_t n = 0; n < tokens; ++n) {
    if (n + kAhead < queries) prefetch(qkv_row(p, b, n + kAhead, 0, h));
    if (n + kAhead < keys) {
      prefetch(qkv_row(p, b, n + kAhead, 1, h));
      prefetch(qkv_row(p, b, n + kAhead, 2, h));
    }
    if (n < queries) {
      const float* qs = qkv_row(p, b, n, 0, h);
      float* qd = w.q + n * dh;
      for (std::int64_t d = 0; d < dh; ++d) qd[d] = (qs[d] + (qb ? qb[d] : 0.0f)) * p.scale;
    }
    if (n >= keys) continue;
    const float* ks = qkv_row(p, b, n, 1, h);
    const float* vs = qkv_row(p, b, n, 2, h);
    float* kt = w.kt + (n / kBlockK) * dh * kBlockK + n % kBlockK;
    float* vd = w.v + n * dp;
    for (std::int64_t d = 0; d < dh; ++d) {
      kt[d * kBlockK] = ks[d] + (kb ? kb[d] : 0.0f);
      vd[d] = vs[d] + (vb ? vb[d] : 0.0f);
    }
    std::fill(vd + dh, vd + dp, 0.0f);
  }
  // Zero padding keeps the last block's score columns free of garbage.
  if (const std::int64_t tail = keys % kBlockK) {
    float* kt = w.kt + (keys / kBlockK) * dh * kBlockK;
    for (std::int64_t d = 0; d < dh; ++d) std::fill(kt + d * kBlockK + tail, kt + (d + 1) * kBlockK, 0.0f);
  }
  if (p.key_bias) {
    const float* bias = p.key_bias + p.key_bias_offset(b);
    std::copy(bias, bias + keys, w.bias);
    std::fill(w.bias + keys, w.bias + FlashScratch::keys_padded(keys), 0.0f);
  }

  for (std::int64_t q0 = 0; q0 < queries; q0 += kBlockQ) {
    const int rows = int(std::min<std::int64_t>(kBlockQ, queries - q0));
    const float* q = w.q + q0 * dh;
    for (int r = 0; r < rows; ++r) {
      w.m[r] = -INFINITY;
      storev(w.l + r * kVec, vfloat{});
    }
    for (std::int64_t k0 = 0; k0 < keys; k0 += kBlockK) {
      const int cols = int(std::min<std::int64_t>(kBlockK, keys - k0));
      // Score columns past the last key are skipped, whole vectors at a time.
      gemm_tiled(rows, FlashScratch::vectors(cols), dh, q, dh, w.kt + k0 * dh, kBlockK, w.s, kBlockK, nullptr);
      const float* bias = p.key_bias ? w.bias + k0 : nullptr;
      online_softmax_block(w.s, rows, bias, cols, w.m, w.l, w.alpha);
      // The first block overwrites o, so it needs no zeroing.
      gemm_tiled(rows, dp / kVec, cols, w.s, kBlockK, w.v + k0 * dp, dp, w.o, dp, k0 == 0 ? nullptr : w.alpha);
    }
    float* out = p.out + p.out_offset(b) + q0 * p.out_token_stride + h * dh;
    for (int r = 0; r < rows; ++r) {
      if (r + kAhead < rows) prefetch(out + (r + kAhead) * p.out_token_stride, /*for_write=*/true);
      const float inv = 1.0f / hsum(loadv(w.l + r * kVec));
      float* dst = out + r * p.out_token_stride;
      const float* o = w.o + r * dp;
      for (std::int64_t d = 0; d < dh; ++d) dst[d] = o[d] * inv;
    }
  }
}

}  // namespace detail

inline void flash_attention(const Host& host, const AttentionParams& p) {
  p.check("flash_attention");
  const int threads = thread_count(host);
  const std::int64_t per_thread = detail::FlashScratch::floats(p.tokens, p.head_dim);
  std::vector<float> scratch(std::size_t(threads) * std::size_t(per_thread));
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (std::int64_t bh = 0; bh < p.batch * p.heads; ++bh) {
    detail::FlashScratch w(scratch.data() + std::int64_t(thread_index()) * per_thread, p.tokens, p.head_dim);
    detail::flash_head(p, bh / p.heads, bh % p.heads, w);
  }
}

// probs: [B, H, N, N] softmax(scale Q K^T) rows, written and returned.
// Packed: sample b's map is the top-left n_b x n_b of its [N, N] planes
// (N the longest sample), the rest 0.
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
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(rows), int(rows), int(dh), p.scale,
                  plane(0, b, h), int(dh), plane(1, b, h), int(dh), 0.0f, s, int(n));
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
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(rows), int(dh), int(rows), 1.0f,
                  probs + (b * p.heads + h) * n * n, int(n), plane(2, b, h), int(dh), 0.0f,
                  p.out + p.out_offset(b) + h * dh, int(p.out_token_stride));
    }
  }
}

}  // namespace cpu
}  // namespace repshift
