#pragma once
// ViT / DeiT built from Block<Transformer, Site, Importance, Compress, PreNorm>,
// one model for every executor: patch embedding (im2col + GEMM), CLS
// token, position embedding, `depth` blocks pruning per a PruneSchedule,
// final LayerNorm on the CLS token, classification head. Weights are random
// (timm's init: truncated normal std 0.02) or loaded from a safetensors
// file with timm's DeiT tensor names (patch_embed.proj.weight,
// blocks.{i}.attn.qkv.weight, ...).
//
// The same model is the video encoder (models/video.hpp): with frames > 1
// the patch embedding cuts tubelets of `tubelet` frames, Pool::Mean drops
// the class token and pools the token mean through fc_norm, and UMT's
// fixed sinusoid positions and q/v-only attention biases are config
// choices.
//
//   rs::VisionTransformer<> deit(rs::ViTWeights::random(rs::ViTConfig::deit_small(), 0));   // CPU, f32
//   deit.forward(rs::Host{}, images, 8, logits, rs::PruneSchedule::paper());
//
//   rs::cuda::Blas blas;                                                   // after repshift/cuda.hpp
//   rs::cuda::VisionTransformer<__half> gpu(weights, blas);
//   gpu.reserve(64);                                                       // every allocation, up front
//   gpu.forward(rs::Cuda{stream}, d_images, 64, d_logits, rs::PruneSchedule::paper());

#include <algorithm>
#include <cmath>
#include <memory>
#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "../blocks/transformer_block.hpp"
#include "../blocks/workspace.hpp"
#include "../io/safetensors.hpp"
#include "forward_args.hpp"
#include "../params/patch_embed.hpp"
#include "../params/pool_tokens.hpp"
#include "tensor_store.hpp"
#include "transformer_model_weights.hpp"
#include "prune_schedule.hpp"
#include "weights_init.hpp"

namespace repshift {

struct ViTConfig {
  // Cls: a class token, logits from its row through `norm` (DeiT). Mean: no
  // class token, logits from the token mean through `fc_norm` (UMT, timm's
  // global_pool='avg').
  enum class Pool { Cls, Mean };
  // Learned: `pos_embed` is a tensor of the file. Sinusoid: VideoMAE's fixed
  // table, computed (UMT keeps it out of its state dict).
  enum class Positions { Learned, Sinusoid };
  // Fused: `attn.qkv.bias` [3 dim] (timm). QV: `attn.q_bias` and
  // `attn.v_bias` [dim], no k bias (VideoMAE, UMT).
  enum class QkvBias { Fused, QV };

  int image_size = 224, patch_size = 16, in_chans = 3;
  int dim = 384, depth = 12, heads = 6, mlp_hidden = 1536, num_classes = 1000;
  float ln_eps = 1e-6f;
  // Video: input [batch, in_chans, frames, image, image]; a token per
  // tubelet x patch x patch cube (Conv3d's weight [dim, in_chans, tubelet,
  // p, p] when conv3d_patch).
  int frames = 1, tubelet = 1;
  Pool pool = Pool::Cls;
  Positions positions = Positions::Learned;
  QkvBias qkv_bias = QkvBias::Fused;
  bool conv3d_patch = false;

  static ViTConfig deit_tiny() { return {224, 16, 3, 192, 12, 3, 768, 1000, 1e-6f}; }
  static ViTConfig deit_small() { return {224, 16, 3, 384, 12, 6, 1536, 1000, 1e-6f}; }
  static ViTConfig deit_base() { return {224, 16, 3, 768, 12, 12, 3072, 1000, 1e-6f}; }
  // The small ViT trained on scikit-learn's 8x8 digits (data/digits_vit/,
  // bench/fidelity/train_digits_vit.py): 16 patches + CLS = 17 tokens.
  static ViTConfig digits() { return {8, 2, 1, 64, 6, 4, 128, 10, 1e-6f}; }
  // UMT-B / UMT-L (ViT-B/16, ViT-L/16 over `frames` 224x224 frames; 400
  // Kinetics classes): 12 frames, tubelet 1 = 2352 tokens.
  static ViTConfig umt_base(int frames, int tubelet = 1) { return umt(768, 12, 12, 3072, frames, tubelet); }
  static ViTConfig umt_large(int frames, int tubelet = 1) { return umt(1024, 24, 16, 4096, frames, tubelet); }
  // The small video transformer trained on clips of the digits moving over
  // 8 frames of a 16x16 canvas (data/digit_clips/,
  // bench/fidelity/train_digit_clips.py): tubelet 2, patch 4 = 64 tokens.
  static ViTConfig digit_clips() {
    ViTConfig c = umt(64, 6, 4, 128, 8, 2);
    c.image_size = 16;
    c.patch_size = 4;
    c.in_chans = 1;
    c.num_classes = 10;
    return c;
  }

  bool class_token() const { return pool == Pool::Cls; }
  PatchGeometry geometry() const { return {image_size, patch_size, in_chans, frames, tubelet}; }
  int grid() const { return geometry().grid(); }
  int num_patches() const { return geometry().patches(); }
  int tokens() const { return (class_token() ? 1 : 0) + num_patches(); }
  int patch_dim() const { return geometry().patch_dim(); }
  std::string head_norm() const { return class_token() ? "norm" : "fc_norm"; }

  void check(const char* where) const {
    detail::require_epsilon(where, "config.ln_eps", ln_eps);
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
    detail::require_positive(where, "config.frames", frames);
    detail::require_positive(where, "config.tubelet", tubelet);
    detail::require_multiple(where, "config.frames", frames, "config.tubelet", tubelet);
    detail::require_int_size(where, "the patches (frames / tubelet x grid x grid)", {frames / tubelet, grid(), grid()});
    detail::require_int_size(where, "the patch vector (in_chans x tubelet x patch_size^2)",
                             {in_chans, tubelet, patch_size, patch_size});
    detail::require_int_size(where, "config.dim", {dim});
    detail::require_int_size(where, "config.mlp_hidden", {mlp_hidden});
    if (!conv3d_patch && tubelet != 1) {
      detail::fail(where, "config.tubelet = {} needs config.conv3d_patch (a Conv3d weight)", tubelet);
    }
  }

 private:
  static ViTConfig umt(int dim, int depth, int heads, int mlp, int frames, int tubelet) {
    ViTConfig c{224, 16, 3, dim, depth, heads, mlp, 400, 1e-6f};
    c.frames = frames;
    c.tubelet = tubelet;
    c.pool = Pool::Mean;
    c.positions = Positions::Sinusoid;
    c.qkv_bias = QkvBias::QV;
    c.conv3d_patch = true;
    return c;
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

  // Block i's tensors: block_prefix(i) + the names of kBlockTensors.
  static std::string block_prefix(int i) { return fmt::format("blocks.{}.", i); }
  static constexpr BlockTensorNames kBlockTensors = {
      "norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight", "attn.proj.bias",
      "norm2.weight", "norm2.bias", "mlp.fc1.weight",  "mlp.fc1.bias",  "mlp.fc2.weight",   "mlp.fc2.bias"};
  static constexpr const char* kModelWeights = "ViTModelWeights";

 private:
  // With QkvBias::QV, the attention prefix ("blocks.{i}.attn.") of a fused
  // qkv bias tensor, whose file form is q_bias + v_bias; else empty.
  std::string qv_bias_prefix(const std::string& name) const {
    const std::string fused = "qkv.bias";
    if (config.qkv_bias != ViTConfig::QkvBias::QV || !init::ends_with(name, fused)) return {};
    return name.substr(0, name.size() - fused.size());
  }

  template <class Self, class Fn>
  static void visit(Self& w, Fn& fn) {
    const ViTConfig& config = w.config;
    if (w.blocks.size() != std::size_t(config.depth)) {
      detail::fail("ViTWeights", "blocks holds {} blocks, but config.depth = {}", w.blocks.size(), config.depth);
    }
    const std::int64_t C = config.dim;
    const std::int64_t ps = config.patch_size;
    fn("patch_embed.proj.weight",
       config.conv3d_patch ? std::vector<std::int64_t>{C, config.in_chans, config.tubelet, ps, ps}
                           : std::vector<std::int64_t>{C, config.in_chans, ps, ps},
       w.patch_w);
    fn("patch_embed.proj.bias", std::vector<std::int64_t>{C}, w.patch_b);
    if (config.class_token()) fn("cls_token", std::vector<std::int64_t>{1, 1, C}, w.cls_token);
    fn("pos_embed", std::vector<std::int64_t>{1, config.tokens(), C}, w.pos_embed);
    for (int i = 0; i < config.depth; ++i) {
      for_each_block_tensor(block_prefix(i), kBlockTensors, C, config.mlp_hidden, w.blocks[std::size_t(i)], fn);
    }
    fn(config.head_norm() + ".weight", std::vector<std::int64_t>{C}, w.norm_w);
    fn(config.head_norm() + ".bias", std::vector<std::int64_t>{C}, w.norm_b);
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
      const std::int64_t n = io::shape_numel(shape);
      v.assign(std::size_t(n), 0.0f);
      const bool is_norm = name.find("norm") != std::string::npos;
      const bool is_bias = init::ends_with(name, ".bias");
      if (is_norm && !is_bias) {
        std::fill(v.begin(), v.end(), 1.0f);
      } else if (!is_bias) {
        init::trunc_normal(v, gen);
      }
    });
    if (cfg.positions == ViTConfig::Positions::Sinusoid) w.pos_embed = init::sinusoid_table(cfg.tokens(), cfg.dim);
    return w;
  }

  // Reads the tensors under the config's names: a Sinusoid table is
  // computed, not read; QV biases become the fused [q, 0, v].
  static ViTWeights load(const ViTConfig& cfg, const io::SafeTensorsFile& file) {
    cfg.check("ViTWeights::load");
    file.require_no_layer_past("blocks.", cfg.depth, "config.depth");
    ViTWeights w;
    w.config = cfg;
    w.blocks.resize(std::size_t(cfg.depth));
    const std::int64_t C = cfg.dim;
    io::TensorReader reader(file);
    w.for_each_tensor([&](const std::string& name, const std::vector<std::int64_t>& shape, std::vector<float>& v) {
      if (name == "pos_embed" && cfg.positions == ViTConfig::Positions::Sinusoid) {
        v = init::sinusoid_table(cfg.tokens(), cfg.dim);
      } else if (const std::string attn = w.qv_bias_prefix(name); !attn.empty()) {
        const auto q = reader.load_f32(attn + "q_bias", {C}), vb = reader.load_f32(attn + "v_bias", {C});
        v.assign(std::size_t(3 * C), 0.0f);
        std::copy(q.begin(), q.end(), v.begin());
        std::copy(vb.begin(), vb.end(), v.begin() + 2 * C);
      } else {
        v = reader.load_f32(name, shape);
      }
    });
    // timm's names for what this model would leave out: DeiT's distillation
    // token and head, register tokens, a pre-norm, the other head norm.
    reader.require_all_read({"blocks.", "patch_embed.", "cls_token", "pos_embed", "norm.", "fc_norm.", "norm_pre.",
                             "head.", "head_dist.", "dist_token", "reg_token"});
    return w;
  }

  // Writes the tensors under the config's names (load's inverse). A QV file
  // has no k bias: a nonzero one is refused, naming the tensor.
  void save(const std::string& path) const {
    detail::check_host_weights("ViTWeights::save", *this);
    const std::int64_t C = config.dim;
    std::vector<io::NamedTensor> list;
    for_each_tensor([&](const std::string& name, const std::vector<std::int64_t>& shape, const std::vector<float>& v) {
      if (name == "pos_embed" && config.positions == ViTConfig::Positions::Sinusoid) return;
      if (const std::string attn = qv_bias_prefix(name); !attn.empty()) {
        for (std::int64_t c = C; c < 2 * C; ++c) {
          if (v[std::size_t(c)] != 0.0f) {
            detail::fail("ViTWeights::save", "{}[{}] = {}: a k bias, which config.qkv_bias = QV files cannot hold",
                         name, c, v[std::size_t(c)]);
          }
        }
        list.push_back({attn + "q_bias", {C}, v.data()});
        list.push_back({attn + "v_bias", {C}, v.data() + 2 * C});
        return;
      }
      list.push_back({name, shape, v.data()});
    });
    io::save_safetensors(path, list);
  }

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

// Every ViT tensor where Exec's kernels read it, in storage type T, and the
// per-block views the Block takes.
template <class Exec, class T>
using ViTModelWeights = TransformerModelWeights<Exec, T, ViTWeights>;

// images: [batch, in_chans, image_size, image_size] (NCHW, T); logits:
// [batch, num_classes] (T); on CUDA both are device pointers. One thread
// at a time (a second is refused), and on CUDA one stream: the model owns
// its scratch; threads share weights, not models. reserve(batch)
// allocates everything a forward of up to `batch` images needs; the CPU
// model also grows on demand, the CUDA one refuses a batch larger than the
// largest reserved.
template <class Exec, class T, class Site = policies::Mlp, class Importance = policies::L2,
          class Compress = policies::Prune>
class BasicVisionTransformer {
  using B = Backend<Exec>;
  template <class U>
  using Buffer = typename B::template Buffer<U>;

 public:
  using BlockType = Block<policies::Transformer, Site, Importance, Compress, policies::PreNorm>;
  using ModelWeights = ViTModelWeights<Exec, T>;
  using Context = typename B::Context;

  // Models of different policies can share one set of weights (ablations).
  explicit BasicVisionTransformer(std::shared_ptr<const ModelWeights> weights, Context ctx = {})
      : weights_(std::move(weights)), ws_(ctx) {
    detail::require_pointer("VisionTransformer", "weights", weights_.get());
  }
  explicit BasicVisionTransformer(std::shared_ptr<const ViTWeights> weights, Context ctx = {})
      : BasicVisionTransformer(std::make_shared<const ModelWeights>(std::move(weights)), ctx) {}
  explicit BasicVisionTransformer(ViTWeights weights, Context ctx = {})
      : BasicVisionTransformer(std::make_shared<const ViTWeights>(std::move(weights)), ctx) {}
  const ViTConfig& config() const { return weights_->config(); }

  void reserve(int batch) {
    constexpr const char* where = "VisionTransformer::reserve";
    const auto entered = caller_.enter(where);
    detail::require_positive(where, "batch", batch);
    const ViTConfig& cfg = config();
    const std::int64_t N = cfg.tokens(), C = cfg.dim, P = cfg.num_patches();
    detail::checked_extent(where, "activations", batch, N,
                           std::max<std::int64_t>(3 * C, cfg.mlp_hidden), sizeof(T));
    detail::checked_extent(where, "patches", batch, P, cfg.patch_dim(), sizeof(T));
    BlockType::reserve(ws_, weights_->block(0), batch, N);
    ping_.resize(std::size_t(batch * N * C));
    pong_.resize(std::size_t(batch * N * C));
    cols_.resize(std::size_t(batch * P * cfg.patch_dim()));
    proj_.resize(std::size_t(batch * P * C));
    cls_.resize(std::size_t(batch * C));
    keep_idx_.resize(std::size_t(batch * N));
    if constexpr (BlockType::kMerge) {
      sizes_in_.resize(std::size_t(batch * N));
      sizes_out_.resize(std::size_t(batch * N));
    }
    reserved_ = std::max(reserved_, batch);  // the buffers only grow
  }

  // trace (optional): what the forward did, in host memory (on CUDA its
  // kept indices are copied back, which waits for the stream).
  void forward(const Exec& exec, const T* images, int batch, T* logits,
               const PruneSchedule& requested = PruneSchedule::none(), ViTTrace* trace = nullptr) {
    constexpr const char* where = "VisionTransformer::forward";
    const auto entered = caller_.enter(where);
    const ViTConfig& cfg = config();
    if (B::grows_on_demand && images && logits && batch > reserved_) reserve(batch);
    detail::check_model_forward(where, images, logits, batch, reserved_);
    if (!cfg.class_token() && requested.protect > 0) {
      detail::fail(where,
                   "schedule.protect = {} would always keep the first patches: this model has no class token "
                   "(Pool::Mean); leave protect at PruneSchedule::kModelPrefix (the default) or set 0",
                   requested.protect);
    }
    if (policies::reads_class_token<Importance>() && !cfg.class_token()) {
      detail::fail(where,
                   "importance {} reads the class token's attention row, and this model has none (Pool::Mean): "
                   "rank by attn_received (the mean over every query) instead",
                   Importance::name);
    }
    if (cfg.class_token() && requested.protect == 0) {
      detail::fail(where,
                   "schedule.protect = 0 would let a layer drop the class token, whose row the head reads "
                   "(Pool::Cls); leave protect at PruneSchedule::kModelPrefix (the default) or set >= 1");
    }
    const PruneSchedule schedule = requested.for_model(cfg.class_token() ? 1 : 0);
    schedule.check(where, cfg.depth);
    schedule.check_sample(where, 0, cfg.tokens(), cfg.depth);  // protect <= tokens among the rest
    schedule.check_reachable<Compress>(where, 0, cfg.tokens(), cfg.depth);
    const std::int64_t N = cfg.tokens(), C = cfg.dim;
    const ModelWeights& w = *weights_;

    // x[b, 0] = cls + pos[0]; x[b, 1 + p] = W . patch_p + bias + pos[1 + p]
    // (no class token: x[b, p] = W . patch_p + bias + pos[p])
    B::patchify(exec, images, batch, cfg.geometry(), cols_.data());
    B::linear(exec, ws_.context(), static_cast<const T*>(cols_.data()), std::int64_t(batch) * cfg.num_patches(),
              cfg.patch_dim(), w["patch_embed.proj.weight"], w["patch_embed.proj.bias"], C, proj_.data());
    B::assemble_tokens(exec, static_cast<const T*>(proj_.data()), cfg.class_token() ? w["cls_token"] : nullptr,
                       w["pos_embed"], batch, N, C, 0, ping_.data());
    if (trace) *trace = ViTTrace{{int(N)}, {}, {}, {}};

    int tokens = int(N);
    bool first_rows_only = false;  // x holds row 0 of each sample alone (after a first_token_only block)
    T* x = ping_.data();
    T* y = pong_.data();
    const float* sizes = nullptr;  // Merge: token sizes once a layer has merged (all 1 before)
    float* sizes_in = sizes_in_.data();
    float* sizes_out = sizes_out_.data();
    for (int l = 0; l < cfg.depth; ++l) {
      auto a = BasicTransformerBlockArgs<T>::dense(x, y, batch, tokens);
      a.keep = schedule.keep_at(l, tokens);
      a.protect = schedule.protect;
      a.seed = std::uint64_t(l);
      if constexpr (BlockType::kMerge) {
        a.sizes = sizes;
        if (a.keep < tokens) a.kept_sizes = sizes_out;
      }
      const bool pruned = a.keep < tokens;
      // The class-token head reads row 0 alone: a last block that compresses
      // nothing computes no other row past attention.
      a.first_token_only = cfg.class_token() && l == cfg.depth - 1 && !pruned;
      if (trace && pruned) a.keep_idx = keep_idx_.data();
      BlockType::forward(exec, w.block(l), a, ws_);
      if (a.kept_sizes) {
        std::swap(sizes_in, sizes_out);
        sizes = sizes_in;
      }
      const int out = BlockType::output_tokens(tokens, a.keep);
      if (trace && pruned) {
        trace->pruned_layers.push_back(l);
        trace->keep_idx.emplace_back(std::size_t(batch) * a.keep);
        B::copy_to_host(exec, keep_idx_.data(), std::int64_t(batch) * a.keep, trace->keep_idx.back().data());
        record_source(*trace, batch, tokens, a.keep, out);
      }
      tokens = out;
      std::swap(x, y);
      if (trace) trace->tokens.push_back(tokens);
      first_rows_only = a.first_token_only;
    }
    // logits = head(norm(x[:, 0])), or head(fc_norm(mean over n of x[:, n]))
    const T* pooled = x;
    std::int64_t pooled_stride = (first_rows_only ? 1 : std::int64_t(tokens)) * C;
    if (!cfg.class_token()) {
      PoolParams<T> pool;
      pool.x = x;
      pool.batch = batch;
      pool.tokens = tokens;
      pool.channels = C;
      pool.sizes = sizes;  // Merge: a merged row weighs as the tokens it holds, as in ToMe's pooling
      pool.out = y;
      B::pool_tokens(exec, pool);
      pooled = y;
      pooled_stride = C;
    }
    B::layer_norm_rows(exec, pooled, pooled_stride, cls_.data(), C, batch, C,
                       LayerNormParams<T>{w[cfg.head_norm() + ".weight"], w[cfg.head_norm() + ".bias"], cfg.ln_eps});
    B::linear(exec, ws_.context(), static_cast<const T*>(cls_.data()), batch, C, w["head.weight"], w["head.bias"],
              cfg.num_classes, logits);
  }

 private:
  // Composes this layer's kept indices with the previous layers' so the
  // trace names original positions (CLS 0, patch p at 1 + p; without a
  // class token patch p at p).
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

  std::shared_ptr<const ModelWeights> weights_;
  Workspace<Exec, T> ws_;
  Buffer<T> ping_, pong_, cols_, proj_, cls_;
  Buffer<float> sizes_in_, sizes_out_;
  Buffer<int> keep_idx_;
  int reserved_ = 0;
  detail::OneCaller caller_;
};

// The CPU model, f32 (the CUDA one: rs::cuda::VisionTransformer<T, ...>).
template <class Site = policies::Mlp, class Importance = policies::L2, class Compress = policies::Prune>
using VisionTransformer = BasicVisionTransformer<Host, float, Site, Importance, Compress>;

}  // namespace repshift
