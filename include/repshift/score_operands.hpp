#pragma once
// Which pair of rows a fused residual epilogue scores, shared by the CPU
// and CUDA epilogues: a compile-time choice, never a branch in a row loop.

namespace repshift {

enum class ScoreOperands {
  None,               // no score
  BranchVsResidual,   // D(branch, residual): Attention and Mlp sites
  OutputVsBlockInput  // D(out, block_input): Block site
};

}  // namespace repshift
