#pragma once
// BERT-style sentence encoder from Block<Transformer, Site, Metric, Prune,
// PostNorm>: word + position + token-type embeddings and LayerNorm, `depth`
// post-LN blocks with a padding mask, mean pooling over the valid tokens
// (optionally L2-normalised, as sentence-transformers' Normalize does).
// Weights load from a safetensors file with Hugging Face BERT names
// (embeddings.word_embeddings.weight, encoder.layer.{i}.attention.self.query.weight, ...),
// e.g. all-MiniLM-L6-v2; query/key/value are fused into one QKV at load.

#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "../blocks/transformer_block.hpp"
#include "../io/safetensors.hpp"
#include "prune_schedule.hpp"

namespace repshift {

struct BertConfig {
  int vocab_size = 30522, max_positions = 512, type_vocab_size = 2;
  int dim = 384, depth = 6, heads = 12, mlp_hidden = 1536;
  float ln_eps = 1e-12f;

  static BertConfig minilm_l6() { return {}; }

  void check(const char* where) const {
    detail::require_positive(where, "config.vocab_size", vocab_size);
    detail::require_positive(where, "config.max_positions", max_positions);
    detail::require_positive(where, "config.dim", dim);
    detail::require_positive(where, "config.depth", depth);
    detail::require_positive(where, "config.heads", heads);
    detail::require_positive(where, "config.mlp_hidden", mlp_hidden);
    detail::require_multiple(where, "config.dim", dim, "config.heads", heads);
  }
};

struct BertWeights {
  using Layer = TransformerBlockTensors;
  BertConfig config;
  std::vector<float> word, position, token_type, emb_norm_w, emb_norm_b;
  std::vector<Layer> layers;

  static BertWeights load(const BertConfig& cfg, const io::SafeTensorsFile& f) {
    cfg.check("BertWeights::load");
    const std::int64_t C = cfg.dim, H = cfg.mlp_hidden;
    BertWeights w;
    w.config = cfg;
    w.word = f.load_f32("embeddings.word_embeddings.weight", {cfg.vocab_size, C});
    w.position = f.load_f32("embeddings.position_embeddings.weight", {cfg.max_positions, C});
    w.token_type = f.load_f32("embeddings.token_type_embeddings.weight", {cfg.type_vocab_size, C});
    w.emb_norm_w = f.load_f32("embeddings.LayerNorm.weight", {C});
    w.emb_norm_b = f.load_f32("embeddings.LayerNorm.bias", {C});
    for (int i = 0; i < cfg.depth; ++i) {
      const std::string p = "encoder.layer." + std::to_string(i) + ".";
      Layer l;
      // Rows [q; k; v]: the [3][heads][head_dim] layout the attention kernel reads.
      for (const char* part : {"query", "key", "value"}) {
        const auto wq = f.load_f32(p + "attention.self." + part + ".weight", {C, C});
        const auto bq = f.load_f32(p + "attention.self." + part + ".bias", {C});
        l.qkv_w.insert(l.qkv_w.end(), wq.begin(), wq.end());
        l.qkv_b.insert(l.qkv_b.end(), bq.begin(), bq.end());
      }
      l.proj_w = f.load_f32(p + "attention.output.dense.weight", {C, C});
      l.proj_b = f.load_f32(p + "attention.output.dense.bias", {C});
      l.norm1_w = f.load_f32(p + "attention.output.LayerNorm.weight", {C});
      l.norm1_b = f.load_f32(p + "attention.output.LayerNorm.bias", {C});
      l.fc1_w = f.load_f32(p + "intermediate.dense.weight", {H, C});
      l.fc1_b = f.load_f32(p + "intermediate.dense.bias", {H});
      l.fc2_w = f.load_f32(p + "output.dense.weight", {C, H});
      l.fc2_b = f.load_f32(p + "output.dense.bias", {C});
      l.norm2_w = f.load_f32(p + "output.LayerNorm.weight", {C});
      l.norm2_b = f.load_f32(p + "output.LayerNorm.bias", {C});
      w.layers.push_back(std::move(l));
    }
    return w;
  }

  TransformerBlockWeights block(int i) const {
    return layers.at(std::size_t(i)).view(config.dim, config.heads, config.mlp_hidden, config.ln_eps);
  }
};

template <class Site = policies::Mlp, class Metric = policies::L2>
class BertEncoder {
 public:
  using BlockType = Block<policies::Transformer, Site, Metric, policies::Prune, policies::PostNorm>;

  explicit BertEncoder(BertWeights weights) : BertEncoder(std::make_shared<const BertWeights>(std::move(weights))) {}
  // Encoders of different policies can share one set of weights (ablations).
  explicit BertEncoder(std::shared_ptr<const BertWeights> weights) : weights_(std::move(weights)) {
    detail::require_pointer("BertEncoder", "weights", weights_.get());
    weights_->config.check("BertEncoder");
  }
  const BertConfig& config() const { return weights_->config; }

  // ids: [batch, tokens] token ids (token type 0), sample b valid in
  // [0, lengths[b]) and padded after; pooled: [batch, dim] mean of the
  // final valid tokens, L2-normalised when `normalize`. Not thread-safe.
  void forward(const Host& host, const int* ids, const int* lengths, int batch, int tokens, float* pooled,
               const PruneSchedule& schedule = PruneSchedule::none(), bool normalize = true) {
    constexpr const char* where = "BertEncoder::forward";
    const BertConfig& cfg = weights_->config;
    detail::require_pointer(where, "ids", ids);
    detail::require_pointer(where, "lengths", lengths);
    detail::require_pointer(where, "pooled", pooled);
    detail::require_positive(where, "batch", batch);
    detail::require_positive(where, "tokens", tokens);
    detail::require_at_most(where, "tokens", tokens, "config.max_positions", cfg.max_positions);
    schedule.check(where, cfg.depth);
    for (int b = 0; b < batch; ++b) {
      if (lengths[b] < 1 || lengths[b] > tokens) {
        detail::fail(where, "lengths[" + std::to_string(b) + "] = " + std::to_string(lengths[b]) +
                                " is outside [1, tokens = " + std::to_string(tokens) + "]");
      }
      for (int t = 0; t < lengths[b]; ++t) {
        const int id = ids[std::int64_t(b) * tokens + t];
        if (id < 0 || id >= cfg.vocab_size) {
          detail::fail(where, "ids[" + std::to_string(b) + ", " + std::to_string(t) + "] = " + std::to_string(id) +
                                  " is outside [0, vocab_size = " + std::to_string(cfg.vocab_size) + ")");
        }
      }
    }
    const std::int64_t C = cfg.dim;
    ping_.resize(std::size_t(batch) * tokens * C);
    pong_.resize(ping_.size());
    len_a_.assign(lengths, lengths + batch);
    len_b_.resize(std::size_t(batch));
    embed(host, ids, batch, tokens, ping_.data());

    int n = tokens;
    float* x = ping_.data();
    float* y = pong_.data();
    for (int l = 0; l < cfg.depth; ++l) {
      auto a = TransformerBlockArgs::dense(x, y, batch, n);
      a.keep = schedule.keep_at(l, n);
      a.protect = schedule.protect;
      a.seed = std::uint64_t(l);
      a.lengths = len_a_.data();
      a.kept_lengths = len_b_.data();
      BlockType::forward(host, weights_->block(l), a, ws_);
      if (a.keep < n) std::swap(len_a_, len_b_);
      n = a.keep;
      std::swap(x, y);
    }
    mean_pool(x, batch, n, pooled, normalize);
  }

 private:
  // x = LN(word[id] + position[t] + token_type[0]); padding rows embed id 0.
  void embed(const Host& host, const int* ids, int batch, int tokens, float* x) {
    const BertConfig& cfg = weights_->config;
    const std::int64_t C = cfg.dim;
    const cpu::LayerNormWeights ln{weights_->emb_norm_w.data(), weights_->emb_norm_b.data(), cfg.ln_eps};
#pragma omp parallel for schedule(static) num_threads(cpu::thread_count(host))
    for (std::int64_t bt = 0; bt < std::int64_t(batch) * tokens; ++bt) {
      const std::int64_t t = bt % tokens, b = bt / tokens;
      const int id = t < len_a_[std::size_t(b)] ? ids[bt] : 0;
      float* row = x + bt * C;
      const float* we = weights_->word.data() + std::int64_t(id) * C;
      const float* pe = weights_->position.data() + t * C;
      const float* te = weights_->token_type.data();
      for (std::int64_t c = 0; c < C; ++c) row[c] = we[c] + pe[c] + te[c];
      cpu::layer_norm_row(row, row, C, ln);
    }
  }

  void mean_pool(const float* x, int batch, int tokens, float* pooled, bool normalize) const {
    const std::int64_t C = weights_->config.dim;
    for (int b = 0; b < batch; ++b) {
      float* out = pooled + std::int64_t(b) * C;
      std::fill(out, out + C, 0.0f);
      const int valid = len_a_[std::size_t(b)];
      for (int t = 0; t < valid; ++t) {
        const float* row = x + (std::int64_t(b) * tokens + t) * C;
        for (std::int64_t c = 0; c < C; ++c) out[c] += row[c];
      }
      for (std::int64_t c = 0; c < C; ++c) out[c] /= float(valid);
      if (normalize) {
        double sq = 0;
        for (std::int64_t c = 0; c < C; ++c) sq += double(out[c]) * out[c];
        const float inv = float(1.0 / std::max(std::sqrt(sq), 1e-12));
        for (std::int64_t c = 0; c < C; ++c) out[c] *= inv;
      }
    }
  }

  std::shared_ptr<const BertWeights> weights_;
  TransformerWorkspace ws_;
  std::vector<float> ping_, pong_;
  std::vector<int> len_a_, len_b_;
};

}  // namespace repshift
