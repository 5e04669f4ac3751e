#pragma once
// CPU Compress = Fuse row (params/fuse_tokens.hpp has the contract): one sample
// per task, the dropped rows' importance-weighted mean written after the
// kept rows.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "../core/exec.hpp"
#include "../params/fuse_tokens.hpp"
#include "../core/varlen.hpp"
#include "parallel.hpp"

namespace repshift {
namespace cpu {

inline void fuse_dropped(const Host& host, const FuseParams<float>& p) {
  const int threads = thread_count(host);
  // One kept-flag row per thread, allocated before the parallel region.
  std::vector<char> flags(std::size_t(threads) * std::size_t(p.tokens));
#pragma omp parallel for schedule(static) num_threads(threads)
  for (std::int64_t b = 0; b < p.batch; ++b) {
    const std::int64_t n = seq_length(p.cu_seqlens, b, p.tokens), k = seq_length(p.kept_cu_seqlens, b, p.keep);
    if (k >= n) continue;  // nothing dropped: no fused row
    char* kept = flags.data() + std::size_t(thread_index()) * std::size_t(p.tokens);
    std::fill(kept, kept + n, 0);
    const int* idx = p.keep_idx + seq_begin(p.kept_cu_seqlens, b, p.keep);
    for (std::int64_t i = 0; i < k; ++i) kept[idx[i]] = 1;
    const std::int64_t in = seq_begin(p.cu_seqlens, b, p.tokens);
    const float* s = p.scores + in;
    FuseWeights weights;
    weights.dropped = n - k;
    for (std::int64_t t = 0; t < n; ++t) {
      if (kept[t]) continue;
      weights.total += double(s[t]);
      weights.infinite += s[t] == INFINITY;
    }
    float* fused = p.out + (seq_begin(p.out_cu_seqlens, b, p.keep + 1) + k) * p.channels;
    std::fill(fused, fused + p.channels, 0.0f);
    for (std::int64_t t = 0; t < n; ++t) {
      if (kept[t]) continue;
      const float weight = weights.of(s[t]);
      const float* row = p.src + (in + t) * p.channels;
      for (std::int64_t c = 0; c < p.channels; ++c) fused[c] += weight * row[c];
    }
  }
}

}  // namespace cpu
}  // namespace repshift
