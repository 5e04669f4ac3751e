#pragma once
// CPU gather: out[b, k, :] = x[b, keep_idx[b, k], :], one row copy per
// (b, k), padded or packed (PackedRows). Indices are validated first, serially, so a bad index throws
// (naming it) before anything is written.

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "../params/gather_tokens.hpp"
#include "parallel.hpp"

namespace repshift {
namespace cpu {

// Every kept index of sample b lies in [0, its token count).
template <class Params>
void check_keep_indices(const char* where, const Params& p) {
  for (std::int64_t b = 0; b < p.batch; ++b) {
    const int* idx = p.keep_idx + p.keep_offset(b, p.keep_batch_stride, p.keep_token_stride);
    const std::int64_t tokens = p.tokens_of(b, p.tokens);
    for (std::int64_t k = 0; k < p.keep_of(b, p.keep); ++k) {
      const int i = idx[k * p.keep_token_stride];
      if (i < 0 || i >= tokens) {
        repshift::detail::fail(where, "keep_idx[{}, {}] = {} is outside [0, tokens = {})", b, k, i, tokens);
      }
    }
  }
}

template <class T>
void gather_tokens([[maybe_unused]] const Host& host, const GatherParams<T>& p) {
  static_assert(std::is_trivially_copyable_v<T>, "gather_tokens copies rows bytewise");
  p.check_host("gather_tokens", p.batch, p.tokens, p.keep, 0);
  p.check_out_rows_host("gather_tokens");
  check_keep_indices("gather_tokens", p);
  const std::size_t row_bytes = std::size_t(p.channels) * sizeof(T);
#pragma omp parallel for schedule(static) num_threads(thread_count(host))
  for (std::int64_t b = 0; b < p.batch; ++b) {
    const int* idx = p.keep_idx + p.keep_offset(b, p.keep_batch_stride, p.keep_token_stride);
    const T* x = p.x + p.token_offset(b, p.x_batch_stride, p.x_token_stride);
    T* out = p.out + (p.out_cu_seqlens ? std::int64_t(p.out_cu_seqlens[b]) * p.out_token_stride
                                       : p.keep_offset(b, p.out_batch_stride, p.out_token_stride));
    const std::int64_t keep = p.keep_of(b, p.keep);
    for (std::int64_t k = 0; k < keep; ++k) {
      std::memcpy(out + k * p.out_token_stride, x + std::int64_t(idx[k * p.keep_token_stride]) * p.x_token_stride,
                  row_bytes);
    }
  }
}

}  // namespace cpu
}  // namespace repshift
