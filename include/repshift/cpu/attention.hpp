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
#include <memory>
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
// query tile of the block streams past it, and so does its V. A sequence
// of up to kWholeKeys keys is one block instead: its K^T and V (64 KiB
// each at Dh = 64) stream from L2 one register-tile panel at a time, and
// the block's scores (kBlockQ x 256 floats) stay in L2. At DeiT-S's 197
// tokens, blocks of 64 left a last block of 5 keys that cost a whole
// block of softmax, and rescaled O at every block.
constexpr int kBlockQ = 16 * detail::kTileRows;
static_assert(kBlockQ % kVec == 0, "the softmax's per-row state is whole vectors");
constexpr int kBlockK = 64;
static_assert(kBlockK % (detail::kTileVecs * kVec) == 0, "key block must be whole register tiles");
constexpr int kWholeKeys = 256;
constexpr float kLog2e = 1.44269504088896341f;

namespace detail {

inline std::int64_t round_up(std::int64_t n, std::int64_t multiple) { return (n + multiple - 1) / multiple * multiple; }

// Keys per block for a sequence of n keys: all of them (padded to whole
// vectors) up to kWholeKeys, else kBlockK.
inline std::int64_t key_block(std::int64_t n) {
  return n <= kWholeKeys ? std::max<std::int64_t>(round_up(n, kVec), kVec) : kBlockK;
}

// Scratch for one (sample, head) task: Q, K^T and V of the whole sequence
// (bias added, prepared in one pass and reused by every block) and one
// query block's state. O(N x head_dim) floats, never N x N.
// block_k is key_block(n) of the longest sample: a shorter packed sample
// takes the same layout with fewer blocks.
struct FlashScratch {
  std::int64_t head_dim, head_dim_padded, block_k, ld_v;
  float* kt;     // [key blocks][Dh][block_k]: each key block's K^T contiguous, zero past N
  float* v;      // [N][ld_v]: Dh padded to whole vectors, zero past Dh
  float* q;      // [N][Dh], pre-scaled by scale * log2 e
  float* o;      // [kBlockQ][Dh padded]
  float* s;      // [kBlockQ][block_k]: scores, then probabilities
  float* m;      // [kBlockQ] running max
  float* l;      // [kBlockQ][kVec] running sum, in partial lanes
  float* alpha;  // [kBlockQ] rescale of o at this key block
  float* bias;   // [key blocks * block_k] key_bias of the sample times log2 e, zero past N
  static std::int64_t vectors(std::int64_t dh) { return (dh + kVec - 1) / kVec; }
  // V's row stride: an odd number of cache lines where whole lines, so that
  // a column panel of P V (one line from each of up to kWholeKeys rows)
  // spreads over every L1 set. At 64 floats (4 lines) it fell into 16 sets,
  // 128 lines, fewer than DeiT-S's 197 keys.
  static std::int64_t v_stride(std::int64_t dp) { return dp % 32 == 0 ? dp + 16 : dp; }
  static std::int64_t floats(std::int64_t n, std::int64_t dh) {
    const std::int64_t dp = vectors(dh) * kVec, bk = key_block(n), keys = round_up(n, bk);
    return dh * keys + n * (v_stride(dp) + dh) + kBlockQ * (dp + bk + kVec + 2) + keys;
  }
  std::int64_t keys_padded(std::int64_t n) const { return round_up(n, block_k); }
  FlashScratch(float* base, std::int64_t n, std::int64_t dh)
      : head_dim(dh), head_dim_padded(vectors(dh) * kVec), block_k(key_block(n)), ld_v(v_stride(head_dim_padded)) {
    kt = base;
    v = kt + dh * keys_padded(n);
    q = v + n * ld_v;
    o = q + n * dh;
    s = o + kBlockQ * head_dim_padded;
    m = s + kBlockQ * block_k;
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

// One online-softmax step for `rows` query rows over one key block, in
// base 2. s[r][0..cols): raw scores (logits times log2 e), row stride ld,
// read up to whole vectors; bias: the keys' bias, in the same units (null:
// none). Afterwards s holds the block's unnormalised probabilities
// 2^(s - m_new) (~0 past cols: at most 1.2e-38, which the P V product
// skips and l cannot register), m the new running max, alpha
// 2^(m_old - m_new), by which o must be rescaled, and
// l_lanes the running sum of each row, kept as kVec partial lanes so that
// the horizontal sum runs once per query block and not once per key block.
// alpha's 2^x runs across rows, vector by vector.
inline void online_softmax_block(float* s, std::int64_t ld, int rows, const float* bias, int cols, float* m,
                                 float* l_lanes, float* alpha) {
  const int width = int(round_up(cols, kVec));
  for (int r = 0; r < rows; ++r) {
    float* row = s + r * ld;
    vfloat mx = broadcast<vfloat>(-INFINITY);
    for (int c = 0; c < width; c += kVec) {
      vfloat x = loadv(row + c);
      if (bias) x += loadv(bias + c);
      if (c + kVec > cols) x = iotav(float(c)) < float(cols) ? x : broadcast<vfloat>(-INFINITY);
      storev(row + c, x);
      mx = maxv(mx, x);
    }
    alpha[r] = std::max(m[r], hmax(mx));  // m_new, for now
  }
  for (int r = 0; r < rows; r += kVec) {  // m and alpha hold kBlockQ, a whole number of vectors
    const vfloat m_new = loadv(alpha + r);
    storev(alpha + r, exp2_nonpositive(loadv(m + r) - m_new));  // ~0 on the first block, where o is overwritten
    storev(m + r, m_new);
  }
  for (int r = 0; r < rows; ++r) {
    float* row = s + r * ld;
    const vfloat m_new = broadcast<vfloat>(m[r]);
    vfloat sum{};
    for (int c = 0; c < width; c += kVec) {
      const vfloat e = exp2_nonpositive(loadv(row + c) - m_new);
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
  const std::int64_t dh = w.head_dim, dp = w.head_dim_padded, bk = w.block_k, keys = p.keys(b);
  const float* qb = qkv_bias_row(p, 0, h);
  const float* kb = qkv_bias_row(p, 1, h);
  const float* vb = qkv_bias_row(p, 2, h);
  // One pass over the sample's tokens, kVec at a time. A token's q/k/v rows
  // lie 3 x heads x head_dim floats apart, more than a page at DeiT-S's
  // 1152, so the hardware prefetchers do not follow them: the next group's
  // rows are prefetched here (measured 1.1x on the whole kernel, AVX2).
  // K^T is written a vector at a time from the group's K rows, staged in o
  // (free until the query loop): storing K element by element, block_k
  // floats apart, filled the store buffer and held up the loads behind it
  // (a third of the kernel's time at DeiT-S's shape, AVX2).
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
  auto biased = [dh](const float* src, const float* bias, float scale, float* dst) {
    if (bias) {
      for (std::int64_t d = 0; d < dh; ++d) dst[d] = (src[d] + bias[d]) * scale;
    } else {
      for (std::int64_t d = 0; d < dh; ++d) dst[d] = src[d] * scale;
    }
  };
  float* k_rows = w.o;  // [kVec][dh]
  for (std::int64_t n0 = 0; n0 < tokens; n0 += kVec) {
    const std::int64_t group_end = std::min<std::int64_t>(n0 + kVec, tokens);
    for (std::int64_t n = n0; n < group_end; ++n) {
      if (n + kVec < queries) prefetch(qkv_row(p, b, n + kVec, 0, h));
      if (n + kVec < keys) {
        prefetch(qkv_row(p, b, n + kVec, 1, h));
        prefetch(qkv_row(p, b, n + kVec, 2, h));
      }
      if (n < queries) biased(qkv_row(p, b, n, 0, h), qb, p.scale * kLog2e, w.q + n * dh);
      if (n >= keys) continue;
      biased(qkv_row(p, b, n, 1, h), kb, 1.0f, k_rows + (n - n0) * dh);
      float* vd = w.v + n * w.ld_v;
      biased(qkv_row(p, b, n, 2, h), vb, 1.0f, vd);
      std::fill(vd + dh, vd + dp, 0.0f);
    }
    if (n0 >= keys) continue;
    // Keys past the last are zero: the scores of a last partial vector stay finite.
    std::fill(k_rows + (std::min(keys, n0 + kVec) - n0) * dh, k_rows + kVec * dh, 0.0f);
    float* kt = w.kt + (n0 / bk) * dh * bk + n0 % bk;  // bk is whole vectors: no group straddles two blocks
    for (std::int64_t d = 0; d < dh; ++d) {
      vfloat column;
      for (int i = 0; i < kVec; ++i) column[i] = k_rows[i * dh + d];
      storev(kt + d * bk, column);
    }
  }
  if (p.key_bias) {
    const float* bias = p.key_bias + p.key_bias_offset(b);
    std::transform(bias, bias + keys, w.bias, [](float x) { return x * kLog2e; });
    std::fill(w.bias + keys, w.bias + w.keys_padded(keys), 0.0f);
  }

  for (std::int64_t q0 = 0; q0 < queries; q0 += kBlockQ) {
    const int rows = int(std::min<std::int64_t>(kBlockQ, queries - q0));
    const float* q = w.q + q0 * dh;
    // Rows past `rows` up to a whole vector are computed on and ignored: finite, never read uninitialised.
    for (int r = 0; r < round_up(rows, kVec); ++r) {
      w.m[r] = r < rows ? -INFINITY : 0.0f;
      w.alpha[r] = 0.0f;
      storev(w.l + r * kVec, vfloat{});
    }
    for (std::int64_t k0 = 0; k0 < keys; k0 += bk) {
      const int cols = int(std::min(bk, keys - k0));
      // Score columns past the last key are skipped, whole vectors at a time.
      gemm_tiled(rows, FlashScratch::vectors(cols), dh, q, dh, w.kt + k0 * dh, bk, w.s, bk, nullptr);
      const float* bias = p.key_bias ? w.bias + k0 : nullptr;
      online_softmax_block(w.s, bk, rows, bias, cols, w.m, w.l, w.alpha);
      // The first block overwrites o, so it needs no zeroing.
      gemm_tiled(rows, dp / kVec, cols, w.s, bk, w.v + k0 * w.ld_v, w.ld_v, w.o, dp, k0 == 0 ? nullptr : w.alpha);
    }
    float* out = p.out + p.out_offset(b) + q0 * p.out_token_stride + h * dh;
    constexpr int kOutAhead = 4;  // output rows prefetched for write ahead of the one being stored
    for (int r = 0; r < rows; ++r) {
      if (r + kOutAhead < rows) prefetch(out + (r + kOutAhead) * p.out_token_stride, /*for_write=*/true);
      const float inv = 1.0f / hsum(loadv(w.l + r * kVec));
      float* dst = out + r * p.out_token_stride;
      const float* o = w.o + r * dp;
      for (std::int64_t d = 0; d < dh; ++d) dst[d] = o[d] * inv;
    }
  }
}

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
    buffer.reset(new float[std::size_t(floats)]);
    capacity = floats;
  }
  return buffer.get();
}

}  // namespace detail

inline void flash_attention(const Host& host, const AttentionParams& p) {
  p.check("flash_attention");
  const int threads = thread_count(host);
  const std::int64_t per_thread = detail::FlashScratch::floats(p.tokens, p.head_dim);
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (std::int64_t bh = 0; bh < p.batch * p.heads; ++bh) {
    detail::FlashScratch w(detail::flash_scratch(per_thread), p.tokens, p.head_dim);
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
  const LibraryThreads threads_scope(host);  // OpenBLAS's GEMMs below
  const int threads = threads_scope.count();
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
