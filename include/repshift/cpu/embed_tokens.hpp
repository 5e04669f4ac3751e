#pragma once
// Text token embedding on the CPU (params/embed_tokens.hpp): every id is
// checked first (EmbedParams::check_ids_host), then each row is summed and
// normalised in place, rows spread over the OpenMP threads.

#include <cstdint>

#include "../core/exec.hpp"
#include "../core/varlen.hpp"
#include "../params/embed_tokens.hpp"
#include "layer_norm.hpp"
#include "parallel.hpp"

namespace repshift {
namespace cpu {

inline void embed_tokens(const Host& host, const EmbedParams<float>& p) {
  p.check_ids_host("embed_tokens");
  const std::int64_t C = p.dim;
#pragma omp parallel for schedule(static) num_threads(thread_count(host))
  for (std::int64_t b = 0; b < p.batch; ++b) {
    for (std::int64_t t = 0; t < seq_length(p.cu_seqlens, b, 0); ++t) {
      float* row = p.out + (seq_begin(p.cu_seqlens, b, 0) + t) * C;
      const float* word = p.word + std::int64_t(p.ids[p.id_at(b, t)]) * C;
      const float* position = p.position + t * C;
      for (std::int64_t c = 0; c < C; ++c) row[c] = word[c] + position[c] + p.token_type[c];
      layer_norm_row(row, row, C, p.norm);
    }
  }
}

}  // namespace cpu
}  // namespace repshift
