#pragma once
// Token importance for ablations: a representation-shift Metric
// (policies/metric.hpp) or one of the baselines below, usable wherever a
// Metric is (Block, models, the ablation sweep).
//
//   TokenNorm     ||after||: the L2 norm of the site's output, i.e. of the
//                 output token at BlockOutput and of the branch output F(x)
//                 at Attention / Mlp (there it ranks as L2 at Update<Site>
//                 does, up to rounding). Written as a Metric that ignores
//                 `before`, so every kernel (CPU lanes, CUDA warps, fused
//                 epilogues) runs it unchanged.
//   Random        uniform in [0, 1) from a seeded hash of (seed, token):
//                 reproducible, independent of the data, and independent
//                 of the batch a sample runs in (every sample of a layer
//                 draws the same ranking, so batching changes nothing).
//   ClsAttention  mean over heads of the CLS row of the attention map, the
//                 EViT-style baseline. It needs the N x N map, which flash
//                 attention never forms, so a block using it runs the plain
//                 attention path: that cost is part of what it measures.
//   AttentionReceived  mean over heads and queries of each key's column of
//                 the attention map: the attention a token receives, the
//                 baseline for models without a class token (the paper's
//                 video baseline). Plain attention path, like ClsAttention.

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "../core/config.hpp"
#include "metric.hpp"
#include "site.hpp"

namespace repshift {
namespace policies {

struct TokenNorm {
  struct Accum { float sq; };
  static constexpr const char* name = "norm";
  static REPSHIFT_HD Accum init() { return {0.0f}; }
  static REPSHIFT_HD void accumulate(Accum& acc, float after, float /*before*/) { acc.sq += after * after; }
  static REPSHIFT_HD Accum combine(Accum x, Accum y) { return {x.sq + y.sq}; }
  static REPSHIFT_HD float finalize(Accum acc) { return std::sqrt(acc.sq); }
};

// Inverted<M>: the same metric with the order reversed, so selection keeps
// the tokens M ranks lowest: the paper's keep-bottom control experiment.
template <class M>
struct Inverted {
  static_assert(is_metric_v<M>, "Inverted<M>: M must be a metric");
  using Accum = typename M::Accum;
  static constexpr const char* name = "inverted";
  static REPSHIFT_HD Accum init() { return M::init(); }
  static REPSHIFT_HD void accumulate(Accum& acc, float a, float b) { M::accumulate(acc, a, b); }
  static REPSHIFT_HD Accum combine(Accum x, Accum y) { return M::combine(x, y); }
  static REPSHIFT_HD float finalize(Accum acc) { return -M::finalize(acc); }
};

struct Random {
  static constexpr const char* name = "random";
  // splitmix64 of the two coordinates; the top 24 bits give a float in
  // [0, 1) with every value equally likely.
  static REPSHIFT_HD float score(std::uint64_t seed, std::uint64_t token) {
    std::uint64_t z = seed * 0x9E3779B97F4A7C15ull + token * 0x94D049BB133111EBull + 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return float(z >> 40) * (1.0f / 16777216.0f);
  }
  // scores[t] for one sample's tokens.
  static void fill(std::uint64_t seed, std::int64_t tokens, float* scores) {
    for (std::int64_t t = 0; t < tokens; ++t) scores[t] = score(seed, std::uint64_t(t));
  }
};

// Both read column means of the attention map: over the class token's row,
// or over every query.
struct ClsAttention {
  static constexpr const char* name = "cls_attn";
  static constexpr bool all_queries = false;
};

struct AttentionReceived {
  static constexpr const char* name = "attn_received";
  static constexpr bool all_queries = true;
};

template <class I>
inline constexpr bool needs_attention_map_v = std::is_same_v<I, ClsAttention> || std::is_same_v<I, AttentionReceived>;

// ClsAttention reads query row 0 of the map as the class token's: that row
// must be a class token, and protected, or the score is of whichever token
// sits there.
template <class I>
constexpr bool reads_class_token() {
  if constexpr (needs_attention_map_v<I>) {
    return !I::all_queries;
  } else {
    return false;
  }
}

template <class I>
inline constexpr bool is_importance_v = is_metric_v<I> || std::is_same_v<I, Random> || needs_attention_map_v<I>;

// ClsAttention and AttentionReceived are read off the attention map, so
// they can only rank tokens where the map exists: in the attention
// sub-layer.
template <class S, class I>
inline constexpr bool valid_site_importance_v = !needs_attention_map_v<I> || std::is_same_v<S, Attention>;

}  // namespace policies
}  // namespace repshift
