#pragma once
// The public entry points (DESIGN.md): raw-pointer forms in the spirit of
// CUB's device APIs, and tensor-view forms that carry shape and strides.
// Each fills its params struct, checks it (throwing InvalidArgument that
// names the argument and value) and hands it to Backend<Exec>.

#include <algorithm>
#include <array>
#include <cstdint>
#include <numeric>
#include <type_traits>

#include "../core/backend.hpp"
#include "../core/exec.hpp"
#include "../core/tensor_view.hpp"
#include "../core/varlen.hpp"
#include "../params/gather_tokens.hpp"
#include "../params/select_top.hpp"
#include "../params/shift_score.hpp"
#include "../policies/metric.hpp"

namespace repshift {
namespace detail {

// Shape and stride checks shared by the tensor-view overloads.
template <class View>
void require_dim(const char* where, const char* name, const View& v, int dim,
                 std::int64_t expected, const char* expected_name) {
  if (v.shape[dim] != expected) {
    fail(where, "{}.shape[{}] = {} must equal {} = {}", name, dim, v.shape[dim], expected_name, expected);
  }
}

template <class View>
void require_unit_inner_stride(const char* where, const char* name, const View& v) {
  constexpr int last = View::rank - 1;
  if (v.stride[last] != 1) {
    fail(where, "{}.stride[{}] = {} must be 1 (innermost dimension contiguous)", name, last, v.stride[last]);
  }
}

// Strides >= 0, and the view's last element addressable in bytes (the
// kernels add up extents times strides).
template <class View>
void require_non_negative_strides(const char* where, const char* name, const View& v) {
  std::int64_t last = 0, step = 0, count = 0, bytes = 0;
  for (int d = 0; d < View::rank; ++d) {
    if (v.stride[d] < 0) {
      fail(where, "{}.stride[{}] = {} must be >= 0", name, d, v.stride[d]);
    }
    if (v.shape[d] > 0 && (__builtin_mul_overflow(v.shape[d] - 1, v.stride[d], &step) ||
                           __builtin_add_overflow(last, step, &last))) {
      fail(where, "{}.shape[{}] = {} at stride {} overflows the 64-bit index type", name, d, v.shape[d], v.stride[d]);
    }
  }
  if (__builtin_add_overflow(last, 1, &count) ||
      __builtin_mul_overflow(count, std::int64_t(sizeof(typename View::value_type)), &bytes)) {
    fail(where, "{} spans {} elements: overflows the 64-bit index type", name, last);
  }
}

// An output view writes each element at its own address: taken by
// increasing stride (extents of 1 aside), each stride reaches past the
// span of the dimensions before it. Conservative, as AttentionParams'
// stride rule: it also refuses the rare interleaved views whose elements
// happen to stay apart (e.g. strides {4C, 3C, 1} on [2, 3, C]), never a
// nested one. After require_non_negative_strides (no overflow left).
template <class View>
void require_no_overlap(const char* where, const char* name, const View& v) {
  std::array<int, View::rank> order;
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int a, int b) { return v.stride[a] < v.stride[b]; });
  std::int64_t span = 1;
  for (const int d : order) {
    if (v.shape[d] <= 1) continue;
    if (v.stride[d] < span) {
      fail(where, "{}.stride[{}] = {} is below the {} elements its inner dimensions span: elements of {} may "
                  "share an address (outputs must nest their dimensions)",
           name, d, v.stride[d], span, name);
    }
    span += (v.shape[d] - 1) * v.stride[d];
  }
}


// Compile-time checks shared by the shift_score forms. They return whether
// the backend call may be instantiated: skipping it for a wrong Metric or T
// (a wrong Exec: backend_checked_v) leaves the static_assert as the only
// error the user reads.
template <class Metric, class Exec, class T>
constexpr bool score_types_ok() {
  static_assert(policies::is_metric_v<Metric>,
                "shift_score<Metric>: Metric must provide Accum, init, accumulate, combine, "
                "finalize (see policies/metric.hpp)");
  if constexpr (is_backend_v<Exec>) {
    static_assert(Backend<Exec>::template supports_v<T>,
                  "shift_score: this Exec does not support the element type T");
    return policies::is_metric_v<Metric> && Backend<Exec>::template supports_v<T>;
  } else {
    return false;
  }
}

}  // namespace detail

// scores[b, n] = Metric(after[b, n, :], before[b, n, :]); contiguous
// [batch, tokens, channels] inputs, [batch, tokens] float scores.
template <class Metric, class Exec, class T>
void shift_score(Exec exec, const T* before, const T* after, float* scores, int batch, int tokens,
                 int channels) {
  constexpr bool types_ok = backend_checked_v<Exec> && detail::score_types_ok<Metric, Exec, T>();
  ShiftParams<T> p;
  p.before = before;
  p.after = after;
  p.scores = scores;
  p.batch = batch;
  p.tokens = tokens;
  p.channels = channels;
  p.before_token_stride = p.after_token_stride = channels;
  p.before_batch_stride = p.after_batch_stride = std::int64_t(tokens) * channels;
  p.scores_token_stride = 1;
  p.scores_batch_stride = tokens;
  p.check("shift_score");
  if constexpr (types_ok) Backend<Exec>::template shift_score<Metric>(exec, p);
}

// keep_idx[b, 0..keep) = the `keep` highest-scoring tokens of sample b,
// always including tokens [0, protect), ascending; ties to the lower index;
// NaN scores rank lowest (policies/select.hpp).
template <class Exec>
void select_top(Exec exec, const float* scores, int* keep_idx, int batch, int tokens, int keep,
                int protect = 0) {
  const auto p = SelectParams::contiguous(scores, keep_idx, batch, tokens, keep, protect);
  p.check("select_top");
  if constexpr (backend_checked_v<Exec>) Backend<Exec>::select_top(exec, p);
}

// out[b, k, :] = x[b, keep_idx[b, k], :]; on the CPU an index outside
// [0, tokens) throws, naming it, before anything is written.
template <class Exec, class T>
void gather_tokens(Exec exec, const T* x, const int* keep_idx, T* out, int batch, int tokens,
                   int keep, int channels) {
  const auto p = GatherParams<T>::contiguous(x, keep_idx, out, batch, tokens, keep, channels, keep);
  p.check("gather_tokens");
  if constexpr (backend_checked_v<Exec>) Backend<Exec>::gather_tokens(exec, p);
}

// ---- packed (varlen) forms: FlashAttention's layout (core/varlen.hpp) ----
// Sample b's tokens are rows [cu_seqlens[b], cu_seqlens[b + 1]) of a
// contiguous [total, channels] array; its kept indices (local to the
// sample, ascending) are rows [kept_cu_seqlens[b], kept_cu_seqlens[b + 1])
// of keep_idx, each sample keeping its own count (e.g. kept_cu_seqlens(...)
// with PruneSchedule::keep_at). max_seqlen / max_keep bound the samples'
// counts. The arrays live in the executor's memory; on the CPU their
// contents are checked (start at 0, never decrease, end at the total).

// scores[i] = Metric(after[i, :], before[i, :]) for the total = cu_seqlens[batch] rows.
template <class Metric, class Exec, class T>
void shift_score_varlen(Exec exec, const T* before, const T* after, float* scores, const int* cu_seqlens, int batch,
                        int total, int channels) {
  if constexpr (is_host_v<Exec>) detail::check_cu_seqlens("shift_score_varlen", "cu_seqlens", cu_seqlens, batch, total);
  // A token's score does not depend on its sample: one run over every row.
  shift_score<Metric>(exec, before, after, scores, 1, total, channels);
}

template <class Exec>
void select_top_varlen(Exec exec, const float* scores, const int* cu_seqlens, const int* kept_cu_seqlens, int* keep_idx,
                       int batch, int max_seqlen, int max_keep, int protect = 0) {
  const auto p = SelectParams::contiguous(scores, keep_idx, batch, max_seqlen, max_keep, protect,
                                          PackedRows{cu_seqlens, kept_cu_seqlens});
  p.check("select_top_varlen");
  if constexpr (backend_checked_v<Exec>) Backend<Exec>::select_top(exec, p);
}

// out rows [kept_cu_seqlens[b], ...) = x rows cu_seqlens[b] + keep_idx;
// out_cu_seqlens, when set, places sample b's rows at out_cu_seqlens[b]
// instead (room after them for rows of the caller's, e.g. Fuse's token);
// it must start at 0 and leave each sample room for its kept rows
// (checked), and out must hold out_cu_seqlens[batch] rows (a raw pointer
// carries no size to check).
template <class Exec, class T>
void gather_tokens_varlen(Exec exec, const T* x, const int* cu_seqlens, const int* keep_idx, const int* kept_cu_seqlens,
                          T* out, int batch, int max_seqlen, int max_keep, int channels,
                          const int* out_cu_seqlens = nullptr) {
  const auto p = GatherParams<T>::contiguous(x, keep_idx, out, batch, max_seqlen, max_keep, channels, max_keep,
                                             PackedRows{cu_seqlens, kept_cu_seqlens}, out_cu_seqlens);
  p.check("gather_tokens_varlen");
  if constexpr (backend_checked_v<Exec>) Backend<Exec>::gather_tokens(exec, p);
}

// ---- tensor-view forms: any batch/token strides, contiguous channels ----

// before, after: [B, N, C]; scores: [B, N].
template <class Metric, class Exec, class TB, class TA>
void shift_score(Exec exec, TensorView<TB, 3> before, TensorView<TA, 3> after,
                 TensorView<float, 2> scores) {
  using T = std::remove_const_t<TB>;
  static_assert(std::is_same_v<T, std::remove_const_t<TA>>,
                "shift_score: before and after must have the same element type");
  constexpr bool types_ok = backend_checked_v<Exec> && detail::score_types_ok<Metric, Exec, T>();
  constexpr const char* where = "shift_score";
  detail::require_dim(where, "after", after, 0, before.shape[0], "before.shape[0]");
  detail::require_dim(where, "after", after, 1, before.shape[1], "before.shape[1]");
  detail::require_dim(where, "after", after, 2, before.shape[2], "before.shape[2]");
  detail::require_dim(where, "scores", scores, 0, before.shape[0], "before.shape[0]");
  detail::require_dim(where, "scores", scores, 1, before.shape[1], "before.shape[1]");
  detail::require_unit_inner_stride(where, "before", before);
  detail::require_unit_inner_stride(where, "after", after);
  detail::require_non_negative_strides(where, "before", before);
  detail::require_non_negative_strides(where, "after", after);
  detail::require_non_negative_strides(where, "scores", scores);
  detail::require_no_overlap(where, "scores", scores);
  ShiftParams<T> p;
  p.before = before.data;
  p.after = after.data;
  p.scores = scores.data;
  p.batch = before.shape[0];
  p.tokens = before.shape[1];
  p.channels = before.shape[2];
  p.before_batch_stride = before.stride[0];
  p.before_token_stride = before.stride[1];
  p.after_batch_stride = after.stride[0];
  p.after_token_stride = after.stride[1];
  p.scores_batch_stride = scores.stride[0];
  p.scores_token_stride = scores.stride[1];
  p.check(where);
  if constexpr (types_ok) Backend<Exec>::template shift_score<Metric>(exec, p);
}

// scores: [B, N]; keep_idx: [B, keep] (keep is its second extent).
template <class Exec, class TS>
void select_top(Exec exec, TensorView<TS, 2> scores, TensorView<int, 2> keep_idx, int protect = 0) {
  static_assert(std::is_same_v<std::remove_const_t<TS>, float>, "select_top: scores must be float");
  constexpr const char* where = "select_top";
  detail::require_dim(where, "keep_idx", keep_idx, 0, scores.shape[0], "scores.shape[0]");
  detail::require_non_negative_strides(where, "scores", scores);
  detail::require_non_negative_strides(where, "keep_idx", keep_idx);
  detail::require_no_overlap(where, "keep_idx", keep_idx);
  SelectParams p;
  p.scores = scores.data;
  p.keep_idx = keep_idx.data;
  p.batch = scores.shape[0];
  p.tokens = scores.shape[1];
  p.keep = keep_idx.shape[1];
  p.protect = protect;
  p.scores_batch_stride = scores.stride[0];
  p.scores_token_stride = scores.stride[1];
  p.keep_batch_stride = keep_idx.stride[0];
  p.keep_token_stride = keep_idx.stride[1];
  p.check(where);
  if constexpr (backend_checked_v<Exec>) Backend<Exec>::select_top(exec, p);
}

// x: [B, N, C]; keep_idx: [B, K]; out: [B, K, C].
template <class Exec, class TX, class TI, class T>
void gather_tokens(Exec exec, TensorView<TX, 3> x, TensorView<TI, 2> keep_idx,
                   TensorView<T, 3> out) {
  static_assert(std::is_same_v<std::remove_const_t<TX>, T>,
                "gather_tokens: x and out must have the same element type");
  static_assert(std::is_same_v<std::remove_const_t<TI>, int>, "gather_tokens: keep_idx must be int");
  static_assert(!std::is_const_v<T>, "gather_tokens: out must be writable");
  constexpr const char* where = "gather_tokens";
  detail::require_dim(where, "keep_idx", keep_idx, 0, x.shape[0], "x.shape[0]");
  detail::require_dim(where, "out", out, 0, x.shape[0], "x.shape[0]");
  detail::require_dim(where, "out", out, 1, keep_idx.shape[1], "keep_idx.shape[1]");
  detail::require_dim(where, "out", out, 2, x.shape[2], "x.shape[2]");
  detail::require_unit_inner_stride(where, "x", x);
  detail::require_unit_inner_stride(where, "out", out);
  detail::require_non_negative_strides(where, "x", x);
  detail::require_non_negative_strides(where, "keep_idx", keep_idx);
  detail::require_non_negative_strides(where, "out", out);
  detail::require_no_overlap(where, "out", out);
  GatherParams<T> p;
  p.x = x.data;
  p.keep_idx = keep_idx.data;
  p.out = out.data;
  p.batch = x.shape[0];
  p.tokens = x.shape[1];
  p.keep = keep_idx.shape[1];
  p.channels = x.shape[2];
  p.x_batch_stride = x.stride[0];
  p.x_token_stride = x.stride[1];
  p.keep_batch_stride = keep_idx.stride[0];
  p.keep_token_stride = keep_idx.stride[1];
  p.out_batch_stride = out.stride[0];
  p.out_token_stride = out.stride[1];
  p.check(where);
  if constexpr (backend_checked_v<Exec>) Backend<Exec>::gather_tokens(exec, p);
}

}  // namespace repshift
