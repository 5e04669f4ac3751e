#pragma once
// Text token embedding on the CPU (params/embed_tokens.hpp): every id is
// checked first, then each row is summed and normalised in place, rows
// spread over the OpenMP threads.

#include <cstdint>

#include "../core/error.hpp"
#include "../core/exec.hpp"
#include "../core/varlen.hpp"
#include "../params/embed_tokens.hpp"
#include "layer_norm.hpp"
#include "parallel.hpp"

namespace repshift {
namespace cpu {

inline void embed_tokens(const Host& host, const EmbedParams<float>& p) {
  const auto id_at = [&](std::int64_t b, std::int64_t t) {
    return p.ids_stride ? b * p.ids_stride + t : seq_begin(p.cu_seqlens, b, 0) + t;
  };
  for (std::int64_t b = 0; b < p.batch; ++b) {
    for (std::int64_t t = 0; t < seq_length(p.cu_seqlens, b, 0); ++t) {
      const std::int64_t i = id_at(b, t);
      if (p.ids[i] < 0 || p.ids[i] >= p.vocab) {
        repshift::detail::fail("embed_tokens", "ids[{}] = {} is outside [0, vocab_size = {})", i, p.ids[i], p.vocab);
      }
    }
  }
  const std::int64_t C = p.dim;
#pragma omp parallel for schedule(static) num_threads(thread_count(host))
  for (std::int64_t b = 0; b < p.batch; ++b) {
    for (std::int64_t t = 0; t < seq_length(p.cu_seqlens, b, 0); ++t) {
      float* row = p.out + (seq_begin(p.cu_seqlens, b, 0) + t) * C;
      const float* word = p.word + std::int64_t(p.ids[id_at(b, t)]) * C;
      const float* position = p.position + t * C;
      for (std::int64_t c = 0; c < C; ++c) row[c] = word[c] + position[c] + p.token_type[c];
      layer_norm_row(row, row, C, p.norm);
    }
  }
}

}  // namespace cpu
}  // namespace repshift
