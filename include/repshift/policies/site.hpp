#pragma once
// Measurement sites: which layer F the shift s = D(F(x), x) measures.
// For a pre-norm transformer block
//   x' = x + Attn(LN1 x),   y = x' + MLP(LN2 x')
//   Attention: D(Attn(LN1 x), x)     F = the attention branch
//   Mlp:       D(MLP(LN2 x'), x')    F = the MLP branch: the paper's default and best
//   BlockOutput: D(y, x)             F = the whole block
// "after" is a branch output taken before its residual add: the paper's
// equation read literally, s = || MLP(LN2 x') - x' ||.
//
// Update<Attention>, Update<Mlp>: the other reading of the paper's figure,
// the update the residual adds, D(x' + MLP(LN2 x'), x') (for L2 this is
// || MLP(LN2 x') ||); post-norm blocks compare before their LayerNorm.
//
// A Site carries what a Block needs to know of it: whether it scores in
// the attention sub-layer (and so prunes before the MLP), and which pair of
// rows the fused residual epilogue compares.

#include <type_traits>

namespace repshift {

// Which pair of rows a fused residual epilogue scores, shared by the CPU
// and CUDA epilogues: a compile-time choice, never a branch in a row loop.
enum class ScoreOperands {
  None,                // no score
  BranchVsResidual,    // D(branch, residual): Attention and Mlp sites
  SumVsResidual,       // D(residual + branch, residual): Update<Attention | Mlp>
  OutputVsBlockInput   // D(out, block_input): BlockOutput site
};

namespace policies {

struct Attention {
  static constexpr const char* name = "attn";
  static constexpr bool scores_attention = true;
  static constexpr ScoreOperands operands = ScoreOperands::BranchVsResidual;
};
struct Mlp {
  static constexpr const char* name = "mlp";
  static constexpr bool scores_attention = false;
  static constexpr ScoreOperands operands = ScoreOperands::BranchVsResidual;
};
struct BlockOutput {
  static constexpr const char* name = "block";
  static constexpr bool scores_attention = false;
  static constexpr ScoreOperands operands = ScoreOperands::OutputVsBlockInput;
};

template <class S>
struct Update {
  static_assert(std::is_same_v<S, Attention> || std::is_same_v<S, Mlp>,
                "Update<S>: the residual-update reading exists for the Attention and Mlp branches");
  static constexpr const char* name = std::is_same_v<S, Attention> ? "attn_update" : "mlp_update";
  static constexpr bool scores_attention = S::scores_attention;
  static constexpr ScoreOperands operands = ScoreOperands::SumVsResidual;
};

template <class S>
inline constexpr bool is_site_v = std::is_same_v<S, Attention> || std::is_same_v<S, Mlp> ||
                                  std::is_same_v<S, BlockOutput> || std::is_same_v<S, Update<Attention>> ||
                                  std::is_same_v<S, Update<Mlp>>;

}  // namespace policies
}  // namespace repshift
