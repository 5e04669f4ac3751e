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
  const float* key_bias = nullptr;  // [B, N] (packed: [total]) or null: added to the logits of key n (after scaling)
  // Packed (varlen): sample b's tokens are qkv / out rows [cu_seqlens[b],
  // cu_seqlens[b + 1]) (token strides apply, batch strides do not); its
  // queries see only its own keys, and `tokens` is the longest sample.
  const int* cu_seqlens = nullptr;  // [B + 1] or null, in the executor's memory
  std::int64_t batch = 0, tokens = 0, heads = 0, head_dim = 0;
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
    const std::int64_t dim = heads * head_dim;
    p.qkv_token_stride = 3 * dim;
    p.qkv_batch_stride = tokens * 3 * dim;
    p.out_token_stride = dim;
    p.out_batch_stride = tokens * dim;
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
    detail::checked_extent(where, "qkv", batch, tokens, 3 * heads * head_dim, sizeof(T));
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
