#pragma once
// Token scores that are not a fused shift metric, on the CPU: the Random
// importance, the CLS-attention importance read off the attention map, and
// log(size) for proportional attention. Padded (cu_seqlens null: `tokens`
// per sample) or packed, like the CUDA kernels of cuda/token_scores.cuh.

#include <cmath>
#include <cstdint>

#include "../core/error.hpp"
#include "../core/exec.hpp"
#include "../policies/importance.hpp"
#include "../core/varlen.hpp"

namespace repshift {
namespace cpu {

// scores of sample b's token t = Random::score(seed, t): batch-invariant.
inline void random_scores(const Host&, std::uint64_t seed, std::int64_t batch, std::int64_t tokens, float* scores,
                          const int* cu_seqlens) {
  for (std::int64_t b = 0; b < batch; ++b) {
    policies::Random::fill(seed, seq_length(cu_seqlens, b, tokens), scores + seq_begin(cu_seqlens, b, tokens));
  }
}

// The map importances: the mean over heads, and over the first `queries`
// query rows, of the map's column t. ClsAttention reads the class token's
// row (AllQueries = false); AttentionReceived every query of the sample
// (true): the attention token t receives. map [batch, heads, tokens, tokens]
// with sample b's n x n map in its top-left corner; rows are summed whole
// (unit stride), in a fixed order.
template <bool AllQueries>
void attention_column_means(const Host&, const float* map, std::int64_t batch, std::int64_t heads,
                            std::int64_t tokens, float* scores, const int* cu_seqlens) {
  for (std::int64_t b = 0; b < batch; ++b) {
    const std::int64_t n = seq_length(cu_seqlens, b, tokens), queries = AllQueries ? n : 1;
    float* s = scores + seq_begin(cu_seqlens, b, tokens);
    for (std::int64_t t = 0; t < n; ++t) s[t] = 0.0f;
    for (std::int64_t h = 0; h < heads; ++h)
      for (std::int64_t q = 0; q < queries; ++q) {
        const float* row = map + ((b * heads + h) * tokens + q) * tokens;
        for (std::int64_t t = 0; t < n; ++t) s[t] += row[t];
      }
    for (std::int64_t t = 0; t < n; ++t) s[t] /= float(heads * queries);
  }
}

// out = log(sizes); sizes must be finite and > 0.
inline void log_sizes(const Host&, const float* sizes, std::int64_t n, float* out) {
  for (std::int64_t i = 0; i < n; ++i) {
    if (!(sizes[i] > 0.0f) || !std::isfinite(sizes[i])) {
      repshift::detail::fail("log_sizes", "sizes[{}] = {} must be finite and > 0", i, sizes[i]);
    }
    out[i] = std::log(sizes[i]);
  }
}

}  // namespace cpu
}  // namespace repshift
