#pragma once
// Distance policies D(after, before) for the representation shift.
//
// A Metric is a stateless struct with
//   struct Accum;                                     per-lane partial state
//   static Accum init();
//   static void  accumulate(Accum&, float after, float before);
//   static Accum combine(Accum, Accum);               associative merge
//   static float finalize(Accum);                     -> score, larger = more shift
// One definition serves the CPU lanes, a CUDA warp reduction and a fused
// GEMM epilogue: every kernel splits the channels into partial Accums and
// combines them, so a new metric is just another struct (see
// examples/03_custom_metric). Larger score = larger shift = more important.

#include <cfloat>
#include <cmath>
#include <type_traits>

#include "../core/config.hpp"

namespace repshift {
namespace policies {

// L1 = sum_c |a_c - b_c|
struct L1 {
  struct Accum { float sum; };
  static constexpr const char* name = "l1";
  static REPSHIFT_HD Accum init() { return {0.0f}; }
  static REPSHIFT_HD void accumulate(Accum& acc, float a, float b) { acc.sum += std::fabs(a - b); }
  static REPSHIFT_HD Accum combine(Accum x, Accum y) { return {x.sum + y.sum}; }
  static REPSHIFT_HD float finalize(Accum acc) { return acc.sum; }
};

// L2 = sqrt(sum_c (a_c - b_c)^2), the paper's default.
struct L2 {
  struct Accum { float sq; };
  static constexpr const char* name = "l2";
  static REPSHIFT_HD Accum init() { return {0.0f}; }
  static REPSHIFT_HD void accumulate(Accum& acc, float a, float b) {
    const float d = a - b;
    acc.sq += d * d;
  }
  static REPSHIFT_HD Accum combine(Accum x, Accum y) { return {x.sq + y.sq}; }
  static REPSHIFT_HD float finalize(Accum acc) { return std::sqrt(acc.sq); }
};

// Cosine = 1 - a.b / (|a| |b|), in [0, 2].
// Zero vectors have no direction, so the ratio is undefined; we define:
//   both zero            -> 0  (the token did not change: no shift)
//   exactly one is zero  -> 1  (similarity taken as 0, as for orthogonal vectors)
// The squares are summed in float, as the other metrics: a vector whose sum
// underflows to 0 (every |channel| below ~1e-23) counts as zero, and one whose
// sum overflows (norm above ~1.8e19) scores NaN, as an inf input does,
// instead of a plausible ratio of an infinite norm.
// The result is clamped to [0, 2] so rounding never yields a tiny negative.
struct Cosine {
  struct Accum { float dot, aa, bb; };
  static constexpr const char* name = "cosine";
  static REPSHIFT_HD Accum init() { return {0.0f, 0.0f, 0.0f}; }
  static REPSHIFT_HD void accumulate(Accum& acc, float a, float b) {
    acc.dot += a * b;
    acc.aa += a * a;
    acc.bb += b * b;
  }
  static REPSHIFT_HD Accum combine(Accum x, Accum y) {
    return {x.dot + y.dot, x.aa + y.aa, x.bb + y.bb};
  }
  static REPSHIFT_HD float finalize(Accum acc) {
    // Non-finite first: a NaN or overflowing side beside a zero one is NaN,
    // not the zero rule's 1, so a contaminated token still ranks last.
    if (!(acc.aa <= FLT_MAX) || !(acc.bb <= FLT_MAX)) return NAN;
    const bool a_zero = acc.aa == 0.0f, b_zero = acc.bb == 0.0f;
    if (a_zero || b_zero) return (a_zero && b_zero) ? 0.0f : 1.0f;
    const float d = 1.0f - acc.dot / (std::sqrt(acc.aa) * std::sqrt(acc.bb));
    // fmin/fmax would swallow a NaN; keep it so callers see bad input.
    return d < 0.0f ? 0.0f : (d > 2.0f ? 2.0f : d);
  }
};

// is_metric_v<M>: M meets the contract above. Public templates open with
// static_assert(is_metric_v<M>) so a wrong argument fails with one line.
template <class M, class = void>
struct is_metric : std::false_type {};

template <class M>
struct is_metric<M, std::void_t<typename M::Accum,
                                decltype(M::init()),
                                decltype(M::accumulate(std::declval<typename M::Accum&>(), 0.0f, 0.0f)),
                                decltype(M::combine(M::init(), M::init())),
                                decltype(M::finalize(M::init()))>>
    : std::bool_constant<std::is_same_v<decltype(M::init()), typename M::Accum> &&
                         std::is_same_v<decltype(M::combine(M::init(), M::init())), typename M::Accum> &&
                         std::is_convertible_v<decltype(M::finalize(M::init())), float>> {};

template <class M>
inline constexpr bool is_metric_v = is_metric<M>::value;

}  // namespace policies
}  // namespace repshift
