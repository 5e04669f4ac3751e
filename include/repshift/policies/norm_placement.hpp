#pragma once
// Norm placement of a transformer block.
//   PreNorm  (ViT/DeiT): x' = x + Attn(LN1 x);     y = x' + MLP(LN2 x')
//   PostNorm (BERT):     x' = LN1(x + Attn x);     y = LN2(x' + MLP x')

#include <type_traits>

namespace repshift {
namespace policies {

struct PreNorm {
  static constexpr const char* name = "prenorm";
  static constexpr bool post_norm = false;
};
struct PostNorm {
  static constexpr const char* name = "postnorm";
  static constexpr bool post_norm = true;
};

template <class N>
inline constexpr bool is_norm_v = std::is_same_v<N, PreNorm> || std::is_same_v<N, PostNorm>;

}  // namespace policies
}  // namespace repshift
