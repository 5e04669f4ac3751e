#pragma once
// A small BERT (vocabulary 50, 64 positions, dim 32, 3 layers) with random
// weights, shared by the CPU and CUDA encoder tests.

#include <repshift/models/bert.hpp>

#include "reference.hpp"
#include "transformer_fixture.hpp"

inline repshift::BertWeights random_bert(std::uint32_t seed) {
  repshift::BertConfig cfg;
  cfg.vocab_size = 50;
  cfg.max_positions = 64;
  cfg.dim = 32;
  cfg.depth = 3;
  cfg.heads = 2;
  cfg.mlp_hidden = 64;
  repshift::BertWeights w;
  w.config = cfg;
  w.word = ref::random_floats(std::size_t(cfg.vocab_size) * cfg.dim, seed, -1.0f, 1.0f);
  w.position = ref::random_floats(std::size_t(cfg.max_positions) * cfg.dim, seed + 1, -0.5f, 0.5f);
  w.token_type = ref::random_floats(std::size_t(cfg.type_vocab_size) * cfg.dim, seed + 2, -0.1f, 0.1f);
  w.emb_norm_w.assign(std::size_t(cfg.dim), 1.0f);
  w.emb_norm_b.assign(std::size_t(cfg.dim), 0.0f);
  for (int l = 0; l < cfg.depth; ++l) {
    w.layers.push_back(RandomBlockWeights(cfg.dim, cfg.heads, cfg.mlp_hidden, seed + 10 + l).t);
  }
  return w;
}
