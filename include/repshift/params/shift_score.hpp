#pragma once
// Arguments of shift_score. Filled once at the API edge from raw pointers or tensor views, checked
// there, and passed by value to the kernels of every Exec
// (FlashAttention's Flash_fwd_params pattern). Offsets are 64-bit, strides
// in elements.

#include <cstdint>

#include "../core/error.hpp"

namespace repshift {

// scores[b, n] = Metric(after[b, n, :], before[b, n, :])
template <class T>
struct ShiftParams {
  const T* before = nullptr;
  const T* after = nullptr;
  float* scores = nullptr;
  std::int64_t batch = 0, tokens = 0, channels = 0;
  std::int64_t before_batch_stride = 0, before_token_stride = 0;
  std::int64_t after_batch_stride = 0, after_token_stride = 0;
  std::int64_t scores_batch_stride = 0, scores_token_stride = 0;

  void check(const char* where) const {
    detail::require_pointer(where, "before", before);
    detail::require_pointer(where, "after", after);
    detail::require_pointer(where, "scores", scores);
    detail::require_positive(where, "batch", batch);
    detail::require_positive(where, "tokens", tokens);
    detail::require_positive(where, "channels", channels);
    detail::checked_extent(where, "before/after", batch, tokens, channels, sizeof(T));
    detail::checked_extent(where, "scores", batch, tokens, 1, sizeof(float));
  }
};

}  // namespace repshift
