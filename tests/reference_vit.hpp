#pragma once
// Naive double ViT forward (images, or clips of a video ViT) with the
// library's kept indices injected at the pruning layers; also returns each pruning layer's reference scores.

#include <repshift/models/vit.hpp>

#include "reference_transformer.hpp"

namespace ref {

struct VitResult {
  Mat logits;
  std::vector<std::vector<double>> scores;  // per pruned layer, [B * tokens_in]
};

inline VitResult vit(const repshift::ViTWeights& w, const std::vector<float>& images, int batch,
                     const std::vector<int>& pruned_layers, const std::vector<std::vector<int>>& keep_idx,
                     const std::vector<int>& tokens_per_layer) {
  const auto& cfg = w.config;
  // A clip is [in_chans, frames, image, image] (an image: frames = 1); patch
  // p of tube ti covers frames [ti * tubelet, (ti + 1) * tubelet).
  const int C = cfg.dim, g = cfg.grid(), ps = cfg.patch_size, N = cfg.tokens(), img = cfg.image_size;
  const int T = cfg.frames, tub = cfg.tubelet, cls = cfg.class_token() ? 1 : 0;
  Mat x(std::size_t(batch) * N * C);
  for (int b = 0; b < batch; ++b)
    for (int n = 0; n < N; ++n)
      for (int o = 0; o < C; ++o) {
        double v = w.pos_embed[std::size_t(n) * C + o];
        if (n < cls) {
          v += w.cls_token[o];
        } else {
          const int p = n - cls, ti = p / (g * g), py = p % (g * g) / g, px = p % g;
          v += w.patch_b[o];
          for (int c = 0; c < cfg.in_chans; ++c)
            for (int dt = 0; dt < tub; ++dt)
              for (int ky = 0; ky < ps; ++ky)
                for (int kx = 0; kx < ps; ++kx)
                  v += double(w.patch_w[(((std::size_t(o) * cfg.in_chans + c) * tub + dt) * ps + ky) * ps + kx]) *
                       images[(((std::size_t(b) * cfg.in_chans + c) * T + ti * tub + dt) * img + py * ps + ky) * img +
                              px * ps + kx];
        }
        x[(std::size_t(b) * N + n) * C + o] = v;
      }
  VitResult res;
  int tokens = N;
  for (int l = 0; l < cfg.depth; ++l) {
    const auto& t = w.blocks[std::size_t(l)];
    const BlockWeights bw{C, cfg.heads, cfg.mlp_hidden, cfg.ln_eps, t.norm1_w.data(), t.norm1_b.data(),
                          t.qkv_w.data(), t.qkv_b.data(), t.proj_w.data(), t.proj_b.data(), t.norm2_w.data(),
                          t.norm2_b.data(), t.fc1_w.data(), t.fc1_b.data(), t.fc2_w.data(), t.fc2_b.data()};
    std::vector<int> idx;
    const int keep = tokens_per_layer[std::size_t(l) + 1];
    for (std::size_t k = 0; k < pruned_layers.size(); ++k)
      if (pruned_layers[k] == l) idx = keep_idx[k];
    auto out = block(x, batch, tokens, bw, false, Site::Mlp, Metric::L2, idx, keep);
    if (!idx.empty()) res.scores.push_back(out.scores);
    x = std::move(out.y);
    tokens = keep;
  }
  // Pool::Cls: the class token's row; Pool::Mean: the mean of the rows.
  Mat pooled(std::size_t(batch) * C, 0.0);
  for (int b = 0; b < batch; ++b)
    for (int c = 0; c < C; ++c) {
      if (cls) {
        pooled[std::size_t(b) * C + c] = x[std::size_t(b) * tokens * C + c];
        continue;
      }
      for (int n = 0; n < tokens; ++n) pooled[std::size_t(b) * C + c] += x[(std::size_t(b) * tokens + n) * C + c];
      pooled[std::size_t(b) * C + c] /= tokens;
    }
  pooled = layer_norm(pooled, batch, C, w.norm_w.data(), w.norm_b.data(), cfg.ln_eps);
  res.logits = linear(pooled, batch, C, w.head_w.data(), w.head_b.data(), cfg.num_classes);
  return res;
}

}  // namespace ref
