#pragma once
// Geometry of a patch embedding (ViT, Vim): square images cut into square
// patches, each flattened as PyTorch's Conv2d weight [dim, C, p, p] reads
// it: cols[b * P + p, (c * ps + ky) * ps + kx].

#include "../core/config.hpp"

namespace repshift {

struct PatchGeometry {
  int image_size = 224, patch_size = 16, in_chans = 3;
  REPSHIFT_HD int grid() const { return image_size / patch_size; }
  REPSHIFT_HD int patches() const { return grid() * grid(); }
  REPSHIFT_HD int patch_dim() const { return in_chans * patch_size * patch_size; }
};

}  // namespace repshift
