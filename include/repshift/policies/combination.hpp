#pragma once
// Which (Backbone, Site, Importance, Compress) combinations a Block
// accepts: the one trait sweeps filter on, mirroring the Blocks'
// static_asserts (those carry the readable messages).
//   Transformer: every site and compress; ClsAttention only at Site = Attention.
//   SsmScan:     Site = Block (no attention / MLP sub-layer), Compress =
//                Prune (the scan needs token order), no ClsAttention.
//   CnnRows:     Site = Block, Compress = Prune, a shift metric or Norm
//                (per-pixel scores; Random and ClsAttention have no pixels).

#include <type_traits>

#include "backbone.hpp"
#include "compress.hpp"
#include "importance.hpp"
#include "site.hpp"

namespace repshift {
namespace policies {

template <class Backbone, class S, class I, class C>
inline constexpr bool valid_combination_v = false;

template <class S, class I, class C>
inline constexpr bool valid_combination_v<Transformer, S, I, C> = valid_site_importance_v<S, I>;

template <class S, class I, class C>
inline constexpr bool valid_combination_v<SsmScan, S, I, C> =
    std::is_same_v<S, Block> && std::is_same_v<C, Prune> && !needs_attention_map_v<I>;

template <class S, class I, class C>
inline constexpr bool valid_combination_v<CnnRows, S, I, C> =
    std::is_same_v<S, Block> && std::is_same_v<C, Prune> && is_metric_v<I>;

}  // namespace policies
}  // namespace repshift
