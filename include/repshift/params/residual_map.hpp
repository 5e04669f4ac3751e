#pragma once
// ResidualMap: a bottleneck's residual epilogue on feature maps, one
// descriptor for every executor (cpu/residual_map.hpp, cuda/pixel_reduce.cuh):
//   out = ReLU(branch + bias[c] + shortcut)
// and, when scored, each pixel's shift in the same pass:
//   scores[b, p] = Metric over channels of (out[b, :, p], before[b, :, p]).

#include <cstdint>

#include "conv2d.hpp"

namespace repshift {

struct ResidualMap {
  const float* branch = nullptr;    // [B, C, n] the last conv's raw product (n = H W pixels)
  const float* bias = nullptr;      // [C]
  const float* shortcut = nullptr;  // [B, C, n]
  float* out = nullptr;             // [B, C, n]
  const float* before = nullptr;    // [B, C, n] the block input, the score's other operand
  float* scores = nullptr;          // [B, n], written when scored
  float* scratch = nullptr;         // Backend::residual_map_scratch<Metric> floats (CUDA's partial sums)
  std::int64_t batch = 0, channels = 0, pixels = 0;
  MapLayout layout = MapLayout::Nchw;  // every map's; Nhwc: [B, n, C]
};

}  // namespace repshift
