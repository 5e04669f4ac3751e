#pragma once
// Which (Backbone, Site, Importance, Compress) combinations a Block
// accepts, and why the others are refused: CombinationRule<...>::why_not
// is null for a valid combination and the reason otherwise; site_ok,
// importance_ok and compress_ok say which part fails. Sweeps filter on
// valid_combination_v, with_policies reports why_not, the Blocks
// static_assert on the parts (one message each).
//   Transformer: every site and compress; ClsAttention and AttentionReceived only at Site = Attention.
//   SsmScan:     Site = BlockOutput (no attention / MLP sub-layer), Compress =
//                Prune (the scan needs token order), no map importance.
//   CnnRows:     Site = BlockOutput, Compress = Prune, a shift metric or TokenNorm
//                (per-pixel scores; Random and the map importances have no pixels).

#include <type_traits>

#include "backbone.hpp"
#include "compress.hpp"
#include "importance.hpp"
#include "site.hpp"

namespace repshift {
namespace policies {

template <class Backbone, class S, class I, class C>
struct CombinationRule {
  static constexpr bool site_ok = false, importance_ok = false, compress_ok = false;
  static constexpr const char* why_not = "no Block implements this backbone";
};

template <class S, class I, class C>
struct CombinationRule<Transformer, S, I, C> {
  static constexpr bool site_ok = true, compress_ok = true;
  static constexpr bool importance_ok = valid_site_importance_v<S, I>;
  static constexpr const char* why_not =
      importance_ok ? nullptr : "this importance is read off the attention map: use site = 'attn'";
};

template <class S, class I, class C>
struct CombinationRule<SsmScan, S, I, C> {
  static constexpr bool site_ok = std::is_same_v<S, BlockOutput>;
  static constexpr bool compress_ok = std::is_same_v<C, Prune>;
  static constexpr bool importance_ok = !needs_attention_map_v<I>;
  static constexpr const char* why_not =
      site_ok && compress_ok && importance_ok
          ? nullptr
          : "backbone = 'ssm_scan' takes site = 'block', compress = 'prune' and no attention-map importance";
};

template <class S, class I, class C>
struct CombinationRule<CnnRows, S, I, C> {
  static constexpr bool site_ok = std::is_same_v<S, BlockOutput>;
  static constexpr bool compress_ok = std::is_same_v<C, Prune>;
  static constexpr bool importance_ok = is_metric_v<I>;
  static constexpr const char* why_not =
      site_ok && compress_ok && importance_ok
          ? nullptr
          : "backbone = 'cnn_rows' takes site = 'block', compress = 'prune' and a per-pixel metric (or norm)";
};

template <class Backbone, class S, class I, class C>
inline constexpr bool valid_combination_v = CombinationRule<Backbone, S, I, C>::why_not == nullptr;

}  // namespace policies
}  // namespace repshift
