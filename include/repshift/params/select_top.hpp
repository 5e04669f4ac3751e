#pragma once
// Arguments of select_top. Filled once at the API edge from raw pointers or tensor views, checked
// there, and passed by value to the kernels of every Exec
// (FlashAttention's Flash_fwd_params pattern). Offsets are 64-bit, strides
// in elements.

#include <climits>
#include <cstdint>

#include "../core/error.hpp"
#include "../core/varlen.hpp"

namespace repshift {

// keep_idx[b, 0..keep) = the kept token indices of sample b, ascending.
struct SelectParams : PackedRows {
  const float* scores = nullptr;
  int* keep_idx = nullptr;
  std::int64_t batch = 0, tokens = 0, keep = 0, protect = 0;
  std::int64_t scores_batch_stride = 0, scores_token_stride = 0;
  std::int64_t keep_batch_stride = 0, keep_token_stride = 0;

  // Dense [batch, tokens] scores and [batch, keep] indices; packed when
  // `rows` has cu_seqlens (tokens and keep then bound the samples' counts,
  // and the batch strides go unused).
  static SelectParams contiguous(const float* scores, int* keep_idx, std::int64_t batch, std::int64_t tokens,
                                 std::int64_t keep, std::int64_t protect, const PackedRows& rows = {}) {
    SelectParams p;
    static_cast<PackedRows&>(p) = rows;
    p.scores = scores;
    p.keep_idx = keep_idx;
    p.batch = batch;
    p.tokens = tokens;
    p.keep = keep;
    p.protect = protect;
    p.scores_batch_stride = tokens;
    p.keep_batch_stride = keep;
    p.scores_token_stride = p.keep_token_stride = 1;
    return p;
  }

  void check(const char* where) const {
    check_pointers(where);
    detail::require_positive(where, "batch", batch);
    require_count(where, "tokens", tokens);
    require_count(where, "keep", keep);
    // Read or written only where there are tokens (an empty tensor's data may be null).
    if (tokens > 0) detail::require_pointer(where, "scores", scores);
    if (keep > 0) detail::require_pointer(where, "keep_idx", keep_idx);
    detail::require_non_negative(where, "protect", protect);
    detail::require_at_most(where, "protect", protect, "INT_MAX", INT_MAX);  // the kernels index as int
    // Indices are written as int: the token count must fit.
    detail::require_at_most(where, "tokens", tokens, "INT_MAX", INT_MAX);
    detail::require_at_most(where, "keep", keep, "tokens", tokens);
    // Packed: protect is held per sample (kept_count_ok, up to the sample's
    // own length), never against the longest sample, which would make a
    // sample's acceptance depend on its batch.
    if (!packed()) {
      detail::require_at_most(where, "protect", protect, "tokens", tokens);
      detail::require_at_most(where, "protect", protect, "keep", keep);
    }
    detail::checked_extent(where, "scores", batch, tokens, 1, sizeof(float));
  }
};

}  // namespace repshift
