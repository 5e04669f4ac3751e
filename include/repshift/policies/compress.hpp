#pragma once
// Compression policies: what happens to the tokens the importance ranks
// lowest.
//   Prune: they are dropped; the survivors are gathered densely, in
//          ascending index order (rs::select_top + rs::gather_tokens).

namespace repshift {
namespace policies {

struct Prune {
  static constexpr const char* name = "prune";
};

}  // namespace policies
}  // namespace repshift
