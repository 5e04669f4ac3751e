#pragma once
// CPU top-k per sample: ranks (policies/select.hpp) of the unprotected
// tokens, nth_element for the best keep - protect, then ascending order.
// O(N) expected per sample; samples spread over the OpenMP threads.

#include <algorithm>
#include <cstdint>
#include <functional>
#include <vector>

#include "../params.hpp"
#include "../policies/select.hpp"
#include "parallel.hpp"

namespace repshift {
namespace cpu {

inline void select_top(const Host& host, const SelectParams& p) {
  const int threads = thread_count(host);
  const std::int64_t candidates = p.tokens - p.protect;
  const std::int64_t chosen = p.keep - p.protect;
  // One scratch row per thread, allocated before the parallel region so an
  // allocation failure throws here rather than terminating inside OpenMP.
  std::vector<std::uint64_t> scratch(std::size_t(threads) * std::size_t(candidates));

#pragma omp parallel for schedule(static) num_threads(threads)
  for (std::int64_t b = 0; b < p.batch; ++b) {
    const float* scores = p.scores + b * p.scores_batch_stride;
    int* out = p.keep_idx + b * p.keep_batch_stride;
    for (std::int64_t k = 0; k < p.protect; ++k) out[k * p.keep_token_stride] = int(k);
    if (chosen == 0) continue;

    std::uint64_t* ranks = scratch.data() + std::size_t(thread_index()) * std::size_t(candidates);
    for (std::int64_t i = 0; i < candidates; ++i) {
      const std::int64_t n = p.protect + i;
      ranks[i] = policies::selection_rank(scores[n * p.scores_token_stride], std::uint32_t(n));
    }
    if (chosen < candidates) {
      std::nth_element(ranks, ranks + chosen, ranks + candidates, std::greater<>());
    }
    // Ranks order by index descending within equal keys; only the indices
    // matter now, so sort the chosen ones by index.
    for (std::int64_t k = 0; k < chosen; ++k) ranks[k] = policies::rank_index(ranks[k]);
    std::sort(ranks, ranks + chosen);
    for (std::int64_t k = 0; k < chosen; ++k) {
      out[(p.protect + k) * p.keep_token_stride] = int(ranks[k]);
    }
  }
}

}  // namespace cpu
}  // namespace repshift
