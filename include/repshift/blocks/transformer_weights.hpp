#pragma once
// Non-owning weights of one transformer block, PyTorch layout (Linear
// weights [out, in]). The names follow timm's ViT block; models/ fill
// them from their own storage or a checkpoint. T is the storage type:
// float on the CPU; float, __half or __nv_bfloat16 device pointers for
// the CUDA executor.

#include <climits>
#include <cstdint>
#include <vector>

#include "../core/error.hpp"
#include "../params/layer_norm.hpp"

namespace repshift {

template <class T>
struct BasicTransformerBlockWeights {
  std::int64_t dim = 0, heads = 0, mlp_hidden = 0;
  float ln_eps = 1e-6f;
  const T* norm1_weight = nullptr;  // [dim]  LN before attention (pre) / after it (post)
  const T* norm1_bias = nullptr;
  const T* qkv_weight = nullptr;    // [3 dim, dim]
  const T* qkv_bias = nullptr;      // [3 dim] or null
  const T* proj_weight = nullptr;   // [dim, dim]
  const T* proj_bias = nullptr;     // [dim]
  const T* norm2_weight = nullptr;  // [dim]
  const T* norm2_bias = nullptr;
  const T* fc1_weight = nullptr;    // [mlp_hidden, dim]
  const T* fc1_bias = nullptr;      // [mlp_hidden]
  const T* fc2_weight = nullptr;    // [dim, mlp_hidden]
  const T* fc2_bias = nullptr;      // [dim]

  std::int64_t head_dim() const { return heads > 0 ? dim / heads : 0; }
  LayerNormParams<T> norm1() const { return {norm1_weight, norm1_bias, ln_eps}; }
  LayerNormParams<T> norm2() const { return {norm2_weight, norm2_bias, ln_eps}; }

  // The sizes alone, bounded before any product of them is taken (GEMM
  // extents are int, and qkv is 3 x dim wide).
  void check_sizes(const char* where) const {
    detail::require_positive(where, "weights.dim", dim);
    detail::require_positive(where, "weights.heads", heads);
    detail::require_positive(where, "weights.mlp_hidden", mlp_hidden);
    detail::require_at_most(where, "weights.dim", dim, "INT_MAX / 3", INT_MAX / 3);
    detail::require_at_most(where, "weights.mlp_hidden", mlp_hidden, "INT_MAX / 3", INT_MAX / 3);
    detail::require_multiple(where, "weights.dim", dim, "weights.heads", heads);
  }
  void check(const char* where) const {
    check_sizes(where);
    detail::require_epsilon(where, "weights.ln_eps", ln_eps);
    detail::require_pointer(where, "weights.norm1_weight", norm1_weight);
    detail::require_pointer(where, "weights.norm1_bias", norm1_bias);
    detail::require_pointer(where, "weights.qkv_weight", qkv_weight);
    detail::require_pointer(where, "weights.proj_weight", proj_weight);
    detail::require_pointer(where, "weights.proj_bias", proj_bias);
    detail::require_pointer(where, "weights.norm2_weight", norm2_weight);
    detail::require_pointer(where, "weights.norm2_bias", norm2_bias);
    detail::require_pointer(where, "weights.fc1_weight", fc1_weight);
    detail::require_pointer(where, "weights.fc1_bias", fc1_bias);
    detail::require_pointer(where, "weights.fc2_weight", fc2_weight);
    detail::require_pointer(where, "weights.fc2_bias", fc2_bias);
  }
};

using TransformerBlockWeights = BasicTransformerBlockWeights<float>;

// Owning storage of one block's tensors, as models keep them; view()
// gives the kernels' non-owning TransformerBlockWeights.
struct TransformerBlockTensors {
  std::vector<float> norm1_w, norm1_b, qkv_w, qkv_b, proj_w, proj_b, norm2_w, norm2_b, fc1_w, fc1_b, fc2_w, fc2_b;

  TransformerBlockWeights view(std::int64_t dim, std::int64_t heads, std::int64_t mlp_hidden, float ln_eps) const {
    TransformerBlockWeights v;
    v.dim = dim;
    v.heads = heads;
    v.mlp_hidden = mlp_hidden;
    v.ln_eps = ln_eps;
    v.norm1_weight = norm1_w.data();
    v.norm1_bias = norm1_b.data();
    v.qkv_weight = qkv_w.data();
    v.qkv_bias = qkv_b.data();
    v.proj_weight = proj_w.data();
    v.proj_bias = proj_b.data();
    v.norm2_weight = norm2_w.data();
    v.norm2_bias = norm2_b.data();
    v.fc1_weight = fc1_w.data();
    v.fc1_bias = fc1_b.data();
    v.fc2_weight = fc2_w.data();
    v.fc2_bias = fc2_b.data();
    return v;
  }
};

}  // namespace repshift
