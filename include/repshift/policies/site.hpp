#pragma once
// Measurement sites: which layer F the shift s = D(F(x), x) measures.
// For a pre-norm transformer block
//   x' = x + Attn(LN1 x),   y = x' + MLP(LN2 x')
//   Attention: D(Attn(LN1 x), x)     F = the attention branch
//   Mlp:       D(MLP(LN2 x'), x')    F = the MLP branch: the paper's default and best
//   Block:     D(y, x)               F = the whole block
// "after" is a branch output taken before its residual add, exactly as the
// paper's reference scores the MLP site: s = || MLP(LN2 x') - x' ||.

#include <type_traits>

namespace repshift {
namespace policies {

struct Attention {
  static constexpr const char* name = "attn";
};
struct Mlp {
  static constexpr const char* name = "mlp";
};
struct Block {
  static constexpr const char* name = "block";
};

template <class S>
inline constexpr bool is_site_v =
    std::is_same_v<S, Attention> || std::is_same_v<S, Mlp> || std::is_same_v<S, Block>;

}  // namespace policies
}  // namespace repshift
