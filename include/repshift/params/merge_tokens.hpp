#pragma once
// Arguments of Compress = Merge's token merge (cpu/merge_tokens.hpp has
// the contract; cuda/merge_tokens.cuh runs it on the GPU). T is the rows'
// and keys' storage type; scores and sizes are f32.

#include <cmath>
#include <cstdint>

#include "../core/config.hpp"
#include "../core/error.hpp"
#include "../policies/compress.hpp"
#include "../core/varlen.hpp"

namespace repshift {

// Packed (PackedRows): sample b's x, keys, scores and sizes rows start at
// cu_seqlens[b]; its out, out_sizes and keep_idx rows at kept_cu_seqlens[b];
// `tokens` and `keep` are then the longest sample's counts, and a sample
// that keeps all its tokens is copied through.
template <class T>
struct BasicMergeParams : PackedRows {
  const T* x = nullptr;             // [batch, tokens, channels] rows to merge, contiguous
  const T* keys = nullptr;          // [batch, tokens, key_channels] match features, token stride keys_token_stride
  const T* key_bias = nullptr;      // [key_channels] added to every key row, or null
  const float* scores = nullptr;    // [batch, tokens] importance: low merges
  const float* sizes = nullptr;     // [batch, tokens] token sizes, or null (all 1)
  T* out = nullptr;                 // [batch, keep, channels]
  float* out_sizes = nullptr;       // [batch, keep] merged sizes, or null
  int* keep_idx = nullptr;          // [batch, keep] surviving tokens, ascending
  std::int64_t batch = 0, tokens = 0, keep = 0, channels = 0, key_channels = 0, protect = 0;
  std::int64_t keys_token_stride = 0;  // 0: key_channels (contiguous)

  static std::int64_t min_keep(std::int64_t tokens, std::int64_t protect) {
    return policies::Merge::min_keep(tokens, protect);
  }

  REPSHIFT_HD std::int64_t key_stride() const { return keys_token_stride ? keys_token_stride : key_channels; }

  // Token sizes must be finite and positive (they are averaged and log'ed).
  static void check_sizes(const char* where, const float* sizes, std::int64_t count) {
    for (std::int64_t i = 0; i < count; ++i) {
      if (!(sizes[i] > 0.0f) || !std::isfinite(sizes[i])) {
        detail::fail(where, "sizes[{}] = {} must be finite and > 0", i, sizes[i]);
      }
    }
  }

  // Merge can remove at most |A| tokens of a sample of `tokens`.
  static void check_reachable(const char* where, std::int64_t tokens, std::int64_t keep, std::int64_t protect) {
    if (keep < tokens && keep < min_keep(tokens, protect)) {
      detail::fail(where,
                   "keep = {} merges more tokens than set A holds: with tokens = {} and protect = {}, "
                   "Merge needs keep >= {}",
                   keep, tokens, protect, min_keep(tokens, protect));
    }
  }

  void check(const char* where) const {
    check_pointers(where);
    detail::require_positive(where, "batch", batch);
    require_count(where, "tokens", tokens);
    require_count(where, "keep", keep);
    detail::require_positive(where, "channels", channels);
    detail::require_positive(where, "key_channels", key_channels);
    // Read or written only where there are tokens (an empty tensor's data may be null).
    if (tokens > 0) {
      detail::require_pointer(where, "x", x);
      detail::require_pointer(where, "keys", keys);
      detail::require_pointer(where, "scores", scores);
    }
    if (keep > 0) {
      detail::require_pointer(where, "out", out);
      detail::require_pointer(where, "keep_idx", keep_idx);
    }
    detail::require_non_negative(where, "protect", protect);
    detail::require_at_most(where, "keep", keep, "tokens", tokens);
    if (!packed()) detail::require_at_most(where, "protect", protect, "keep", keep);  // packed: per sample
    if (keys_token_stride != 0 && keys_token_stride < key_channels) {
      detail::fail(where, "keys_token_stride = {} is smaller than key_channels = {}", keys_token_stride, key_channels);
    }
    if (!packed()) check_reachable(where, tokens, keep, protect);
    detail::checked_extent(where, "x", batch, tokens, channels, sizeof(T));
    detail::checked_extent(where, "keys", batch, tokens, key_stride(), sizeof(T));
  }
};

using MergeParams = BasicMergeParams<float>;

}  // namespace repshift
