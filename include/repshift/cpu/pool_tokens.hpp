#pragma once
// Mean pooling of token rows on the CPU (params/pool_tokens.hpp): one
// sample per OpenMP iteration, sums in double in row order (a chunk of
// channels at a time), so a sample's result does not depend on its batch.

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "../core/exec.hpp"
#include "../core/varlen.hpp"
#include "../params/pool_tokens.hpp"
#include "parallel.hpp"

namespace repshift {
namespace cpu {

inline void pool_tokens(const Host& host, const PoolParams<float>& p) {
  const std::int64_t C = p.channels;
#pragma omp parallel for schedule(static) num_threads(thread_count(host))
  for (std::int64_t b = 0; b < p.batch; ++b) {
    float* out = p.out + b * C;
    const std::int64_t begin = seq_begin(p.cu_seqlens, b, p.tokens), n = seq_length(p.cu_seqlens, b, p.tokens);
    double weight = 0.0;
    for (std::int64_t i = begin; i < begin + n; ++i) weight += p.sizes ? double(p.sizes[i]) : 1.0;
    double sq = 0.0;
    // Channels a chunk at a time, each row's chunk read contiguously.
    constexpr std::int64_t kChunk = 256;
    for (std::int64_t c0 = 0; c0 < C; c0 += kChunk) {
      const std::int64_t width = std::min(kChunk, C - c0);
      double sum[kChunk] = {};
      for (std::int64_t i = begin; i < begin + n; ++i) {
        const double s = p.sizes ? double(p.sizes[i]) : 1.0;
        const float* row = p.x + i * C + c0;
        for (std::int64_t c = 0; c < width; ++c) sum[c] += s * row[c];
      }
      for (std::int64_t c = 0; c < width; ++c) {
        out[c0 + c] = float(sum[c] / weight);
        sq += double(out[c0 + c]) * out[c0 + c];
      }
    }
    if (!p.normalize) continue;
    const float inv = float(1.0 / std::max(std::sqrt(sq), 1e-12));
    for (std::int64_t c = 0; c < C; ++c) out[c] *= inv;
  }
}

}  // namespace cpu
}  // namespace repshift
