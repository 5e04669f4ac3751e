#pragma once
// Arguments of multi-head self-attention over a fused QKV projection, for
// the CPU kernels (cpu/attention.hpp, T = float) and the CUDA ones
// (cuda/attention.cuh, T = float, __half or __nv_bfloat16).

#include <cmath>
#include <cstdint>

#include "../core/config.hpp"
#include "../core/error.hpp"
#include "../core/varlen.hpp"

namespace repshift {

template <class T>
struct BasicAttentionParams {
  const T* qkv = nullptr;           // [B, N, 3, H, Dh] with the strides below
  const T* qkv_bias = nullptr;      // [3, H, Dh] or null (CPU only: on CUDA the QKV GEMM adds it)
  T* out = nullptr;                 // [B, N, H*Dh]
  const int* key_lengths = nullptr; // [B] or null: keys n >= key_lengths[b] are padding, masked out (CPU only)
  // [B, N] (packed: [total]) or null: added to the logits of key n (after
  // scaling); -inf masks the key, and a query whose keys are all masked gets NaN.
  const float* key_bias = nullptr;
  // Packed (varlen): sample b's tokens are qkv / out rows [cu_seqlens[b],
  // cu_seqlens[b + 1]) (token strides apply, batch strides do not); its
  // queries see only its own keys, and `tokens` is the longest sample.
  const int* cu_seqlens = nullptr;  // [B + 1] or null, in the executor's memory
  std::int64_t batch = 0, tokens = 0, heads = 0, head_dim = 0;
  // Rows may be apart more than their width, never less: token strides
  // >= 3 x heads x head_dim (qkv) and heads x head_dim (out), batch
  // strides >= 0 and, for out, past the previous sample's last row.
  std::int64_t qkv_batch_stride = 0, qkv_token_stride = 0;
  std::int64_t out_batch_stride = 0, out_token_stride = 0;
  float scale = 0.0f;  // usually 1/sqrt(head_dim)

  // Contiguous [B, N, 3C] input and [B, N, C] output.
  static BasicAttentionParams contiguous(const T* qkv, const T* qkv_bias, T* out, std::int64_t batch,
                                         std::int64_t tokens, std::int64_t heads, std::int64_t head_dim) {
    BasicAttentionParams p;
    p.qkv = qkv;
    p.qkv_bias = qkv_bias;
    p.out = out;
    p.batch = batch;
    p.tokens = tokens;
    p.heads = heads;
    p.head_dim = head_dim;
    // Wrapping products: check_shape refuses sizes that overflow before a
    // stride is used, and computing them here must not be UB meanwhile.
    const auto wrapping_mul = [](std::int64_t a, std::int64_t b) {
      std::int64_t product = 0;
      __builtin_mul_overflow(a, b, &product);
      return product;
    };
    const std::int64_t dim = wrapping_mul(heads, head_dim);
    p.qkv_token_stride = wrapping_mul(3, dim);
    p.qkv_batch_stride = wrapping_mul(tokens, p.qkv_token_stride);
    p.out_token_stride = dim;
    p.out_batch_stride = wrapping_mul(tokens, dim);
    p.scale = 1.0f / std::sqrt(float(head_dim));
    return p;
  }

  // Everything but the values behind the pointers.
  void check_shape(const char* where) const {
    detail::require_pointer(where, "qkv", qkv);
    detail::require_pointer(where, "out", out);
    detail::require_positive(where, "batch", batch);
    detail::require_positive(where, "tokens", tokens);
    detail::require_positive(where, "heads", heads);
    detail::require_positive(where, "head_dim", head_dim);
    const std::int64_t qkv_row = detail::checked_extent(where, "qkv row (3 x heads x head_dim)", 3, heads, head_dim, sizeof(T));
    const std::int64_t out_row = qkv_row / 3;
    detail::checked_extent(where, "qkv", batch, tokens, qkv_row, sizeof(T));
    // A token's q, k and v rows, and its output row, must not overlap the
    // next token's; samples' outputs must not overlap either (a data race).
    detail::require_at_most(where, "3 x heads x head_dim", qkv_row, "qkv_token_stride", qkv_token_stride);
    detail::require_at_most(where, "heads x head_dim", out_row, "out_token_stride", out_token_stride);
    // Packed samples are rows of one sequence, at most batch x tokens of them.
    const std::int64_t rows = cu_seqlens ? batch * tokens : tokens;
    const std::int64_t qkv_sample = detail::checked_span(where, "qkv", rows, qkv_token_stride, qkv_row, sizeof(T));
    const std::int64_t out_sample = detail::checked_span(where, "out", rows, out_token_stride, out_row, sizeof(T));
    if (!cu_seqlens && batch > 1) {
      detail::require_non_negative(where, "qkv_batch_stride", qkv_batch_stride);
      detail::require_at_most(where, "a sample's output span (tokens - 1) x out_token_stride + heads x head_dim",
                              out_sample, "out_batch_stride", out_batch_stride);
      detail::checked_span(where, "qkv", batch, qkv_batch_stride, qkv_sample, sizeof(T));
      detail::checked_span(where, "out", batch, out_batch_stride, out_sample, sizeof(T));
    }
    if (!(scale > 0.0f) || !std::isfinite(scale)) {
      detail::fail(where, "scale = {} must be finite and > 0", scale);
    }
  }

  // check_shape, then the key lengths and cu_seqlens (host memory).
  void check(const char* where) const {
    check_shape(where);
    if (cu_seqlens) {
      detail::check_cu_seqlens(where, "cu_seqlens", cu_seqlens, batch);
      if (key_lengths) detail::fail(where, "key_lengths and cu_seqlens exclude each other (packed samples have no padding)");
      for (std::int64_t b = 0; b < batch; ++b) {
        detail::require_at_most(where, "a sample's tokens (cu_seqlens)", seq_length(cu_seqlens, b, 0), "tokens", tokens);
      }
    }
    if (key_lengths) {
      for (std::int64_t b = 0; b < batch; ++b) {
        if (key_lengths[b] < 1 || key_lengths[b] > tokens) {
          detail::fail(where, "key_lengths[{}] = {} is outside [1, tokens = {}]", b, key_lengths[b], tokens);
        }
      }
    }
  }

  // Queries of sample b, and the keys that take part in its attention.
  REPSHIFT_HD std::int64_t queries(std::int64_t b) const { return seq_length(cu_seqlens, b, tokens); }
  std::int64_t keys(std::int64_t b) const { return key_lengths ? key_lengths[b] : queries(b); }
  // Offsets of sample b's first qkv / out / key_bias entry.
  REPSHIFT_HD std::int64_t qkv_offset(std::int64_t b) const {
    return cu_seqlens ? cu_seqlens[b] * qkv_token_stride : b * qkv_batch_stride;
  }
  REPSHIFT_HD std::int64_t out_offset(std::int64_t b) const {
    return cu_seqlens ? cu_seqlens[b] * out_token_stride : b * out_batch_stride;
  }
  REPSHIFT_HD std::int64_t key_bias_offset(std::int64_t b) const { return seq_begin(cu_seqlens, b, tokens); }
};

using AttentionParams = BasicAttentionParams<float>;

}  // namespace repshift
