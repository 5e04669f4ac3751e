#pragma once
// Backbones: what a Block's activations are and how pruning keeps them
// dense.
//   Transformer: tokens [B, N, C]; a protected prefix (CLS) is always kept;
//                kept tokens stay in ascending index order.
//   SsmScan:     a sequence [B, L, D] through Mamba's selective scan (Vim);
//                pruning keeps token order, and a token anywhere in the
//                sequence (Vim's middle CLS) can be kept.
//   CnnRows:     feature maps [B, C, H, W] (ResNet); per-pixel shift over
//                channels, averaged per row and column; whole rows and
//                columns are removed so the map stays dense.

namespace repshift {
namespace policies {

struct Transformer {
  static constexpr const char* name = "transformer";
};

struct CnnRows {
  static constexpr const char* name = "cnn_rows";
};

struct SsmScan {
  static constexpr const char* name = "ssm_scan";
};

}  // namespace policies
}  // namespace repshift
