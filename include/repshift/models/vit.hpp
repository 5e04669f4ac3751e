#pragma once
// ViT / DeiT built from Block<Transformer, Site, Metric, Compress, PreNorm>:
// patch embedding (models/patch_embed.hpp), CLS token,
// position embedding, `depth` blocks pruning per a PruneSchedule, final
// LayerNorm on the CLS token, classification head. Weights are random
// (timm's init: truncated normal std 0.02) or loaded from a safetensors
// file with timm's DeiT tensor names (patch_embed.proj.weight,
// blocks.{i}.attn.qkv.weight, ...).

#include <cmath>
#include <memory>
#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "../blocks/transformer_block.hpp"
#include "../io/safetensors.hpp"
#include "forward_args.hpp"
#include "patch_embed.hpp"
#include "weights_init.hpp"
#include "prune_schedule.hpp"

namespace repshift {

struct ViTConfig {
  int image_size = 224, patch_size = 16, in_chans = 3;
  int dim = 384, depth = 12, heads = 6, mlp_hidden = 1536, num_classes = 1000;
  float ln_eps = 1e-6f;

  static ViTConfig deit_tiny() { return {224, 16, 3, 192, 12, 3, 768, 1000, 1e-6f}; }
  static ViTConfig deit_small() { return {224, 16, 3, 384, 12, 6, 1536, 1000, 1e-6f}; }
  static ViTConfig deit_base() { return {224, 16, 3, 768, 12, 12, 3072, 1000, 1e-6f}; }
  // The small ViT trained on scikit-learn's 8x8 digits (data/digits_vit/,
  // bench/fidelity/train_digits_vit.py): 16 patches + CLS = 17 tokens.
  static ViTConfig digits() { return {8, 2, 1, 64, 6, 4, 128, 10, 1e-6f}; }

  int grid() const { return image_size / patch_size; }
  int num_patches() const { return grid() * grid(); }
  int tokens() const { return 1 + num_patches(); }
  int patch_dim() const { return in_chans * patch_size * patch_size; }

  void check(const char* where) const {
    detail::require_positive(where, "config.image_size", image_size);
    detail::require_positive(where, "config.patch_size", patch_size);
    detail::require_positive(where, "config.in_chans", in_chans);
    detail::require_positive(where, "config.dim", dim);
    detail::require_positive(where, "config.depth", depth);
    detail::require_positive(where, "config.heads", heads);
    detail::require_positive(where, "config.mlp_hidden", mlp_hidden);
    detail::require_positive(where, "config.num_classes", num_classes);
    detail::require_multiple(where, "config.image_size", image_size, "config.patch_size", patch_size);
    detail::require_multiple(where, "config.dim", dim, "config.heads", heads);
  }
};

// Owning weights, one vector per timm tensor.
struct ViTWeights {
  using BlockTensors = TransformerBlockTensors;
  ViTConfig config;
  std::vector<float> patch_w, patch_b, cls_token, pos_embed, norm_w, norm_b, head_w, head_b;
  std::vector<BlockTensors> blocks;

  // Every tensor as (timm name, shape, storage): the one list both the
  // loader and the writer walk.
  template <class Fn>
  void for_each_tensor(Fn&& fn) { visit(*this, fn); }
  template <class Fn>
  void for_each_tensor(Fn&& fn) const { visit(*this, fn); }

 private:
  template <class Self, class Fn>
  static void visit(Self& w, Fn& fn) {
    const ViTConfig& config = w.config;
    const std::int64_t C = config.dim, H = config.mlp_hidden;
    fn("patch_embed.proj.weight", std::vector<std::int64_t>{C, config.in_chans, config.patch_size, config.patch_size}, w.patch_w);
    fn("patch_embed.proj.bias", std::vector<std::int64_t>{C}, w.patch_b);
    fn("cls_token", std::vector<std::int64_t>{1, 1, C}, w.cls_token);
    fn("pos_embed", std::vector<std::int64_t>{1, config.tokens(), C}, w.pos_embed);
    for (int i = 0; i < config.depth; ++i) {
      const std::string p = "blocks." + std::to_string(i) + ".";
      auto& b = w.blocks[std::size_t(i)];
      fn(p + "norm1.weight", std::vector<std::int64_t>{C}, b.norm1_w);
      fn(p + "norm1.bias", std::vector<std::int64_t>{C}, b.norm1_b);
      fn(p + "attn.qkv.weight", std::vector<std::int64_t>{3 * C, C}, b.qkv_w);
      fn(p + "attn.qkv.bias", std::vector<std::int64_t>{3 * C}, b.qkv_b);
      fn(p + "attn.proj.weight", std::vector<std::int64_t>{C, C}, b.proj_w);
      fn(p + "attn.proj.bias", std::vector<std::int64_t>{C}, b.proj_b);
      fn(p + "norm2.weight", std::vector<std::int64_t>{C}, b.norm2_w);
      fn(p + "norm2.bias", std::vector<std::int64_t>{C}, b.norm2_b);
      fn(p + "mlp.fc1.weight", std::vector<std::int64_t>{H, C}, b.fc1_w);
      fn(p + "mlp.fc1.bias", std::vector<std::int64_t>{H}, b.fc1_b);
      fn(p + "mlp.fc2.weight", std::vector<std::int64_t>{C, H}, b.fc2_w);
      fn(p + "mlp.fc2.bias", std::vector<std::int64_t>{C}, b.fc2_b);
    }
    fn("norm.weight", std::vector<std::int64_t>{C}, w.norm_w);
    fn("norm.bias", std::vector<std::int64_t>{C}, w.norm_b);
    fn("head.weight", std::vector<std::int64_t>{config.num_classes, C}, w.head_w);
    fn("head.bias", std::vector<std::int64_t>{config.num_classes}, w.head_b);
  }

 public:

  // timm's init: weights and embeddings ~ truncated normal(0, 0.02), biases
  // 0, LayerNorm 1 / 0.
  static ViTWeights random(const ViTConfig& cfg, std::uint32_t seed) {
    cfg.check("ViTWeights::random");
    ViTWeights w;
    w.config = cfg;
    w.blocks.resize(std::size_t(cfg.depth));
    std::mt19937 gen(seed);
    w.for_each_tensor([&](const std::string& name, const std::vector<std::int64_t>& shape, std::vector<float>& v) {
      std::int64_t n = 1;
      for (auto d : shape) n *= d;
      v.assign(std::size_t(n), 0.0f);
      const bool is_norm = name.find("norm") != std::string::npos;
      const bool is_bias = init::ends_with(name, ".bias");
      if (is_norm && !is_bias) {
        std::fill(v.begin(), v.end(), 1.0f);
      } else if (!is_bias) {
        init::trunc_normal(v, gen);
      }
    });
    return w;
  }

  static ViTWeights load(const ViTConfig& cfg, const io::SafeTensorsFile& file) {
    cfg.check("ViTWeights::load");
    ViTWeights w;
    w.config = cfg;
    w.blocks.resize(std::size_t(cfg.depth));
    io::load_tensors(w, file);
    return w;
  }

  void save(const std::string& path) const { io::save_tensors(*this, path); }

  TransformerBlockWeights block(int i) const {
    return blocks.at(std::size_t(i)).view(config.dim, config.heads, config.mlp_hidden, config.ln_eps);
  }
};

// What a forward pass did, for tests and the demo.
struct ViTTrace {
  std::vector<int> tokens;                  // input tokens of each layer, then the final count
  std::vector<int> pruned_layers;           // layers that pruned
  std::vector<std::vector<int>> keep_idx;   // per pruned layer: [batch, keep] indices into that layer's input
  std::vector<std::vector<int>> source;     // per pruned layer: [batch, tokens out] original positions,
                                            // -1 for a fused token (Compress = Fuse)
};

template <class Site = policies::Mlp, class Metric = policies::L2, class Compress = policies::Prune>
class VisionTransformer {
 public:
  using BlockType = Block<policies::Transformer, Site, Metric, Compress, policies::PreNorm>;

  explicit VisionTransformer(ViTWeights weights)
      : VisionTransformer(std::make_shared<const ViTWeights>(std::move(weights))) {}
  // Models of different policies can share one set of weights (ablations).
  explicit VisionTransformer(std::shared_ptr<const ViTWeights> weights) : weights_(std::move(weights)) {
    detail::require_pointer("VisionTransformer", "weights", weights_.get());
    weights_->config.check("VisionTransformer");
  }
  const ViTConfig& config() const { return weights_->config; }

  // images: [batch, in_chans, image_size, image_size] (NCHW, float);
  // logits: [batch, num_classes]. Not thread-safe: the model owns its scratch.
  void forward(const Host& host, const float* images, int batch, float* logits,
               const PruneSchedule& schedule = PruneSchedule::none(), ViTTrace* trace = nullptr) {
    constexpr const char* where = "VisionTransformer::forward";
    const ViTConfig& cfg = weights_->config;
    detail::check_model_forward(where, images, logits, batch);
    schedule.check(where, cfg.depth);
    schedule.check_sample(where, 0, cfg.tokens(), cfg.depth);
    detail::require_at_most(where, "schedule.protect", schedule.protect, "tokens", cfg.tokens());
    const std::int64_t N = cfg.tokens(), C = cfg.dim;
    detail::checked_extent(where, "activations", batch, N, std::max<std::int64_t>(3 * C, cfg.mlp_hidden), sizeof(float));
    ping_.resize(std::size_t(batch * N * C));
    pong_.resize(ping_.size());

    embed(host, images, batch, ping_.data());
    if (trace) *trace = ViTTrace{{int(N)}, {}, {}, {}};

    int tokens = int(N);
    float* x = ping_.data();
    float* y = pong_.data();
    const float* sizes = nullptr;  // Merge: token sizes once a layer has merged (all 1 before)
    if constexpr (BlockType::kMerge) {
      sizes_in_.resize(std::size_t(batch * N));
      sizes_out_.resize(std::size_t(batch * N));
    }
    for (int l = 0; l < cfg.depth; ++l) {
      auto a = TransformerBlockArgs::dense(x, y, batch, tokens);
      a.keep = schedule.keep_at(l, tokens);
      a.protect = schedule.protect;
      a.seed = std::uint64_t(l);
      if constexpr (BlockType::kMerge) {
        a.sizes = sizes;
        if (a.keep < tokens) a.kept_sizes = sizes_out_.data();
      }
      if (trace && a.keep < tokens) {
        trace->pruned_layers.push_back(l);
        trace->keep_idx.emplace_back(std::size_t(batch) * a.keep);
        a.keep_idx = trace->keep_idx.back().data();
      }
      BlockType::forward(host, weights_->block(l), a, ws_);
      if (a.kept_sizes) {
        std::swap(sizes_in_, sizes_out_);
        sizes = sizes_in_.data();
      }
      const int out = BlockType::output_tokens(tokens, a.keep);
      if (trace && a.keep < tokens) record_source(*trace, batch, tokens, a.keep, out);
      tokens = out;
      std::swap(x, y);
      if (trace) trace->tokens.push_back(tokens);
    }
    head(host, x, batch, tokens, logits);
  }

 private:
  // Composes this layer's kept indices with the previous layers' so the
  // trace names original positions (CLS 0, patch p at 1 + p).
  static void record_source(ViTTrace& t, int batch, int tokens, int keep, int out) {
    const std::vector<int>& idx = t.keep_idx.back();
    std::vector<int> src(std::size_t(batch) * out, -1);  // rows past keep: fused tokens
    for (int b = 0; b < batch; ++b) {
      for (int k = 0; k < keep; ++k) {
        const int i = idx[std::size_t(b) * keep + k];
        src[std::size_t(b) * out + k] = t.source.empty() ? i : t.source.back()[std::size_t(b) * tokens + i];
      }
    }
    t.source.push_back(std::move(src));
  }

  // x[b, 0] = cls + pos[0]; x[b, 1 + p] = W . patch_p + bias + pos[1 + p]
  void embed(const Host& host, const float* images, int batch, float* x) {
    const ViTConfig& cfg = weights_->config;
    const int P = cfg.num_patches(), C = cfg.dim;
    proj_.resize(std::size_t(batch) * P * C);
    patch_embed(host, {cfg.image_size, cfg.patch_size, cfg.in_chans, C}, images, batch, weights_->patch_w.data(),
                weights_->patch_b.data(), cols_, proj_.data());
    const std::int64_t N = cfg.tokens();
#pragma omp parallel for schedule(static) num_threads(cpu::thread_count(host))
    for (std::int64_t bn = 0; bn < std::int64_t(batch) * N; ++bn) {
      const std::int64_t b = bn / N, n = bn % N;
      float* dst = x + bn * C;
      const float* pos = weights_->pos_embed.data() + n * C;
      const float* src = n == 0 ? weights_->cls_token.data() : proj_.data() + (b * P + n - 1) * C;
      for (int c = 0; c < C; ++c) dst[c] = src[c] + pos[c];
    }
  }

  // logits = head(LN(x[:, 0]))
  void head(const Host& host, const float* x, int batch, int tokens, float* logits) {
    const ViTConfig& cfg = weights_->config;
    const int C = cfg.dim;
    cls_.resize(std::size_t(batch) * C);
    const cpu::LayerNormWeights ln{weights_->norm_w.data(), weights_->norm_b.data(), cfg.ln_eps};
    for (int b = 0; b < batch; ++b) cpu::layer_norm_row(x + std::int64_t(b) * tokens * C, cls_.data() + std::int64_t(b) * C, C, ln);
    cpu::linear_bias(host, cls_.data(), batch, C, weights_->head_w.data(), weights_->head_b.data(), cfg.num_classes,
                     logits);
  }

  std::shared_ptr<const ViTWeights> weights_;
  TransformerWorkspace ws_;
  std::vector<float> ping_, pong_, cols_, proj_, cls_, sizes_in_, sizes_out_;
};

}  // namespace repshift
