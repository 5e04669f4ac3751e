#pragma once
// Multi-head self-attention on the CPU.
//
// flash_attention: FlashAttention's schedule on a CPU core. One task per
// (sample, head); blocks of kBlockQ queries stream over key/value blocks
// of kBlockK through an online softmax (running max m, running sum l,
// output rescaled by exp(m_old - m_new)). Memory is O(N x head_dim) per
// thread (the head's K^T and V, prepared once): the N x N score matrix is
// never formed. Q K^T runs against transposed keys so both inner loops are
// unit-stride; for head_dim 32/64/128 a register-blocked micro-kernel keeps
// several query rows' scores and outputs in vector registers.
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
#include "math.hpp"
#include "parallel.hpp"

namespace repshift {

namespace cpu {

constexpr int kBlockQ = 32;
constexpr int kBlockK = 64;

namespace detail {

// Scratch for one (sample, head) task: K^T and V of the whole sequence
// (bias added, prepared once and reused by every query block) and one
// query block's state. O(N x head_dim) floats, never N x N.
struct FlashScratch {
  std::int64_t head_dim, keys_padded;
  float* kt;  // [Dh][keys_padded], transposed keys, zero past N
  float* v;   // [N][Dh]
  float* q;   // [kBlockQ][Dh], pre-scaled
  float* o;   // [kBlockQ][Dh]
  float* m;   // [kBlockQ]
  float* l;   // [kBlockQ]
  float* bias;  // [keys_padded] key_bias of the sample, zero past N
  static std::int64_t padded(std::int64_t n) { return (n + kBlockK - 1) / kBlockK * kBlockK; }
  static std::int64_t floats(std::int64_t n, std::int64_t dh) {
    return dh * padded(n) + n * dh + 2 * kBlockQ * dh + 2 * kBlockQ + padded(n);
  }
  FlashScratch(float* base, std::int64_t n, std::int64_t dh) : head_dim(dh), keys_padded(padded(n)) {
    kt = base;
    v = kt + dh * keys_padded;
    q = v + n * dh;
    o = q + kBlockQ * dh;
    m = o + kBlockQ * dh;
    l = m + kBlockQ;
    bias = l + kBlockQ;
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

static_assert(kBlockK % kVec == 0, "key block must be whole vectors");

// Online-softmax update of the running (m, l) of one query row from its
// raw scores s[0..kBlockK) (only the first `cols` are real) plus the keys'
// bias (null: none): turns s into probabilities (0 past cols) and returns
// the factor by which the row's output must be rescaled. Max, exp and sum
// all run on vector lanes.
inline float online_softmax_row(float* s, const float* bias, int cols, float& m, float& l) {
  if (bias) {
    for (int c = 0; c < kBlockK; c += kVec) storev(s + c, loadv(s + c) + loadv(bias + c));
  }
  vfloat mx = broadcast<vfloat>(-INFINITY);
  for (int c = 0; c < kBlockK; c += kVec) mx = maxv(mx, iotav(float(c)) < float(cols) ? loadv(s + c) : broadcast<vfloat>(-INFINITY));
  const float m_new = std::max(m, hmax(mx));
  const float alpha = exp_approx(m - m_new);  // ~0 on the first block, where l and o are 0
  vfloat sum{};
  for (int c = 0; c < kBlockK; c += kVec) {
    const vfloat e = iotav(float(c)) < float(cols) ? exp_approx(loadv(s + c) - m_new) : vfloat{};
    storev(s + c, e);
    sum += e;
  }
  l = l * alpha + hsum(sum);
  m = m_new;
  return alpha;
}

// Rows query rows against one key/value block, head_dim fixed at compile
// time: the Rows x kBlockK scores and the Rows x Dh outputs live in vector
// registers, and every key/value vector loaded is used Rows times.
template <int Dh, int Rows>
inline void flash_rows_fixed(const float* q, const float* kt, std::int64_t ldk, const float* v, const float* bias,
                             int cols, float* m, float* l, float* o) {
  static_assert(Dh % kVec == 0, "fixed path needs whole vectors per head");
  constexpr int kKV = kBlockK / kVec, kDV = Dh / kVec;
  vfloat s[Rows][kKV];
  for (int i = 0; i < Rows; ++i)
    for (int j = 0; j < kKV; ++j) s[i][j] = vfloat{};
  for (int d = 0; d < Dh; ++d) {
    vfloat k[kKV];
    for (int j = 0; j < kKV; ++j) k[j] = loadv(kt + d * ldk + j * kVec);
    for (int i = 0; i < Rows; ++i) {
      const float qd = q[i * Dh + d];
      for (int j = 0; j < kKV; ++j) s[i][j] += qd * k[j];
    }
  }
  float p[Rows][kBlockK];
  float alpha[Rows];
  for (int i = 0; i < Rows; ++i) {
    for (int j = 0; j < kKV; ++j) storev(p[i] + j * kVec, s[i][j]);
    alpha[i] = online_softmax_row(p[i], bias, cols, m[i], l[i]);
  }
  vfloat acc[Rows][kDV];
  for (int i = 0; i < Rows; ++i)
    for (int j = 0; j < kDV; ++j) acc[i][j] = loadv(o + i * Dh + j * kVec) * alpha[i];
  for (int c = 0; c < cols; ++c) {
    vfloat vv[kDV];
    for (int j = 0; j < kDV; ++j) vv[j] = loadv(v + c * Dh + j * kVec);
    for (int i = 0; i < Rows; ++i)
      for (int j = 0; j < kDV; ++j) acc[i][j] += p[i][c] * vv[j];
  }
  for (int i = 0; i < Rows; ++i)
    for (int j = 0; j < kDV; ++j) storev(o + i * Dh + j * kVec, acc[i][j]);
}

// Any head_dim: one row at a time, loops over the runtime dh.
inline void flash_row_generic(const float* q, const float* kt, std::int64_t ldk, const float* v, const float* bias,
                              int cols, std::int64_t dh, float& m, float& l, float* o) {
  float s[kBlockK];
  for (int c = 0; c < kBlockK; ++c) s[c] = 0.0f;
  for (std::int64_t d = 0; d < dh; ++d) {
    const float qd = q[d];
    const float* k = kt + d * ldk;
    for (int c = 0; c < kBlockK; ++c) s[c] += qd * k[c];
  }
  const float alpha = online_softmax_row(s, bias, cols, m, l);
  for (std::int64_t d = 0; d < dh; ++d) o[d] *= alpha;
  for (int c = 0; c < cols; ++c) {
    const float pc = s[c];
    const float* vc = v + c * dh;
    for (std::int64_t d = 0; d < dh; ++d) o[d] += pc * vc[d];
  }
}

// One (sample, head): prepare K^T and V once, then stream every block of
// kBlockQ queries over the key blocks. Dh > 0: the fixed path for that
// head_dim; Dh == 0: the generic path.
template <int Dh>
inline void flash_head(const AttentionParams& p, std::int64_t b, std::int64_t h, FlashScratch& w) {
  const std::int64_t dh = w.head_dim, ldk = w.keys_padded, keys = p.keys(b);
  const float* qb = qkv_bias_row(p, 0, h);
  const float* kb = qkv_bias_row(p, 1, h);
  const float* vb = qkv_bias_row(p, 2, h);
  for (std::int64_t n = 0; n < keys; ++n) {
    const float* ks = qkv_row(p, b, n, 1, h);
    const float* vs = qkv_row(p, b, n, 2, h);
    float* vd = w.v + n * dh;
    for (std::int64_t d = 0; d < dh; ++d) {
      w.kt[d * ldk + n] = ks[d] + (kb ? kb[d] : 0.0f);
      vd[d] = vs[d] + (vb ? vb[d] : 0.0f);
    }
  }
  // Zero padding keeps the full-width score loops free of garbage.
  for (std::int64_t d = 0; d < dh; ++d) std::fill(w.kt + d * ldk + keys, w.kt + (d + 1) * ldk, 0.0f);
  if (p.key_bias) {
    const float* bias = p.key_bias + p.key_bias_offset(b);
    std::copy(bias, bias + keys, w.bias);
    std::fill(w.bias + keys, w.bias + ldk, 0.0f);
  }

  const std::int64_t queries = p.queries(b);
  for (std::int64_t q0 = 0; q0 < queries; q0 += kBlockQ) {
    const int rows = int(std::min<std::int64_t>(kBlockQ, queries - q0));
    for (int r = 0; r < rows; ++r) {
      const float* src = qkv_row(p, b, q0 + r, 0, h);
      float* dst = w.q + r * dh;
      for (std::int64_t d = 0; d < dh; ++d) dst[d] = (src[d] + (qb ? qb[d] : 0.0f)) * p.scale;
      w.m[r] = -INFINITY;
      w.l[r] = 0.0f;
    }
    std::fill(w.o, w.o + kBlockQ * dh, 0.0f);

    for (std::int64_t k0 = 0; k0 < keys; k0 += kBlockK) {
      const int cols = int(std::min<std::int64_t>(kBlockK, keys - k0));
      const float* kt = w.kt + k0;
      const float* v = w.v + k0 * dh;
      const float* bias = p.key_bias ? w.bias + k0 : nullptr;
      if constexpr (Dh > 0) {
        // Rows rows of scores (or outputs) plus one row of keys (or values)
        // must fit the vector register file.
        constexpr int kWidth = (kBlockK > Dh ? kBlockK : Dh) / kVec;
        constexpr int kFit = (kVecRegisters - kWidth) / kWidth;
        constexpr int kRows = kFit < 1 ? 1 : (kFit > 4 ? 4 : kFit);
        int r = 0;
        for (; r + kRows <= rows; r += kRows)
          flash_rows_fixed<Dh, kRows>(w.q + r * Dh, kt, ldk, v, bias, cols, w.m + r, w.l + r, w.o + r * Dh);
        for (; r < rows; ++r)
          flash_rows_fixed<Dh, 1>(w.q + r * Dh, kt, ldk, v, bias, cols, w.m + r, w.l + r, w.o + r * Dh);
      } else {
        for (int r = 0; r < rows; ++r)
          flash_row_generic(w.q + r * dh, kt, ldk, v, bias, cols, dh, w.m[r], w.l[r], w.o + r * dh);
      }
    }

    for (int r = 0; r < rows; ++r) {
      const float inv = 1.0f / w.l[r];
      float* dst = p.out + p.out_offset(b) + (q0 + r) * p.out_token_stride + h * dh;
      const float* o = w.o + r * dh;
      for (std::int64_t d = 0; d < dh; ++d) dst[d] = o[d] * inv;
    }
  }
}

template <int Dh>
void flash_attention_impl(const Host& host, const AttentionParams& p) {
  const int threads = thread_count(host);
  const std::int64_t per_thread = FlashScratch::floats(p.tokens, p.head_dim);
  std::vector<float> scratch(std::size_t(threads) * std::size_t(per_thread));
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (std::int64_t bh = 0; bh < p.batch * p.heads; ++bh) {
    FlashScratch w(scratch.data() + std::int64_t(thread_index()) * per_thread, p.tokens, p.head_dim);
    flash_head<Dh>(p, bh / p.heads, bh % p.heads, w);
  }
}

}  // namespace detail

inline void flash_attention(const Host& host, const AttentionParams& p) {
  p.check("flash_attention");
  // The one runtime -> compile-time switch: common head sizes get the
  // register-blocked path.
  switch (p.head_dim) {
    case 32: return detail::flash_attention_impl<32>(host, p);
    case 64: return detail::flash_attention_impl<64>(host, p);
    case 128: return detail::flash_attention_impl<128>(host, p);
    default: return detail::flash_attention_impl<0>(host, p);
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
