#pragma once
// Arguments of gather_tokens. Filled once at the API edge from raw pointers or tensor views, checked
// there, and passed by value to the kernels of every Exec
// (FlashAttention's Flash_fwd_params pattern). Offsets are 64-bit, strides
// in elements.

#include <climits>
#include <cstdint>

#include "../core/error.hpp"
#include "../core/varlen.hpp"

namespace repshift {

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

  // Contiguous [batch, tokens, channels] x, [batch, keep] indices and
  // [batch, out_rows, channels] out (out_rows >= keep leaves room after
  // each sample's kept rows); packed when `rows` has cu_seqlens.
  static GatherParams contiguous(const T* x, const int* keep_idx, T* out, std::int64_t batch, std::int64_t tokens,
                                 std::int64_t keep, std::int64_t channels, std::int64_t out_rows,
                                 const PackedRows& rows = {}, const int* out_cu_seqlens = nullptr) {
    GatherParams p;
    static_cast<PackedRows&>(p) = rows;
    p.out_cu_seqlens = out_cu_seqlens;
    p.x = x;
    p.keep_idx = keep_idx;
    p.out = out;
    p.batch = batch;
    p.tokens = tokens;
    p.keep = keep;
    p.channels = channels;
    p.x_batch_stride = tokens * channels;
    p.keep_batch_stride = keep;
    p.out_batch_stride = out_rows * channels;
    p.x_token_stride = p.out_token_stride = channels;
    p.keep_token_stride = 1;
    return p;
  }

  void check(const char* where) const {
    check_pointers(where);
    if (out_cu_seqlens) detail::require_pointer(where, "cu_seqlens", cu_seqlens);
    detail::require_positive(where, "batch", batch);
    require_count(where, "tokens", tokens);
    require_count(where, "keep", keep);
    // Read or written only where there are tokens (an empty tensor's data may be null).
    if (tokens > 0) detail::require_pointer(where, "x", x);
    if (keep > 0) {
      detail::require_pointer(where, "keep_idx", keep_idx);
      detail::require_pointer(where, "out", out);
    }
    detail::require_positive(where, "channels", channels);
    detail::require_at_most(where, "tokens", tokens, "INT_MAX", INT_MAX);
    detail::require_at_most(where, "keep", keep, "tokens", tokens);
    detail::checked_extent(where, "x", batch, tokens, channels, sizeof(T));
    detail::checked_extent(where, "out", batch, keep, channels, sizeof(T));
  }

  // out_cu_seqlens' contents (host memory): from 0, and room in each
  // sample's output rows for its kept tokens, so samples never overlap.
  void check_out_rows_host(const char* where) const {
    if (!out_cu_seqlens) return;
    detail::check_cu_seqlens(where, "out_cu_seqlens", out_cu_seqlens, batch);
    for (std::int64_t b = 0; b < batch; ++b) {
      const std::int64_t rows = seq_length(out_cu_seqlens, b, 0), kept = keep_of(b, keep);
      if (rows < kept) {
        detail::fail(where, "out_cu_seqlens gives sample {} {} rows for its {} kept tokens", b, rows, kept);
      }
    }
  }
};

}  // namespace repshift
