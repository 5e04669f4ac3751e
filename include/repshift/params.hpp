#pragma once
// One params struct per entry point, filled once at the API edge from raw
// pointers or tensor views, checked there, and passed by value to the
// kernels of every Exec (FlashAttention's Flash_fwd_params pattern). All
// offsets are 64-bit; strides are in elements.

#include <climits>
#include <cstdint>
#include <string>

#include "error.hpp"
#include "tensor_view.hpp"
#include "varlen.hpp"

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

// keep_idx[b, 0..keep) = the kept token indices of sample b, ascending.
struct SelectParams : PackedRows {
  const float* scores = nullptr;
  int* keep_idx = nullptr;
  std::int64_t batch = 0, tokens = 0, keep = 0, protect = 0;
  std::int64_t scores_batch_stride = 0, scores_token_stride = 0;
  std::int64_t keep_batch_stride = 0, keep_token_stride = 0;

  void check(const char* where) const {
    check_pointers(where);
    detail::require_pointer(where, "scores", scores);
    detail::require_pointer(where, "keep_idx", keep_idx);
    detail::require_positive(where, "batch", batch);
    detail::require_positive(where, "tokens", tokens);
    detail::require_positive(where, "keep", keep);
    detail::require_non_negative(where, "protect", protect);
    // Indices are written as int: the token count must fit.
    detail::require_at_most(where, "tokens", tokens, "INT_MAX", INT_MAX);
    detail::require_at_most(where, "keep", keep, "tokens", tokens);
    detail::require_at_most(where, "protect", protect, "tokens", tokens);
    detail::require_at_most(where, "protect", protect, "keep", keep);
    detail::checked_extent(where, "scores", batch, tokens, 1, sizeof(float));
  }
};

// out[b, k, :] = x[b, keep_idx[b, k], :]; packed: out's rows start at
// out_cu_seqlens[b] (null: kept_cu_seqlens[b], like keep_idx's).
template <class T>
struct GatherParams : PackedRows {
  const T* x = nullptr;
  const int* keep_idx = nullptr;
  T* out = nullptr;
  const int* out_cu_seqlens = nullptr;
  std::int64_t batch = 0, tokens = 0, keep = 0, channels = 0;
  std::int64_t x_batch_stride = 0, x_token_stride = 0;
  std::int64_t keep_batch_stride = 0, keep_token_stride = 0;
  std::int64_t out_batch_stride = 0, out_token_stride = 0;

  void check(const char* where) const {
    check_pointers(where);
    if (out_cu_seqlens) detail::require_pointer(where, "cu_seqlens", cu_seqlens);
    detail::require_pointer(where, "x", x);
    detail::require_pointer(where, "keep_idx", keep_idx);
    detail::require_pointer(where, "out", out);
    detail::require_positive(where, "batch", batch);
    detail::require_positive(where, "tokens", tokens);
    detail::require_positive(where, "keep", keep);
    detail::require_positive(where, "channels", channels);
    detail::require_at_most(where, "tokens", tokens, "INT_MAX", INT_MAX);
    detail::require_at_most(where, "keep", keep, "tokens", tokens);
    detail::checked_extent(where, "x", batch, tokens, channels, sizeof(T));
    detail::checked_extent(where, "out", batch, keep, channels, sizeof(T));
  }
};

namespace detail {

// Shape and stride checks shared by the tensor-view overloads.
template <class View>
void require_dim(const char* where, const char* name, const View& v, int dim,
                 std::int64_t expected, const char* expected_name) {
  if (v.shape[dim] != expected) {
    fail(where, std::string(name) + ".shape[" + std::to_string(dim) + "] = " +
                    std::to_string(v.shape[dim]) + " must equal " + expected_name + " = " +
                    std::to_string(expected));
  }
}

template <class View>
void require_unit_inner_stride(const char* where, const char* name, const View& v) {
  constexpr int last = View::rank - 1;
  if (v.stride[last] != 1) {
    fail(where, std::string(name) + ".stride[" + std::to_string(last) + "] = " +
                    std::to_string(v.stride[last]) + " must be 1 (innermost dimension contiguous)");
  }
}

template <class View>
void require_non_negative_strides(const char* where, const char* name, const View& v) {
  for (int d = 0; d < View::rank; ++d) {
    if (v.stride[d] < 0) {
      fail(where, std::string(name) + ".stride[" + std::to_string(d) + "] = " +
                      std::to_string(v.stride[d]) + " must be >= 0");
    }
  }
}

}  // namespace detail
}  // namespace repshift
