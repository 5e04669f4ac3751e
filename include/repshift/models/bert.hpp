#pragma once
// BERT-style sentence encoder from Block<Transformer, Site, Importance,
// Compress, PostNorm>: word + position + token-type embeddings and
// LayerNorm, `depth` post-LN blocks over packed sentences (no padding, no
// mask: each sentence attends to itself only), mean pooling over each
// sentence's tokens (optionally L2-normalised, as sentence-transformers'
// Normalize does). Padded input with lengths is packed first.
// Weights load from a safetensors file with Hugging Face BERT names
// (embeddings.word_embeddings.weight, encoder.layer.{i}.attention.self.query.weight, ...),
// e.g. all-MiniLM-L6-v2; query/key/value are fused into one QKV at load.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "../blocks/transformer_block.hpp"
#include "../io/safetensors.hpp"
#include "forward_args.hpp"
#include "tensor_store.hpp"
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
    detail::require_positive(where, "config.type_vocab_size", type_vocab_size);  // token type 0 is always read
    detail::require_positive(where, "config.dim", dim);
    detail::require_positive(where, "config.depth", depth);
    detail::require_positive(where, "config.heads", heads);
    detail::require_positive(where, "config.mlp_hidden", mlp_hidden);
    detail::require_multiple(where, "config.dim", dim, "config.heads", heads);
    detail::require_int_size(where, "config.dim", {dim});
    detail::require_int_size(where, "config.mlp_hidden", {mlp_hidden});
  }
};

struct BertWeights {
  using Layer = TransformerBlockTensors;
  BertConfig config;
  std::vector<float> word, position, token_type, emb_norm_w, emb_norm_b;
  std::vector<Layer> layers;

  static BertWeights load(const BertConfig& cfg, const io::SafeTensorsFile& f) {
    cfg.check("BertWeights::load");
    f.require_no_layer_past("encoder.layer.", cfg.depth, "config.depth");
    const std::int64_t C = cfg.dim, H = cfg.mlp_hidden;
    BertWeights w;
    w.config = cfg;
    w.word = f.load_f32("embeddings.word_embeddings.weight", {cfg.vocab_size, C});
    w.position = f.load_f32("embeddings.position_embeddings.weight", {cfg.max_positions, C});
    w.token_type = f.load_f32("embeddings.token_type_embeddings.weight", {cfg.type_vocab_size, C});
    w.emb_norm_w = f.load_f32("embeddings.LayerNorm.weight", {C});
    w.emb_norm_b = f.load_f32("embeddings.LayerNorm.bias", {C});
    for (int i = 0; i < cfg.depth; ++i) {
      const std::string p = fmt::format("encoder.layer.{}.", i);
      Layer l;
      // Rows [q; k; v]: the [3][heads][head_dim] layout the attention kernel reads.
      for (const char* part : {"query", "key", "value"}) {
        const auto wq = f.load_f32(fmt::format("{}attention.self.{}.weight", p, part), {C, C});
        const auto bq = f.load_f32(fmt::format("{}attention.self.{}.bias", p, part), {C});
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

  // Every tensor as (name, shape, storage), query/key/value fused as the
  // model holds them ("...attention.self.qkv.*"): what the encoder checks.
  template <class Fn>
  void for_each_tensor(Fn&& fn) const {
    using Shape = std::vector<std::int64_t>;
    const std::int64_t C = config.dim, H = config.mlp_hidden;
    if (layers.size() != std::size_t(config.depth)) {
      detail::fail("BertWeights", "layers holds {} layers, but config.depth = {}", layers.size(), config.depth);
    }
    fn("embeddings.word_embeddings.weight", Shape{config.vocab_size, C}, word);
    fn("embeddings.position_embeddings.weight", Shape{config.max_positions, C}, position);
    fn("embeddings.token_type_embeddings.weight", Shape{config.type_vocab_size, C}, token_type);
    fn("embeddings.LayerNorm.weight", Shape{C}, emb_norm_w);
    fn("embeddings.LayerNorm.bias", Shape{C}, emb_norm_b);
    for (int i = 0; i < config.depth; ++i) {
      const std::string p = fmt::format("encoder.layer.{}.", i);
      const Layer& l = layers[std::size_t(i)];
      fn(p + "attention.self.qkv.weight", Shape{3 * C, C}, l.qkv_w);
      fn(p + "attention.self.qkv.bias", Shape{3 * C}, l.qkv_b);
      fn(p + "attention.output.dense.weight", Shape{C, C}, l.proj_w);
      fn(p + "attention.output.dense.bias", Shape{C}, l.proj_b);
      fn(p + "attention.output.LayerNorm.weight", Shape{C}, l.norm1_w);
      fn(p + "attention.output.LayerNorm.bias", Shape{C}, l.norm1_b);
      fn(p + "intermediate.dense.weight", Shape{H, C}, l.fc1_w);
      fn(p + "intermediate.dense.bias", Shape{H}, l.fc1_b);
      fn(p + "output.dense.weight", Shape{C, H}, l.fc2_w);
      fn(p + "output.dense.bias", Shape{C}, l.fc2_b);
      fn(p + "output.LayerNorm.weight", Shape{C}, l.norm2_w);
      fn(p + "output.LayerNorm.bias", Shape{C}, l.norm2_b);
    }
  }
};

// What a forward pass did, per layer, for tests and demos: the packed
// layout entering each layer (then the final one) and, for each layer, the
// kept indices (local to each sample, packed by kept_cu_seqlens; empty for
// a layer that kept everything).
struct BertTrace {
  std::vector<std::vector<int>> cu_seqlens;       // depth + 1 entries of [batch + 1]
  std::vector<std::vector<int>> kept_cu_seqlens;  // depth entries of [batch + 1]
  std::vector<std::vector<int>> keep_idx;         // depth entries

  // Sample b's kept indices at layer l.
  std::vector<int> kept(int layer, int b) const {
    const auto& kcu = kept_cu_seqlens.at(std::size_t(layer));
    const auto& idx = keep_idx.at(std::size_t(layer));
    if (idx.empty()) return {};
    return {idx.begin() + kcu[std::size_t(b)], idx.begin() + kcu[std::size_t(b) + 1]};
  }
};

template <class Site = policies::Mlp, class Importance = policies::L2, class Compress = policies::Prune>
class BertEncoder {
 public:
  using BlockType = Block<policies::Transformer, Site, Importance, Compress, policies::PostNorm>;

  explicit BertEncoder(BertWeights weights) : BertEncoder(std::make_shared<const BertWeights>(std::move(weights))) {}
  // Encoders of different policies can share one set of weights (ablations).
  explicit BertEncoder(std::shared_ptr<const BertWeights> weights) : weights_(std::move(weights)) {
    detail::checked_weights("BertEncoder", weights_);
  }
  const BertConfig& config() const { return weights_->config; }

  // Packed sentences (FlashAttention's varlen layout): ids [total] token
  // ids (token type 0), sentence b's at [cu_seqlens[b], cu_seqlens[b + 1]);
  // pooled: [batch, dim] mean of each sentence's final tokens (size-weighted
  // with Merge), L2-normalised when `normalize`. Every layer of the
  // schedule keeps each sentence's count from its own length, and no work
  // is spent on padding: a sentence's embedding is the same alone or in
  // any batch. One thread at a time (a second is refused): the encoder
  // owns its scratch.
  void forward_packed(const Host& host, const int* ids, const int* cu_seqlens, int batch, float* pooled,
                      const PruneSchedule& requested = PruneSchedule::none(), bool normalize = true,
                      BertTrace* trace = nullptr) {
    constexpr const char* where = "BertEncoder::forward_packed";
    const auto entered = caller_.enter(where);
    const PruneSchedule schedule = requested.for_model(1);  // [CLS]
    detail::require_pointer(where, "ids", ids);
    detail::require_pointer(where, "pooled", pooled);
    detail::check_cu_seqlens(where, "cu_seqlens", cu_seqlens, batch);
    check_sentences(where, cu_seqlens, batch, schedule);
    for (std::int64_t i = 0; i < cu_seqlens[batch]; ++i) check_id(where, ids, i);
    run_packed(host, ids, cu_seqlens, batch, pooled, schedule, normalize, trace);
  }

  // Padded sentences: ids [batch, tokens] (token type 0), sentence b valid
  // in [0, lengths[b]) and padded after. Checks them as laid out, packs the
  // valid tokens and runs what forward_packed runs, so it gives the same
  // result as the packed call.
  void forward(const Host& host, const int* ids, const int* lengths, int batch, int tokens, float* pooled,
               const PruneSchedule& requested = PruneSchedule::none(), bool normalize = true,
               BertTrace* trace = nullptr) {
    constexpr const char* where = "BertEncoder::forward";
    const auto entered = caller_.enter(where);
    const PruneSchedule schedule = requested.for_model(1);  // [CLS]
    detail::require_pointer(where, "ids", ids);
    detail::require_pointer(where, "lengths", lengths);
    detail::require_pointer(where, "pooled", pooled);
    detail::require_positive(where, "batch", batch);
    detail::require_positive(where, "tokens", tokens);
    detail::require_at_most(where, "tokens", tokens, "config.max_positions", weights_->config.max_positions);
    for (int b = 0; b < batch; ++b) {
      if (lengths[b] < 1 || lengths[b] > tokens) {
        detail::fail(where, "lengths[{}] = {} is outside [1, tokens = {}]", b, lengths[b], tokens);
      }
      for (int t = 0; t < lengths[b]; ++t) check_id(where, ids, std::int64_t(b) * tokens + t);
    }
    const std::vector<int> cu = cu_seqlens_of(lengths, batch);
    check_sentences(where, cu.data(), batch, schedule);
    packed_ids_.resize(std::size_t(cu.back()));
    for (int b = 0; b < batch; ++b) {
      std::copy(ids + std::int64_t(b) * tokens, ids + std::int64_t(b) * tokens + lengths[b],
                packed_ids_.begin() + cu[std::size_t(b)]);
    }
    run_packed(host, packed_ids_.data(), cu.data(), batch, pooled, schedule, normalize, trace);
  }

 private:
  // Both forwards after their checks; schedule resolved for the model.
  void run_packed(const Host& host, const int* ids, const int* cu_seqlens, int batch, float* pooled,
                  const PruneSchedule& schedule, bool normalize, BertTrace* trace) {
    const BertConfig& cfg = weights_->config;
    const std::int64_t total = cu_seqlens[batch];
    const std::int64_t C = cfg.dim;
    ping_.resize(std::size_t(total * C));
    pong_.resize(ping_.size());
    cu_in_.assign(cu_seqlens, cu_seqlens + batch + 1);
    cu_out_.resize(cu_in_.size());
    embed(host, ids, batch, ping_.data());
    if (trace) *trace = BertTrace{{cu_in_}, {}, {}};
    if constexpr (BlockType::kMerge) {
      sizes_in_.assign(std::size_t(total), 1.0f);
      sizes_out_.resize(std::size_t(total));
    }

    float* x = ping_.data();
    float* y = pong_.data();
    for (int l = 0; l < cfg.depth; ++l) {
      TransformerBlockArgs a;
      a.x = x;
      a.y = y;
      a.batch = batch;
      a.protect = schedule.protect;
      a.seed = std::uint64_t(l);
      a.cu_seqlens = cu_in_.data();
      kept_cu_ = kept_cu_seqlens(cu_in_.data(), batch, [&](int n) { return schedule.keep_at(l, n); });
      const bool drops = kept_cu_.back() < cu_in_.back();
      a.kept_cu_seqlens = kept_cu_.data();
      a.out_cu_seqlens = cu_out_.data();
      if (trace) {
        trace->kept_cu_seqlens.push_back(kept_cu_);
        trace->keep_idx.emplace_back(drops ? std::size_t(kept_cu_.back()) : 0);
        if (drops) a.keep_idx = trace->keep_idx.back().data();
      }
      if constexpr (BlockType::kMerge) {
        a.sizes = sizes_in_.data();
        a.kept_sizes = sizes_out_.data();
      }
      BlockType::forward(host, weights_->block(l), a, ws_);
      if constexpr (BlockType::kMerge) {
        if (drops) std::swap(sizes_in_, sizes_out_);
      }
      std::swap(cu_in_, cu_out_);
      std::swap(x, y);
      if (trace) trace->cu_seqlens.push_back(cu_in_);
    }
    mean_pool(x, batch, pooled, normalize);
  }

  // Each sentence's length and the schedule's counts for it, refused before
  // the first layer runs.
  void check_sentences(const char* where, const int* cu_seqlens, int batch, const PruneSchedule& schedule) const {
    const BertConfig& cfg = weights_->config;
    schedule.check(where, cfg.depth);
    for (int b = 0; b < batch; ++b) {
      const int n = cu_seqlens[b + 1] - cu_seqlens[b];
      if (n < 1 || n > cfg.max_positions) {
        detail::fail(where, "sentence {} has {} tokens: must be in [1, config.max_positions = {}]", b, n,
                     cfg.max_positions);
      }
      schedule.check_sample(where, b, n, cfg.depth);
      schedule.check_reachable<Compress>(where, b, n, cfg.depth);
    }
  }

  void check_id(const char* where, const int* ids, std::int64_t i) const {
    if (ids[i] < 0 || ids[i] >= weights_->config.vocab_size) {
      detail::fail(where, "ids[{}] = {} is outside [0, vocab_size = {})", i, ids[i], weights_->config.vocab_size);
    }
  }

  // x = LN(word[id] + position[t] + token_type[0]), t the position within
  // the sentence.
  void embed(const Host& host, const int* ids, int batch, float* x) {
    const BertConfig& cfg = weights_->config;
    const std::int64_t C = cfg.dim;
    const cpu::LayerNormWeights ln{weights_->emb_norm_w.data(), weights_->emb_norm_b.data(), cfg.ln_eps};
#pragma omp parallel for schedule(static) num_threads(cpu::thread_count(host))
    for (int b = 0; b < batch; ++b) {
      for (int i = cu_in_[std::size_t(b)]; i < cu_in_[std::size_t(b) + 1]; ++i) {
        const std::int64_t t = i - cu_in_[std::size_t(b)];
        float* row = x + std::int64_t(i) * C;
        const float* we = weights_->word.data() + std::int64_t(ids[i]) * C;
        const float* pe = weights_->position.data() + t * C;
        const float* te = weights_->token_type.data();
        for (std::int64_t c = 0; c < C; ++c) row[c] = we[c] + pe[c] + te[c];
        cpu::layer_norm_row(row, row, C, ln);
      }
    }
  }

  void mean_pool(const float* x, int batch, float* pooled, bool normalize) const {
    const std::int64_t C = weights_->config.dim;
    for (int b = 0; b < batch; ++b) {
      float* out = pooled + std::int64_t(b) * C;
      std::fill(out, out + C, 0.0f);
      double weight = 0.0;
      for (int i = cu_in_[std::size_t(b)]; i < cu_in_[std::size_t(b) + 1]; ++i) {
        float w = 1.0f;
        if constexpr (BlockType::kMerge) w = sizes_in_[std::size_t(i)];
        const float* row = x + std::int64_t(i) * C;
        for (std::int64_t c = 0; c < C; ++c) out[c] += w * row[c];
        weight += w;
      }
      for (std::int64_t c = 0; c < C; ++c) out[c] = float(out[c] / weight);
      if (normalize) {
        double sq = 0;
        for (std::int64_t c = 0; c < C; ++c) sq += double(out[c]) * out[c];
        const float inv = float(1.0 / std::max(std::sqrt(sq), 1e-12));
        for (std::int64_t c = 0; c < C; ++c) out[c] *= inv;
      }
    }
  }

  std::shared_ptr<const BertWeights> weights_;
  Workspace<Host> ws_;
  std::vector<float> ping_, pong_, sizes_in_, sizes_out_;
  std::vector<int> packed_ids_, cu_in_, cu_out_, kept_cu_;
  detail::OneCaller caller_;
};

}  // namespace repshift
