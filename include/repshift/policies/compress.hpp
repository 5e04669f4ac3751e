#pragma once
// Compression policies: what happens to the tokens the importance ranks
// lowest.
//   Prune: they are dropped; the survivors are gathered densely, in
//          ascending index order (rs::select_top + rs::gather_tokens).
//   Fuse:  as Prune, plus one extra token appended after the survivors:
//          the dropped tokens' average weighted by their importance
//          (EViT's "inattentive token fusion"), so their information is
//          not lost. A layer keeping k tokens outputs k + 1.
//   Merge: ToMe's bipartite soft matching with the importance deciding who
//          merges (cpu/merge_tokens.hpp): the N - k least important tokens
//          of set A are averaged into their most similar set-B token
//          (cosine of the layer's keys), weighted by token size; sizes are
//          tracked and biased into attention (log size per key, ToMe's
//          proportional attention). A layer keeping k tokens outputs k.
//
// Each says what a schedule may ask of it: min_keep(tokens, protect), the
// fewest tokens one layer can leave of `tokens`, and why (min_keep_reason).

#include <cstdint>
#include <type_traits>

#include "../core/config.hpp"

namespace repshift {
namespace policies {

struct Prune {
  static constexpr const char* name = "prune";
  static constexpr int extra_tokens = 0;
  static constexpr bool tracks_sizes = false;
  // Any unprotected token can go.
  static constexpr const char* min_keep_reason = "a layer keeps its protected tokens";
  static constexpr std::int64_t min_keep(std::int64_t tokens, std::int64_t protect) {
    return protect < tokens ? protect : tokens;
  }
};

struct Fuse {
  static constexpr const char* name = "fuse";
  static constexpr int extra_tokens = 1;
  static constexpr bool tracks_sizes = false;
  static constexpr const char* min_keep_reason = Prune::min_keep_reason;
  static constexpr std::int64_t min_keep(std::int64_t tokens, std::int64_t protect) {
    return Prune::min_keep(tokens, protect);
  }
};

struct Merge {
  static constexpr const char* name = "merge";
  static constexpr int extra_tokens = 0;
  static constexpr bool tracks_sizes = true;
  // Fewest tokens one merge can leave: every set-A token merged, i.e. at
  // most half of the unprotected tokens (none when no B token exists).
  static constexpr const char* min_keep_reason = "Merge removes at most half of the unprotected ones per layer";
  // Also on the device: a packed sample's counts are checked there.
  static constexpr REPSHIFT_HD std::int64_t min_keep(std::int64_t tokens, std::int64_t protect) {
    return tokens - protect < 2 ? tokens : tokens - (tokens - protect + 1) / 2;
  }
};

template <class C>
inline constexpr bool is_compress_v =
    std::is_same_v<C, Prune> || std::is_same_v<C, Fuse> || std::is_same_v<C, Merge>;

}  // namespace policies
}  // namespace repshift
