#pragma once
// Compression policies: what happens to the tokens the importance ranks
// lowest.
//   Prune: they are dropped; the survivors are gathered densely, in
//          ascending index order (rs::select_top + rs::gather_tokens).
//   Fuse:  as Prune, plus one extra token appended after the survivors:
//          the dropped tokens' average weighted by their importance
//          (EViT's "inattentive token fusion"), so their information is
//          not lost. A layer keeping k tokens outputs k + 1.

#include <type_traits>

namespace repshift {
namespace policies {

struct Prune {
  static constexpr const char* name = "prune";
  static constexpr int extra_tokens = 0;
};

struct Fuse {
  static constexpr const char* name = "fuse";
  static constexpr int extra_tokens = 1;
};

template <class C>
inline constexpr bool is_compress_v = std::is_same_v<C, Prune> || std::is_same_v<C, Fuse>;

}  // namespace policies
}  // namespace repshift
