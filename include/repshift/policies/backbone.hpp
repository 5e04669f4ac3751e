#pragma once
// Backbones: what a Block's activations are and how pruning keeps them
// dense.
//   Transformer: tokens [B, N, C]; a protected prefix (CLS) is always kept;
//                kept tokens stay in ascending index order.
//   SsmScan:     a sequence [B, L, D] through Mamba's selective scan (Vim);
//                pruning keeps token order, and a token anywhere in the
//                sequence (Vim's middle CLS) can be kept.
// CnnRows (feature-map rows/columns) joins here with its block.

namespace repshift {
namespace policies {

struct Transformer {
  static constexpr const char* name = "transformer";
};

struct SsmScan {
  static constexpr const char* name = "ssm_scan";
};

}  // namespace policies
}  // namespace repshift
