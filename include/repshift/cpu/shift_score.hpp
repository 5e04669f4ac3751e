#pragma once
// CPU shift score: one token per iteration, tokens of all samples spread
// over the OpenMP threads. Reads before/after exactly once.

#include <cstdint>

#include "../params/shift_score.hpp"
#include "parallel.hpp"
#include "reduce_channels.hpp"

namespace repshift {
namespace cpu {

template <class Metric, class T>
void shift_score([[maybe_unused]] const Host& host, const ShiftParams<T>& p) {
  const std::int64_t rows = p.batch * p.tokens;
#pragma omp parallel for schedule(static) num_threads(thread_count(host))
  for (std::int64_t row = 0; row < rows; ++row) {
    const std::int64_t b = row / p.tokens, n = row % p.tokens;
    const T* before = p.before + b * p.before_batch_stride + n * p.before_token_stride;
    const T* after = p.after + b * p.after_batch_stride + n * p.after_token_stride;
    p.scores[b * p.scores_batch_stride + n * p.scores_token_stride] =
        reduce_channels<Metric>(after, before, p.channels);
  }
}

}  // namespace cpu
}  // namespace repshift
