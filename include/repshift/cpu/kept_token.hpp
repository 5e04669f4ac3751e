#pragma once
// SsmScan's always-kept token (Vim's class token, anywhere in the
// sequence) on the CPU, as cuda/kept_token.cuh does it on the GPU:
//   rank_kept_token:     scores copied with +inf at keep_token[b] (any
//                        other +inf lowered to FLT_MAX), so select_top
//                        keeps it whatever the scores;
//   relocate_kept_token: keep_token[b] = its position among the kept.
// The indices are host memory here, so a bad one throws (CUDA records it
// in exec.status instead).

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "../core/error.hpp"
#include "../core/exec.hpp"
#include "../policies/select.hpp"

namespace repshift {
namespace cpu {

inline void check_kept_token(const int* keep_token, std::int64_t batch, std::int64_t tokens) {
  for (std::int64_t b = 0; b < batch; ++b) {
    if (keep_token[b] < 0 || keep_token[b] >= tokens) {
      repshift::detail::fail("Block<SsmScan>::forward", "keep_token[{}] = {} is outside [0, tokens = {})", b,
                             keep_token[b], tokens);
    }
  }
}

// ranked [batch, tokens] = scores, +inf at each sample's kept token and
// FLT_MAX for another token's +inf (a float L2 that overflowed): ties go
// to the lower index, so an earlier +inf would otherwise take the kept
// token's place.
inline void rank_kept_token(const Host&, const float* scores, const int* keep_token, std::int64_t batch,
                            std::int64_t tokens, float* ranked) {
  check_kept_token(keep_token, batch, tokens);
  std::transform(scores, scores + batch * tokens, ranked, policies::below_forced);
  for (std::int64_t b = 0; b < batch; ++b) ranked[b * tokens + keep_token[b]] = INFINITY;
}

// keep_idx rows are ascending: a binary search finds the kept token.
inline void relocate_kept_token(const Host&, const int* keep_idx, std::int64_t batch, std::int64_t keep,
                                int* keep_token) {
  for (std::int64_t b = 0; b < batch; ++b) {
    const int* idx = keep_idx + b * keep;
    keep_token[b] = int(std::lower_bound(idx, idx + keep, keep_token[b]) - idx);
  }
}

}  // namespace cpu
}  // namespace repshift
