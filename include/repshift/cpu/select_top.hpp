#pragma once
// CPU top-k per sample: ranks (policies/select.hpp) of the unprotected
// tokens, nth_element for the best keep - protect, then ascending order.
// O(N) expected per sample; samples spread over the OpenMP threads. Padded
// or packed (PackedRows): each sample its own length and keep count.

#include <algorithm>
#include <cstdint>
#include <functional>
#include <vector>

#include "../params/select_top.hpp"
#include "../policies/select.hpp"
#include "parallel.hpp"

namespace repshift {
namespace cpu {

inline void select_top(const Host& host, const SelectParams& p) {
  p.check_host("select_top", p.batch, p.tokens, p.keep, p.protect);
  const int threads = thread_count(host);
  const std::int64_t max_candidates = p.tokens;
  // One scratch row per thread, allocated before the parallel region so an
  // allocation failure throws here rather than terminating inside OpenMP.
  std::vector<std::uint64_t> scratch(std::size_t(threads) * std::size_t(max_candidates));

#pragma omp parallel for schedule(static) num_threads(threads)
  for (std::int64_t b = 0; b < p.batch; ++b) {
    const float* scores = p.scores + p.token_offset(b, p.scores_batch_stride, p.scores_token_stride);
    int* out = p.keep_idx + p.keep_offset(b, p.keep_batch_stride, p.keep_token_stride);
    const std::int64_t tokens = p.tokens_of(b, p.tokens), keep = p.keep_of(b, p.keep);
    const std::int64_t protect = std::min(p.protect, tokens);
    for (std::int64_t k = 0; k < protect; ++k) out[k * p.keep_token_stride] = int(k);
    const std::int64_t candidates = tokens - protect, chosen = keep - protect;
    if (chosen == 0) continue;

    std::uint64_t* ranks = scratch.data() + std::size_t(thread_index()) * std::size_t(max_candidates);
    for (std::int64_t i = 0; i < candidates; ++i) {
      const std::int64_t n = protect + i;
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
      out[(protect + k) * p.keep_token_stride] = int(ranks[k]);
    }
  }
}

}  // namespace cpu
}  // namespace repshift
