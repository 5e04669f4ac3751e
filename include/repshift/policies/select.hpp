#pragma once
// Selection rule shared by every Exec, so the CPU and CUDA paths keep
// bit-identical index sets.
//
// Order: higher score first; equal scores -> lower token index first.
// -0.0 and +0.0 are equal. NaN ranks below every number (-inf included),
// so a NaN score is kept only when `keep` leaves no other choice and can
// never make selection read out of range.
//
// The rule is encoded as one unsigned 64-bit rank per token,
//   rank = ordered_key(score) << 32 | (0xffffffff - index),
// so "larger rank wins" is the whole comparison: nth_element on the CPU,
// a radix sort on CUDA.

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "../core/config.hpp"
#include "../core/error.hpp"

namespace repshift {
namespace policies {

// Monotone map float -> uint32: a < b  <=>  ordered_key(a) < ordered_key(b);
// -0 maps to +0's key, every NaN maps to 0 (below -inf's key 0x007fffff).
REPSHIFT_HD std::uint32_t ordered_key(float score) {
  if (score != score) return 0u;  // NaN
  if (score == 0.0f) score = 0.0f;  // -0 -> +0
  std::uint32_t u;
  std::memcpy(&u, &score, sizeof u);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

REPSHIFT_HD std::uint64_t selection_rank(float score, std::uint32_t index) {
  return (std::uint64_t(ordered_key(score)) << 32) | std::uint64_t(0xffffffffu - index);
}

REPSHIFT_HD std::uint32_t rank_index(std::uint64_t rank) {
  return 0xffffffffu - std::uint32_t(rank & 0xffffffffu);
}

// A score ranked beside a token forced in by +inf (SsmScan's kept token):
// another +inf (a float L2 that overflowed) would tie it and win by a lower
// index, so it drops to FLT_MAX; NaN stays NaN (last).
REPSHIFT_HD float below_forced(float score) { return score == INFINITY ? FLT_MAX : score; }

// True when token i (score si) is kept before token j (score sj).
REPSHIFT_HD bool ranks_before(float si, std::uint32_t i, float sj, std::uint32_t j) {
  return selection_rank(si, i) > selection_rank(sj, j);
}

// How many tokens a keep ratio leaves: floor(ratio * tokens), but never
// fewer than the protected prefix nor fewer than one. floor, not round, is
// the rule the paper's schedule (and DeiT reference code: int(N * ratio))
// uses, so the counts match it layer for layer.
inline int keep_count(int tokens, double keep_ratio, int protect = 0) {
  detail::require_positive("keep_count", "tokens", tokens);
  detail::require_non_negative("keep_count", "protect", protect);
  detail::require_at_most("keep_count", "protect", protect, "tokens", tokens);
  if (!(keep_ratio > 0.0 && keep_ratio <= 1.0)) {
    detail::fail("keep_count", "keep_ratio = {} must be in (0, 1]", keep_ratio);
  }
  // The epsilon keeps 0.8 * 200 from flooring to 159 through rounding.
  int keep = int(std::floor(keep_ratio * double(tokens) + 1e-9));
  if (keep < protect) keep = protect;
  return keep < 1 ? 1 : keep;
}

// The paper's rule: a layer that receives `tokens` drops floor(drop_ratio *
// tokens) of them (its reference code: N - int(r * N)), never a protected
// one: 197 tokens keep 158 at r = 0.2, then 127, then 102. Can return 0
// (r = 1 with nothing protected): callers that cannot run empty refuse it.
inline int keep_after_drop(int tokens, double drop_ratio, int protect = 0) {
  detail::require_non_negative("keep_after_drop", "tokens", tokens);
  detail::require_non_negative("keep_after_drop", "protect", protect);
  if (!(drop_ratio >= 0.0 && drop_ratio <= 1.0)) {
    detail::fail("keep_after_drop", "drop_ratio = {} must be in [0, 1]", drop_ratio);
  }
  // The epsilon keeps 0.2 * 200 from flooring to 39 through rounding.
  const int drop = int(std::floor(drop_ratio * double(tokens) + 1e-9));
  const int keep = tokens - drop;
  const int floor_keep = protect < tokens ? protect : tokens;
  return keep < floor_keep ? floor_keep : keep;
}

}  // namespace policies
}  // namespace repshift
