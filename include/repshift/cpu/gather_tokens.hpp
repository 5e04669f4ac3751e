#pragma once
// CPU gather: out[b, k, :] = x[b, keep_idx[b, k], :], one row copy per
// (b, k). Indices are validated first, serially, so a bad index throws
// (naming it) before anything is written.

#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>

#include "../params.hpp"
#include "parallel.hpp"

namespace repshift {
namespace cpu {

inline void check_keep_indices(const char* where, const int* keep_idx, std::int64_t batch,
                               std::int64_t keep, std::int64_t batch_stride,
                               std::int64_t token_stride, std::int64_t tokens) {
  for (std::int64_t b = 0; b < batch; ++b) {
    for (std::int64_t k = 0; k < keep; ++k) {
      const int i = keep_idx[b * batch_stride + k * token_stride];
      if (i < 0 || i >= tokens) {
        detail::fail(where, "keep_idx[" + std::to_string(b) + ", " + std::to_string(k) + "] = " +
                                std::to_string(i) + " is outside [0, tokens = " +
                                std::to_string(tokens) + ")");
      }
    }
  }
}

template <class T>
void gather_tokens([[maybe_unused]] const Host& host, const GatherParams<T>& p) {
  static_assert(std::is_trivially_copyable_v<T>, "gather_tokens copies rows bytewise");
  check_keep_indices("gather_tokens", p.keep_idx, p.batch, p.keep, p.keep_batch_stride,
                     p.keep_token_stride, p.tokens);
  const std::int64_t rows = p.batch * p.keep;
  const std::size_t row_bytes = std::size_t(p.channels) * sizeof(T);
#pragma omp parallel for schedule(static) num_threads(thread_count(host))
  for (std::int64_t row = 0; row < rows; ++row) {
    const std::int64_t b = row / p.keep, k = row % p.keep;
    const std::int64_t n = p.keep_idx[b * p.keep_batch_stride + k * p.keep_token_stride];
    std::memcpy(p.out + b * p.out_batch_stride + k * p.out_token_stride,
                p.x + b * p.x_batch_stride + n * p.x_token_stride, row_bytes);
  }
}

}  // namespace cpu
}  // namespace repshift
