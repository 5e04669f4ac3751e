#pragma once
// ImportanceOp<Importance>: how an importance policy scores a layer's
// tokens on any executor, where the block's Site scores.
//   A shift metric (and the token norm) is fused: the residual epilogue
//   computes it on rows it reads anyway, so its op does nothing here.
//   Random, ClsAttention and AttentionReceived write their scores with the
//   executor's ops.

#include <cstdint>
#include <type_traits>

#include "../core/backend.hpp"
#include "../params/residual_rows.hpp"
#include "../policies/importance.hpp"

namespace repshift {

// What an importance op may read: the layer's tokens (padded: `tokens`
// each; packed: cu_seqlens in the executor's memory, `tokens` the longest),
// its seed and, for the map importances, the [batch, heads, tokens, tokens]
// map.
struct ImportanceInputs {
  std::int64_t batch = 0, tokens = 0, heads = 0;
  const int* cu_seqlens = nullptr;
  std::uint64_t seed = 0;
  const float* attention_map = nullptr;
};

template <class Importance>
struct ImportanceOp {
  static_assert(policies::is_metric_v<Importance>, "ImportanceOp: not an importance policy");
  static constexpr bool fused = true;  // computed inside the residual epilogue
  static constexpr bool needs_map = false;
  template <class Exec>
  static void score(const Exec&, const ImportanceInputs&, float*) {}
};

template <>
struct ImportanceOp<policies::Random> {
  static constexpr bool fused = false;
  static constexpr bool needs_map = false;
  template <class Exec>
  static void score(const Exec& exec, const ImportanceInputs& in, float* scores) {
    Backend<Exec>::random_scores(exec, in.seed, in.batch, in.tokens, scores, in.cu_seqlens);
  }
};

// ClsAttention and AttentionReceived: column means of the attention map
// (the block runs the plain, map-writing attention path for them).
template <class MapImportance>
struct AttentionMapScores {
  static constexpr bool fused = false;
  static constexpr bool needs_map = true;
  template <class Exec>
  static void score(const Exec& exec, const ImportanceInputs& in, float* scores) {
    Backend<Exec>::template attention_column_means<MapImportance::all_queries>(
        exec, in.attention_map, in.batch, in.heads, in.tokens, scores, in.cu_seqlens);
  }
};

template <>
struct ImportanceOp<policies::ClsAttention> : AttentionMapScores<policies::ClsAttention> {};
template <>
struct ImportanceOp<policies::AttentionReceived> : AttentionMapScores<policies::AttentionReceived> {};

// The one runtime -> template switch of the residual epilogues: score or
// not. Importances without a fused score run the plain epilogue
// (instantiated with L2, whose score code it never uses).
template <class Importance, ScoreOperands Operands, bool PostNorm, class Exec, class T>
void residual_with_score(const Exec& exec, const ResidualRows<T>& e, bool score) {
  constexpr bool fused = ImportanceOp<Importance>::fused;
  using Fused = std::conditional_t<fused, Importance, policies::L2>;
  if constexpr (fused && Operands != ScoreOperands::None) {
    if (score) return Backend<Exec>::template residual_epilogue<Fused, Operands, PostNorm>(exec, e);
  }
  Backend<Exec>::template residual_epilogue<Fused, ScoreOperands::None, PostNorm>(exec, e);
}

}  // namespace repshift
