#pragma once
// Random transformer-block weights held once, viewed both as the library's
// TransformerBlockWeights and as the reference's BlockWeights.

#include <random>
#include <vector>

#include <repshift/blocks/transformer_block.hpp>

#include "reference_transformer.hpp"

struct RandomBlockWeights {
  int dim, heads, hidden;
  repshift::TransformerBlockTensors t;

  RandomBlockWeights(int dim_, int heads_, int hidden_, std::uint32_t seed)
      : dim(dim_), heads(heads_), hidden(hidden_) {
    std::mt19937 gen(seed);
    auto fill = [&](std::vector<float>& v, std::size_t n, float center, float spread) {
      std::uniform_real_distribution<float> d(center - spread, center + spread);
      v.resize(n);
      for (auto& x : v) x = d(gen);
    };
    const float wd = 1.0f / std::sqrt(float(dim)), wh = 1.0f / std::sqrt(float(hidden));
    fill(t.norm1_w, dim, 1.0f, 0.2f);
    fill(t.norm1_b, dim, 0.0f, 0.1f);
    fill(t.qkv_w, std::size_t(3) * dim * dim, 0.0f, 2 * wd);
    fill(t.qkv_b, std::size_t(3) * dim, 0.0f, 0.1f);
    fill(t.proj_w, std::size_t(dim) * dim, 0.0f, wd);
    fill(t.proj_b, dim, 0.0f, 0.1f);
    fill(t.norm2_w, dim, 1.0f, 0.2f);
    fill(t.norm2_b, dim, 0.0f, 0.1f);
    fill(t.fc1_w, std::size_t(hidden) * dim, 0.0f, 1.5f * wd);
    fill(t.fc1_b, hidden, 0.0f, 0.1f);
    fill(t.fc2_w, std::size_t(dim) * hidden, 0.0f, wh);
    fill(t.fc2_b, dim, 0.0f, 0.1f);
  }

  repshift::TransformerBlockWeights view(float eps = 1e-6f) const { return t.view(dim, heads, hidden, eps); }

  ref::BlockWeights reference(double eps = 1e-6) const {
    return {dim,         heads,         hidden,        eps,          t.norm1_w.data(), t.norm1_b.data(),
            t.qkv_w.data(), t.qkv_b.data(), t.proj_w.data(), t.proj_b.data(), t.norm2_w.data(), t.norm2_b.data(),
            t.fc1_w.data(), t.fc1_b.data(), t.fc2_w.data(), t.fc2_b.data()};
  }
};
