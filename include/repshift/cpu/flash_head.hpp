#pragma once
// Flash attention's kernel for the translation unit's own target (the
// schedule is described in attention.hpp), and what every target's copy
// shares: the QKV row addressing and log2 e.

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "../params/attention.hpp"
#include "gemm_tile.hpp"
#include "math.hpp"

namespace repshift {
namespace cpu {

constexpr float kLog2e = 1.44269504088896341f;

namespace detail {

inline std::int64_t round_up(std::int64_t n, std::int64_t multiple) { return (n + multiple - 1) / multiple * multiple; }

// Pointer to token n's part `which` (0 = q, 1 = k, 2 = v) of head h.
inline const float* qkv_row(const AttentionParams& p, std::int64_t b, std::int64_t n, int which,
                            std::int64_t h) {
  return p.qkv + p.qkv_offset(b) + n * p.qkv_token_stride + (which * p.heads + h) * p.head_dim;
}

inline const float* qkv_bias_row(const AttentionParams& p, int which, std::int64_t h) {
  return p.qkv_bias ? p.qkv_bias + (which * p.heads + h) * p.head_dim : nullptr;
}

}  // namespace detail

#include "target/flash_head.inl"

}  // namespace cpu
}  // namespace repshift
