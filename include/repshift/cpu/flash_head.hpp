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

// Pointer to token n's part `which` (0 = q, 1 = k, 2 = v) of head h.
inline const float* qkv_row(const AttentionParams& p, std::int64_t b, std::int64_t n, int which,
                            std::int64_t h) {
  return p.qkv + p.qkv_offset(b) + n * p.qkv_token_stride + (which * p.heads + h) * p.head_dim;
}

inline const float* qkv_bias_row(const AttentionParams& p, int which, std::int64_t h) {
  return p.qkv_bias ? p.qkv_bias + (which * p.heads + h) * p.head_dim : nullptr;
}

// Every cache line of `bytes` from row: a token's q/k/v rows lie 3 x heads
// x head_dim floats apart, more than a page at DeiT-S's 1152, so the
// hardware prefetchers do not follow them.
inline void prefetch_row(const void* row, std::int64_t bytes, bool for_write = false) {
  for (std::int64_t off = 0; off < bytes; off += 64) {
    const char* line = static_cast<const char*>(row) + off;
    if (for_write) {
      __builtin_prefetch(line, 1);
    } else {
      __builtin_prefetch(line);
    }
  }
}

// Scratch for one task, for samples of up to `tokens`: each task lays its
// scratch out for its own sample, whose key blocks are all its keys up to
// `whole_keys` and fixed blocks past it, so the size drops where the regime
// changes and the bound is the larger of the two regimes' largest.
// floats_or_bytes(n): one sample's layout of n tokens.
template <class Size>
std::int64_t scratch_bound(Size floats_or_bytes, std::int64_t tokens, std::int64_t whole_keys) {
  return std::max(floats_or_bytes(tokens), floats_or_bytes(std::min(tokens, whole_keys)));
}

}  // namespace detail

#include "target/flash_head.inl"

}  // namespace cpu
}  // namespace repshift
