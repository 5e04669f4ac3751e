#pragma once
// Backbones: what a Block's activations are and how pruning keeps them
// dense.
//   Transformer: tokens [B, N, C]; a protected prefix (CLS) is always kept;
//                kept tokens stay in ascending index order.
// CnnRows (feature-map rows/columns) and SsmScan (order-preserving scan
// tokens) join here with their blocks.

namespace repshift {
namespace policies {

struct Transformer {
  static constexpr const char* name = "transformer";
};

}  // namespace policies
}  // namespace repshift
