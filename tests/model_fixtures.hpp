#pragma once
// Small model configurations and "lively" weights (large enough that every
// layer visibly moves the tokens, so pruning decisions are not ties) shared
// by the CPU and CUDA model tests.

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include <repshift/models/resnet.hpp>
#include <repshift/models/vim.hpp>
#include <repshift/models/vit.hpp>

namespace fixtures {

namespace rs = repshift;

// 32x32 images, patch 8: 16 patches + CLS = 17 tokens.
inline rs::ViTConfig tiny_vit() {
  rs::ViTConfig c;
  c.image_size = 32;
  c.patch_size = 8;
  c.dim = 48;
  c.depth = 4;
  c.heads = 3;
  c.mlp_hidden = 192;
  c.num_classes = 10;
  return c;
}

// The video config (models/video.hpp) at test size: 4 frames of 16x16,
// tubelet 2, patch 4: 2 tubes x 16 = 32 tokens, no class token.
inline rs::ViTConfig tiny_video() {
  rs::ViTConfig c = rs::ViTConfig::umt_base(4, 2);
  c.image_size = 16;
  c.patch_size = 4;
  c.dim = 32;
  c.depth = 3;
  c.heads = 2;
  c.mlp_hidden = 64;
  c.num_classes = 5;
  return c;
}

inline rs::ViTWeights lively_vit(const rs::ViTConfig& cfg, std::uint32_t seed) {
  rs::ViTWeights w = rs::ViTWeights::random(cfg, seed);
  std::mt19937 gen(seed);
  w.for_each_tensor([&](const std::string& name, const std::vector<std::int64_t>& shape, std::vector<float>& v) {
    const bool norm = name.find("norm") != std::string::npos;
    const bool gain = norm && name.find("weight") != std::string::npos;
    const double fan_in = shape.size() >= 2 ? double(v.size() / std::size_t(shape[0])) : 1.0;
    const float spread = norm ? 0.2f : float(1.5 / std::sqrt(fan_in));
    std::uniform_real_distribution<float> d(gain ? 1.0f - spread : -spread, gain ? 1.0f + spread : spread);
    for (auto& x : v) x = d(gen);
  });
  return w;
}

// 32x32 images, patch 8: 16 patches + the class token at 8 = 17 tokens.
inline rs::VimConfig tiny_vim(int state = 8) {
  rs::VimConfig c;
  c.image_size = 32;
  c.patch_size = 8;
  c.dim = 24;
  c.depth = 4;
  c.state = state;
  c.dt_rank = 2;
  c.num_classes = 10;
  return c;
}

inline rs::VimWeights lively_vim(const rs::VimConfig& cfg, std::uint32_t seed) {
  rs::VimWeights w = rs::VimWeights::random(cfg, seed);
  w.for_each_tensor([](const std::string& name, const std::vector<std::int64_t>&, std::vector<float>& v) {
    if (name.find("proj.weight") != std::string::npos || name.find("x_proj") != std::string::npos ||
        name.find("pos_embed") != std::string::npos || name.find("head") != std::string::npos)
      for (auto& x : v) x *= 12.0f;
  });
  return w;
}

// 32x32 images: stem 16x16, stage 1 at 8x8.
inline rs::ResNetConfig tiny_resnet() {
  rs::ResNetConfig c;
  c.image_size = 32;
  c.stem_channels = 8;
  c.widths = {4, 4, 8, 8};
  c.blocks = {2, 2, 1, 1};
  c.num_classes = 10;
  return c;
}

}  // namespace fixtures
