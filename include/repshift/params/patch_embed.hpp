#pragma once
// Geometry of a patch embedding (ViT, Vim, the video ViT): square frames cut
// into square patches, `tubelet` consecutive frames at a time, each patch
// flattened as PyTorch's Conv3d weight [dim, C, tubelet, p, p] reads it
// (Conv2d's [dim, C, p, p] when tubelet = 1):
//   cols[b * P + p, ((c * tubelet + dt) * ps + ky) * ps + kx]
// from input [batch, C, frames, image, image] (frames = 1: [batch, C, image,
// image]); patch p = (tube, py, px) in that order, as Conv3d's output
// flattens.

#include "../core/config.hpp"

namespace repshift {

struct PatchGeometry {
  int image_size = 224, patch_size = 16, in_chans = 3, frames = 1, tubelet = 1;
  REPSHIFT_HD int grid() const { return image_size / patch_size; }
  REPSHIFT_HD int tubes() const { return frames / tubelet; }
  REPSHIFT_HD int patches() const { return tubes() * grid() * grid(); }
  REPSHIFT_HD int patch_dim() const { return in_chans * tubelet * patch_size * patch_size; }
};

}  // namespace repshift
