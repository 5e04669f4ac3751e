#pragma once
// Random transformer-block weights held once, viewed both as the library's
// TransformerBlockWeights and as the reference's BlockWeights.

#include <random>
#include <vector>

#include <repshift/blocks/transformer_block.hpp>

#include "reference_transformer.hpp"

struct RandomBlockWeights {
  int dim, heads, hidden;
  std::vector<float> n1w, n1b, qkvw, qkvb, projw, projb, n2w, n2b, fc1w, fc1b, fc2w, fc2b;

  RandomBlockWeights(int dim_, int heads_, int hidden_, std::uint32_t seed)
      : dim(dim_), heads(heads_), hidden(hidden_) {
    std::mt19937 gen(seed);
    auto fill = [&](std::vector<float>& v, std::size_t n, float center, float spread) {
      std::uniform_real_distribution<float> d(center - spread, center + spread);
      v.resize(n);
      for (auto& x : v) x = d(gen);
    };
    const float wd = 1.0f / std::sqrt(float(dim)), wh = 1.0f / std::sqrt(float(hidden));
    fill(n1w, dim, 1.0f, 0.2f);
    fill(n1b, dim, 0.0f, 0.1f);
    fill(qkvw, std::size_t(3) * dim * dim, 0.0f, 2 * wd);
    fill(qkvb, std::size_t(3) * dim, 0.0f, 0.1f);
    fill(projw, std::size_t(dim) * dim, 0.0f, wd);
    fill(projb, dim, 0.0f, 0.1f);
    fill(n2w, dim, 1.0f, 0.2f);
    fill(n2b, dim, 0.0f, 0.1f);
    fill(fc1w, std::size_t(hidden) * dim, 0.0f, 1.5f * wd);
    fill(fc1b, hidden, 0.0f, 0.1f);
    fill(fc2w, std::size_t(dim) * hidden, 0.0f, wh);
    fill(fc2b, dim, 0.0f, 0.1f);
  }

  repshift::TransformerBlockWeights view(float eps = 1e-6f) const {
    repshift::TransformerBlockWeights w;
    w.dim = dim;
    w.heads = heads;
    w.mlp_hidden = hidden;
    w.ln_eps = eps;
    w.norm1_weight = n1w.data();
    w.norm1_bias = n1b.data();
    w.qkv_weight = qkvw.data();
    w.qkv_bias = qkvb.data();
    w.proj_weight = projw.data();
    w.proj_bias = projb.data();
    w.norm2_weight = n2w.data();
    w.norm2_bias = n2b.data();
    w.fc1_weight = fc1w.data();
    w.fc1_bias = fc1b.data();
    w.fc2_weight = fc2w.data();
    w.fc2_bias = fc2b.data();
    return w;
  }

  ref::BlockWeights reference(double eps = 1e-6) const {
    return {dim, heads, hidden, eps, n1w.data(), n1b.data(), qkvw.data(), qkvb.data(), projw.data(), projb.data(),
            n2w.data(), n2b.data(), fc1w.data(), fc1b.data(), fc2w.data(), fc2b.data()};
  }
};
