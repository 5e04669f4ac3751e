#pragma once
// BERT-style sentence encoder from Block<Transformer, Site, Importance,
// Compress, PostNorm>, one model for every executor: word + position +
// token-type embeddings and LayerNorm, `depth` post-LN blocks over packed
// sentences (no padding, no mask: each sentence attends to itself only),
// mean pooling over each sentence's tokens (optionally L2-normalised, as
// sentence-transformers' Normalize does). Padded input is read in place.
// Weights load from a safetensors file with Hugging Face BERT names
// (embeddings.word_embeddings.weight, encoder.layer.{i}.attention.self.query.weight, ...),
// e.g. all-MiniLM-L6-v2; query/key/value are fused into one QKV at load.
//
//   rs::BertEncoder<> minilm(rs::BertWeights::load(rs::BertConfig::minilm_l6(), file));   // CPU, f32
//   minilm.forward_packed(rs::Host{}, ids, cu_seqlens, batch, pooled, rs::PruneSchedule::paper());
//
//   rs::cuda::BertEncoder<__half> gpu(weights, blas);                      // after repshift/cuda.hpp
//   gpu.reserve(64, 128);            // 64 sentences of up to 128 tokens: every allocation, up front
//   gpu.forward_packed(rs::Cuda{stream}, d_ids, cu_seqlens, 64, d_pooled);  // cu_seqlens in host memory

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "../blocks/transformer_block.hpp"
#include "../blocks/workspace.hpp"
#include "../params/embed_tokens.hpp"
#include "../params/pool_tokens.hpp"
#include "../io/safetensors.hpp"
#include "forward_args.hpp"
#include "tensor_store.hpp"
#include "transformer_model_weights.hpp"
#include "prune_schedule.hpp"

namespace repshift {

struct BertConfig {
  int vocab_size = 30522, max_positions = 512, type_vocab_size = 2;
  int dim = 384, depth = 6, heads = 12, mlp_hidden = 1536;
  float ln_eps = 1e-12f;

  static BertConfig minilm_l6() { return {}; }

  void check(const char* where) const {
    detail::require_epsilon(where, "config.ln_eps", ln_eps);
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
    io::TensorReader reader(f);
    w.word = reader.load_f32("embeddings.word_embeddings.weight", {cfg.vocab_size, C});
    w.position = reader.load_f32("embeddings.position_embeddings.weight", {cfg.max_positions, C});
    w.token_type = reader.load_f32("embeddings.token_type_embeddings.weight", {cfg.type_vocab_size, C});
    w.emb_norm_w = reader.load_f32("embeddings.LayerNorm.weight", {C});
    w.emb_norm_b = reader.load_f32("embeddings.LayerNorm.bias", {C});
    for (int i = 0; i < cfg.depth; ++i) {
      const std::string p = block_prefix(i);
      Layer l;
      // Rows [q; k; v]: the [3][heads][head_dim] layout the attention kernel reads.
      for (const char* part : {"query", "key", "value"}) {
        const auto wq = reader.load_f32(fmt::format("{}attention.self.{}.weight", p, part), {C, C});
        const auto bq = reader.load_f32(fmt::format("{}attention.self.{}.bias", p, part), {C});
        l.qkv_w.insert(l.qkv_w.end(), wq.begin(), wq.end());
        l.qkv_b.insert(l.qkv_b.end(), bq.begin(), bq.end());
      }
      // The rest under the names the model keeps (the fused qkv is filled).
      const auto load = [&](const std::string& name, const std::vector<std::int64_t>& shape, std::vector<float>& v) {
        if (v.empty()) v = reader.load_f32(name, shape);
      };
      for_each_block_tensor(p, kBlockTensors, C, H, l, load);
      w.layers.push_back(std::move(l));
    }
    reader.require_all_read({"encoder.layer.", "embeddings."});  // e.g. relative positions' distance_embedding
    return w;
  }

  // Layer i's tensors: block_prefix(i) + the names of kBlockTensors, with
  // query/key/value fused as the model holds them ("attention.self.qkv.*").
  static std::string block_prefix(int i) { return fmt::format("encoder.layer.{}.", i); }
  static constexpr BlockTensorNames kBlockTensors = {
      "attention.output.LayerNorm.weight",  // post-norm: norm1 follows attention
      "attention.output.LayerNorm.bias",
      "attention.self.qkv.weight",
      "attention.self.qkv.bias",
      "attention.output.dense.weight",
      "attention.output.dense.bias",
      "output.LayerNorm.weight",
      "output.LayerNorm.bias",
      "intermediate.dense.weight",
      "intermediate.dense.bias",
      "output.dense.weight",
      "output.dense.bias"};
  static constexpr const char* kModelWeights = "BertModelWeights";

  // Every tensor as (name, shape, storage), query/key/value fused: what the
  // encoder checks.
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
      for_each_block_tensor(block_prefix(i), kBlockTensors, C, H, layers[std::size_t(i)], fn);
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
    if (layer < 0 || std::size_t(layer) >= keep_idx.size()) {
      detail::fail("BertTrace::kept", "layer = {} is outside [0, {})", layer, keep_idx.size());
    }
    const auto& kcu = kept_cu_seqlens.at(std::size_t(layer));
    const std::size_t batch = kcu.empty() ? 0 : kcu.size() - 1;
    if (b < 0 || std::size_t(b) >= batch) detail::fail("BertTrace::kept", "b = {} is outside [0, batch = {})", b, batch);
    const auto& idx = keep_idx[std::size_t(layer)];
    if (idx.empty()) return {};
    return {idx.begin() + kcu[std::size_t(b)], idx.begin() + kcu[std::size_t(b) + 1]};
  }
};

// Every BERT tensor where Exec's kernels read it, in storage type T, and
// the per-layer views the Block takes.
template <class Exec, class T>
using BertModelWeights = TransformerModelWeights<Exec, T, BertWeights>;

// ids and pooled live where Exec's kernels read them (device pointers on
// CUDA); cu_seqlens and lengths are host memory, as the schedule is planned
// on the host. One thread at a time (a second is refused), and on CUDA one
// stream: the encoder owns its scratch; threads share weights, not encoders. reserve(batch, tokens)
// allocates everything a forward of up to `batch` sentences of up to
// `tokens` tokens needs; the CPU encoder also grows on demand, the CUDA one
// refuses a larger forward. On CUDA an id outside the vocabulary zeroes its
// row and is recorded in exec.status (rs::cuda::throw_if_status names it);
// the CPU refuses it before anything runs.
template <class Exec, class T, class Site = policies::Mlp, class Importance = policies::L2,
          class Compress = policies::Prune>
class BasicBertEncoder {
  using B = Backend<Exec>;
  template <class U>
  using Buffer = typename B::template Buffer<U>;

 public:
  using BlockType = Block<policies::Transformer, Site, Importance, Compress, policies::PostNorm>;
  using ModelWeights = BertModelWeights<Exec, T>;
  using Context = typename B::Context;

  // Encoders of different policies can share one set of weights (ablations).
  explicit BasicBertEncoder(std::shared_ptr<const ModelWeights> weights, Context ctx = {})
      : weights_(std::move(weights)), ws_(ctx) {
    detail::require_pointer("BertEncoder", "weights", weights_.get());
  }
  explicit BasicBertEncoder(std::shared_ptr<const BertWeights> weights, Context ctx = {})
      : BasicBertEncoder(std::make_shared<const ModelWeights>(std::move(weights)), ctx) {}
  explicit BasicBertEncoder(BertWeights weights, Context ctx = {})
      : BasicBertEncoder(std::make_shared<const BertWeights>(std::move(weights)), ctx) {}
  const BertConfig& config() const { return weights_->config(); }

  // Room for `batch` sentences of up to `tokens` tokens each.
  void reserve(int batch, int tokens) {
    constexpr const char* where = "BertEncoder::reserve";
    const auto entered = caller_.enter(where);
    detail::require_positive(where, "batch", batch);
    detail::require_positive(where, "tokens", tokens);
    detail::require_at_most(where, "tokens", tokens, "config.max_positions", config().max_positions);
    grow(where, {batch, detail::checked_extent(where, "batch x tokens", batch, tokens, 1, 1), tokens});
  }

  // Packed sentences (FlashAttention's varlen layout): ids [total] token
  // ids (token type 0), sentence b's at [cu_seqlens[b], cu_seqlens[b + 1]);
  // pooled: [batch, dim] mean of each sentence's final tokens (size-weighted
  // with Merge), L2-normalised when `normalize`. Every layer of the
  // schedule keeps each sentence's count from its own length, and no work
  // is spent on padding: a sentence's embedding is the same alone or in
  // any batch.
  void forward_packed(const Exec& exec, const int* ids, const int* cu_seqlens, int batch, T* pooled,
                      const PruneSchedule& requested = PruneSchedule::none(), bool normalize = true,
                      BertTrace* trace = nullptr) {
    constexpr const char* where = "BertEncoder::forward_packed";
    const auto entered = caller_.enter(where);
    const PruneSchedule schedule = requested.for_model(1);  // [CLS]
    detail::require_pointer(where, "ids", ids);
    detail::require_pointer(where, "pooled", pooled);
    detail::check_cu_seqlens(where, "cu_seqlens", cu_seqlens, batch);
    check_sentences(where, cu_seqlens, batch, schedule);
    run(where, exec, ids, 0, cu_seqlens, batch, pooled, schedule, normalize, trace);
  }

  // Padded sentences: ids [batch, tokens] (token type 0), sentence b valid
  // in [0, lengths[b]) and padded after. Read in place (the padding is
  // never touched): the same result as the packed call.
  void forward(const Exec& exec, const int* ids, const int* lengths, int batch, int tokens, T* pooled,
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
    detail::require_at_most(where, "tokens", tokens, "config.max_positions", config().max_positions);
    for (int b = 0; b < batch; ++b) {
      if (lengths[b] < 1 || lengths[b] > tokens) {
        detail::fail(where, "lengths[{}] = {} is outside [1, tokens = {}]", b, lengths[b], tokens);
      }
    }
    const std::vector<int> cu = cu_seqlens_of(lengths, batch);
    check_sentences(where, cu.data(), batch, schedule);
    run(where, exec, ids, tokens, cu.data(), batch, pooled, schedule, normalize, trace);
  }

 private:
  // What the scratch holds room for: sentences, rows in all, the longest.
  struct Extent {
    std::int64_t batch = 0, rows = 0, longest = 0;
    bool fits_in(const Extent& o) const { return batch <= o.batch && rows <= o.rows && longest <= o.longest; }
  };

  void grow(const char* where, const Extent& want) {
    const Extent e{std::max(want.batch, held_.batch), std::max(want.rows, held_.rows),
                   std::max(want.longest, held_.longest)};
    const std::int64_t C = config().dim;
    detail::checked_extent(where, "activations", 1, e.rows,
                           std::max<std::int64_t>(3 * C, config().mlp_hidden), sizeof(T));
    ws_.reserve(BlockType::workspace_extent(weights_->block(0), e.batch, e.rows, e.longest));
    ping_.resize(std::size_t(e.rows * C));
    pong_.resize(std::size_t(e.rows * C));
    keep_idx_.resize(std::size_t(e.rows));
    cu_staged_.resize(std::size_t(e.batch + 1));
    if constexpr (BlockType::kMerge) {
      sizes_in_.resize(std::size_t(e.rows));
      sizes_out_.resize(std::size_t(e.rows));
    }
    held_ = e;
  }

  // Both forwards after their checks, ids packed (ids_stride 0) or padded
  // [batch, ids_stride]; schedule resolved for the model.
  void run(const char* where, const Exec& exec, const int* ids, int ids_stride, const int* cu_seqlens, int batch,
           T* pooled, const PruneSchedule& schedule, bool normalize, BertTrace* trace) {
    const BertConfig& cfg = config();
    const ModelWeights& w = *weights_;
    const std::int64_t C = cfg.dim;
    // x = LN(word[id] + position[t] + token_type[0]), t the position within the sentence.
    EmbedParams<T> embed;
    embed.ids = ids;
    embed.ids_stride = ids_stride;
    embed.cu_seqlens = cu_seqlens;  // host memory here; staged for the kernel below
    embed.batch = batch;
    embed.rows = cu_seqlens[batch];
    embed.vocab = cfg.vocab_size;
    // The CPU refuses a bad id before anything runs; CUDA's kernel reports it (exec.status).
    if constexpr (is_host_v<Exec>) embed.check_ids_host(where);
    const Extent need{batch, embed.rows, max_seqlen(cu_seqlens, batch)};
    if (!need.fits_in(held_)) {
      if (!B::grows_on_demand) {
        detail::fail(where,
                     "{} sentences of {} tokens in all, the longest {}, exceed what reserve() holds: {} sentences, "
                     "{} tokens in all, the longest {}: call reserve(batch, tokens) first",
                     need.batch, need.rows, need.longest, held_.batch, held_.rows, held_.longest);
      }
      grow(where, need);
    }
    cu_in_.assign(cu_seqlens, cu_seqlens + batch + 1);
    cu_out_.resize(cu_in_.size());

    embed.cu_seqlens = B::stage_ints(exec, cu_in_, cu_staged_);
    embed.dim = C;
    embed.word = w["embeddings.word_embeddings.weight"];
    embed.position = w["embeddings.position_embeddings.weight"];
    embed.token_type = w["embeddings.token_type_embeddings.weight"];
    embed.norm = {w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], cfg.ln_eps};
    embed.out = ping_.data();
    B::embed_tokens(exec, embed);
    if (trace) *trace = BertTrace{{cu_in_}, {}, {}};

    T* x = ping_.data();
    T* y = pong_.data();
    const float* sizes = nullptr;  // Merge: token sizes once a layer has merged (all 1 before)
    float* sizes_in = sizes_in_.data();
    float* sizes_out = sizes_out_.data();
    for (int l = 0; l < cfg.depth; ++l) {
      BasicTransformerBlockArgs<T> a;
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
      if (trace && drops) a.keep_idx = keep_idx_.data();
      if constexpr (BlockType::kMerge) {
        a.sizes = sizes;
        if (drops) a.kept_sizes = sizes_out;
      }
      BlockType::forward(exec, w.block(l), a, ws_);
      if (trace) {
        trace->kept_cu_seqlens.push_back(kept_cu_);
        trace->keep_idx.emplace_back(drops ? std::size_t(kept_cu_.back()) : 0);
        if (drops) B::copy_to_host(exec, keep_idx_.data(), kept_cu_.back(), trace->keep_idx.back().data());
      }
      if (a.kept_sizes) {
        std::swap(sizes_in, sizes_out);
        sizes = sizes_in;
      }
      std::swap(cu_in_, cu_out_);
      std::swap(x, y);
      if (trace) trace->cu_seqlens.push_back(cu_in_);
    }

    PoolParams<T> pool;
    pool.x = x;
    pool.cu_seqlens = B::stage_ints(exec, cu_in_, cu_staged_);
    pool.sizes = sizes;
    pool.batch = batch;
    pool.channels = C;
    pool.normalize = normalize;
    pool.out = pooled;
    B::pool_tokens(exec, pool);
  }

  // Each sentence's length and the schedule's counts for it, refused before
  // the first layer runs.
  void check_sentences(const char* where, const int* cu_seqlens, int batch, const PruneSchedule& schedule) const {
    const BertConfig& cfg = config();
    schedule.check(where, cfg.depth);
    if (policies::reads_class_token<Importance>() && !schedule.empty() && schedule.protect < 1) {
      detail::fail(where, "importance {} reads [CLS]'s attention row: schedule.protect = {} would let a layer drop "
                          "[CLS] (set >= 1)", Importance::name, schedule.protect);
    }
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

  std::shared_ptr<const ModelWeights> weights_;
  Workspace<Exec, T> ws_;
  Buffer<T> ping_, pong_;
  Buffer<float> sizes_in_, sizes_out_;
  Buffer<int> keep_idx_, cu_staged_;
  std::vector<int> cu_in_, cu_out_, kept_cu_;  // host: the plan
  Extent held_;
  detail::OneCaller caller_;
};

// The CPU encoder, f32 (the CUDA one: rs::cuda::BertEncoder<T, ...>).
template <class Site = policies::Mlp, class Importance = policies::L2, class Compress = policies::Prune>
using BertEncoder = BasicBertEncoder<Host, float, Site, Importance, Compress>;

}  // namespace repshift
