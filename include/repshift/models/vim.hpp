#pragma once
// Vision Mamba (Vim) built from Block<SsmScan, Block, Metric, Prune,
// PreNorm>: patch embedding, a class token inserted at `cls_position`
// (Vim puts it in the middle of the patch sequence), position embedding,
// `depth` bidirectional Mamba blocks pruning per a PruneSchedule with the
// class token always kept (and followed as its position moves), final
// RMSNorm on the class token, classification head. Weights are random
// (Mamba's init) or loaded from a safetensors file with Vim's tensor names
// (layers.{i}.mixer.in_proj.weight, layers.{i}.mixer.A_b_log, norm_f.weight, ...).

#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "../blocks/ssm_block.hpp"
#include "../io/safetensors.hpp"
#include "forward_args.hpp"
#include "patch_embed.hpp"
#include "weights_init.hpp"
#include "prune_schedule.hpp"

namespace repshift {

struct VimConfig {
  int image_size = 224, patch_size = 16, in_chans = 3;
  int dim = 192, depth = 24, state = 16, expand = 2, conv_kernel = 4, dt_rank = 12, num_classes = 1000;
  int cls_position = -1;  // index of the class token in the sequence; -1: the middle, num_patches / 2 (Vim)
  float eps = 1e-5f;

  // Vim-T: d_model 192, 24 layers, state 16, expand 2, patch 16, dt_rank ceil(192 / 16).
  static VimConfig vim_tiny() { return {}; }

  int grid() const { return image_size / patch_size; }
  int num_patches() const { return grid() * grid(); }
  int tokens() const { return num_patches() + 1; }
  int inner() const { return expand * dim; }
  int cls_index() const { return cls_position < 0 ? num_patches() / 2 : cls_position; }
  PatchEmbedShape patch_shape() const { return {image_size, patch_size, in_chans, dim}; }

  void check(const char* where) const {
    detail::require_positive(where, "config.image_size", image_size);
    detail::require_positive(where, "config.patch_size", patch_size);
    detail::require_positive(where, "config.in_chans", in_chans);
    detail::require_positive(where, "config.dim", dim);
    detail::require_positive(where, "config.depth", depth);
    detail::require_positive(where, "config.state", state);
    detail::require_positive(where, "config.expand", expand);
    detail::require_positive(where, "config.conv_kernel", conv_kernel);
    detail::require_positive(where, "config.dt_rank", dt_rank);
    detail::require_positive(where, "config.num_classes", num_classes);
    detail::require_multiple(where, "config.image_size", image_size, "config.patch_size", patch_size);
    detail::require_at_most(where, "config.state", state, "SelectiveScanParams::kMaxState",
                            SelectiveScanParams::kMaxState);
    if (cls_position < -1 || cls_position > num_patches()) {
      detail::fail(where, "config.cls_position = " + std::to_string(cls_position) + " is outside [-1, num_patches = " +
                              std::to_string(num_patches()) + "]");
    }
  }
};

// The paper's DeiT blocks (0, 3, 6 of 12) scaled to Vim-T's 24: drop
// `drop_ratio` at blocks 0, 6 and 12; no protected prefix (the class token
// is kept wherever it is).
inline PruneSchedule vim_schedule(double drop_ratio = 0.2) {
  return PruneSchedule::drop({{0, drop_ratio}, {6, drop_ratio}, {12, drop_ratio}}, /*protect=*/0);
}

struct VimWeights {
  VimConfig config;
  std::vector<float> patch_w, patch_b, cls_token, pos_embed, norm_f_w, head_w, head_b;
  std::vector<SsmBlockTensors> layers;

  template <class Fn>
  void for_each_tensor(Fn&& fn) { visit(*this, fn); }
  template <class Fn>
  void for_each_tensor(Fn&& fn) const { visit(*this, fn); }

 private:
  template <class Self, class Fn>
  static void visit(Self& w, Fn& fn) {
    const VimConfig& c = w.config;
    using Shape = std::vector<std::int64_t>;
    const std::int64_t C = c.dim, I = c.inner(), S = c.state, R = c.dt_rank, K = c.conv_kernel;
    fn("patch_embed.proj.weight", Shape{C, c.in_chans, c.patch_size, c.patch_size}, w.patch_w);
    fn("patch_embed.proj.bias", Shape{C}, w.patch_b);
    fn("cls_token", Shape{1, 1, C}, w.cls_token);
    fn("pos_embed", Shape{1, c.tokens(), C}, w.pos_embed);
    for (int i = 0; i < c.depth; ++i) {
      const std::string p = "layers." + std::to_string(i) + ".";
      auto& l = w.layers[std::size_t(i)];
      fn(p + "norm.weight", Shape{C}, l.norm_w);
      fn(p + "mixer.in_proj.weight", Shape{2 * I, C}, l.in_proj_w);
      for (int dir = 0; dir < 2; ++dir) {
        auto& b = dir == 0 ? l.fwd : l.bwd;
        const std::string s = dir == 0 ? "" : "_b";
        fn(p + "mixer.conv1d" + s + ".weight", Shape{I, 1, K}, b.conv_w);
        fn(p + "mixer.conv1d" + s + ".bias", Shape{I}, b.conv_b);
        fn(p + "mixer.x_proj" + s + ".weight", Shape{R + 2 * S, I}, b.x_proj_w);
        fn(p + "mixer.dt_proj" + s + ".weight", Shape{I, R}, b.dt_proj_w);
        fn(p + "mixer.dt_proj" + s + ".bias", Shape{I}, b.dt_proj_b);
        fn(p + "mixer.A" + s + "_log", Shape{I, S}, b.A_log);
        fn(p + "mixer.D" + s, Shape{I}, b.D);
      }
      fn(p + "mixer.out_proj.weight", Shape{C, I}, l.out_proj_w);
    }
    fn("norm_f.weight", Shape{C}, w.norm_f_w);
    fn("head.weight", Shape{c.num_classes, C}, w.head_w);
    fn("head.bias", Shape{c.num_classes}, w.head_b);
  }

 public:
  // Mamba's init: A_log[d, n] = log(n + 1), D = 1, dt_proj.bias = softplus^-1
  // of dt ~ log-uniform [1e-3, 1e-1], dt_proj.weight ~ U(+-dt_rank^-1/2),
  // conv ~ U(+-1/sqrt(kernel)); other weights and embeddings truncated
  // normal(0, 0.02); norms 1, biases 0.
  static VimWeights random(const VimConfig& cfg, std::uint32_t seed) {
    cfg.check("VimWeights::random");
    VimWeights w;
    w.config = cfg;
    w.layers.resize(std::size_t(cfg.depth));
    std::mt19937 gen(seed);
    std::uniform_real_distribution<float> unit(0.0f, 1.0f);
    w.for_each_tensor([&](const std::string& name, const std::vector<std::int64_t>& shape, std::vector<float>& v) {
      std::int64_t n = 1;
      for (auto d : shape) n *= d;
      v.assign(std::size_t(n), 0.0f);
      if (init::ends_with(name, "_log")) {
        for (std::int64_t i = 0; i < n; ++i) v[std::size_t(i)] = std::log(float(i % shape[1] + 1));
      } else if (init::ends_with(name, ".D") || init::ends_with(name, ".D_b") || init::ends_with(name, "norm.weight") ||
                 name == "norm_f.weight") {
        std::fill(v.begin(), v.end(), 1.0f);
      } else if (name.find("dt_proj") != std::string::npos && init::ends_with(name, ".bias")) {
        for (auto& x : v) {
          const float dt = std::exp(unit(gen) * (std::log(0.1f) - std::log(1e-3f)) + std::log(1e-3f));
          x = dt + std::log(-std::expm1(-dt));  // softplus^-1(dt)
        }
      } else if (name.find("dt_proj") != std::string::npos) {
        init::uniform(v, gen, 1.0f / std::sqrt(float(cfg.dt_rank)));
      } else if (name.find("conv1d") != std::string::npos) {
        init::uniform(v, gen, 1.0f / std::sqrt(float(cfg.conv_kernel)));
      } else if (!init::ends_with(name, ".bias")) {
        init::trunc_normal(v, gen);
      }
    });
    return w;
  }

  static VimWeights load(const VimConfig& cfg, const io::SafeTensorsFile& file) {
    cfg.check("VimWeights::load");
    VimWeights w;
    w.config = cfg;
    w.layers.resize(std::size_t(cfg.depth));
    io::load_tensors(w, file);
    return w;
  }

  void save(const std::string& path) const { io::save_tensors(*this, path); }

  SsmBlockWeights block(int i) const {
    const VimConfig& c = config;
    return layers.at(std::size_t(i)).view(c.dim, c.inner(), c.state, c.dt_rank, c.conv_kernel, c.eps);
  }
};

struct VimTrace {
  std::vector<int> tokens;                     // input tokens of each layer, then the final count
  std::vector<std::vector<int>> keep_idx;      // per pruning layer: [batch, keep]
  std::vector<std::vector<int>> cls_position;  // class token position per sample after each pruning layer
};

template <class Metric = policies::L2>
class VisionMamba {
 public:
  using BlockType = Block<policies::SsmScan, policies::Block, Metric, policies::Prune, policies::PreNorm>;

  explicit VisionMamba(VimWeights weights) : VisionMamba(std::make_shared<const VimWeights>(std::move(weights))) {}
  explicit VisionMamba(std::shared_ptr<const VimWeights> weights) : weights_(std::move(weights)) {
    detail::require_pointer("VisionMamba", "weights", weights_.get());
    weights_->config.check("VisionMamba");
  }
  const VimConfig& config() const { return weights_->config; }

  // images: [batch, in_chans, image_size, image_size]; logits: [batch,
  // num_classes]. Not thread-safe: the model owns its scratch.
  void forward(const Host& host, const float* images, int batch, float* logits,
               const PruneSchedule& schedule = PruneSchedule::none(), VimTrace* trace = nullptr) {
    constexpr const char* where = "VisionMamba::forward";
    const VimConfig& cfg = weights_->config;
    detail::check_model_forward(where, images, logits, batch);
    schedule.check(where, cfg.depth);
    schedule.check_sample(where, 0, cfg.tokens(), cfg.depth);
    const std::int64_t N = cfg.tokens(), C = cfg.dim;
    detail::checked_extent(where, "activations", batch, N, 2 * std::int64_t(cfg.inner()), sizeof(float));
    ping_.resize(std::size_t(batch * N * C));
    pong_.resize(ping_.size());
    embed(host, images, batch, ping_.data());
    cls_.assign(std::size_t(batch), cfg.cls_index());
    if (trace) *trace = VimTrace{{int(N)}, {}, {}};

    int tokens = int(N);
    float* x = ping_.data();
    float* y = pong_.data();
    for (int l = 0; l < cfg.depth; ++l) {
      auto a = SsmBlockArgs::dense(x, y, batch, tokens);
      a.keep = schedule.keep_at(l, tokens);
      a.protect = schedule.protect;
      a.keep_token = cls_.data();
      a.seed = std::uint64_t(l);
      if (trace && a.keep < tokens) {
        trace->keep_idx.emplace_back(std::size_t(batch) * a.keep);
        a.keep_idx = trace->keep_idx.back().data();
      }
      BlockType::forward(host, weights_->block(l), a, ws_);
      if (trace && a.keep < tokens) trace->cls_position.push_back(cls_);
      tokens = a.keep;
      std::swap(x, y);
      if (trace) trace->tokens.push_back(tokens);
    }
    head(host, x, batch, tokens, logits);
  }

 private:
  // x[b] = patches with the class token inserted at cls_index, + pos_embed.
  void embed(const Host& host, const float* images, int batch, float* x) {
    const VimConfig& cfg = weights_->config;
    const int P = cfg.num_patches(), C = cfg.dim, cls = cfg.cls_index();
    proj_.resize(std::size_t(batch) * P * C);
    patch_embed(host, cfg.patch_shape(), images, batch, weights_->patch_w.data(), weights_->patch_b.data(), cols_,
                proj_.data());
    const std::int64_t N = cfg.tokens();
#pragma omp parallel for schedule(static) num_threads(cpu::thread_count(host))
    for (std::int64_t bn = 0; bn < std::int64_t(batch) * N; ++bn) {
      const std::int64_t b = bn / N, n = bn % N;
      const float* src = n == cls ? weights_->cls_token.data() : proj_.data() + (b * P + (n < cls ? n : n - 1)) * C;
      const float* pos = weights_->pos_embed.data() + n * C;
      float* dst = x + bn * C;
      for (int c = 0; c < C; ++c) dst[c] = src[c] + pos[c];
    }
  }

  // logits = head(RMSNorm(x[b, cls]))
  void head(const Host& host, const float* x, int batch, int tokens, float* logits) {
    const VimConfig& cfg = weights_->config;
    const int C = cfg.dim;
    pooled_.resize(std::size_t(batch) * C);
    const cpu::RmsNormWeights norm{weights_->norm_f_w.data(), cfg.eps};
    for (int b = 0; b < batch; ++b)
      cpu::rms_norm_row(x + (std::int64_t(b) * tokens + cls_[std::size_t(b)]) * C, pooled_.data() + std::int64_t(b) * C,
                        C, norm);
    cpu::linear_bias(host, pooled_.data(), batch, C, weights_->head_w.data(), weights_->head_b.data(),
                     cfg.num_classes, logits);
  }

  std::shared_ptr<const VimWeights> weights_;
  SsmWorkspace ws_;
  std::vector<float> ping_, pong_, cols_, proj_, pooled_;
  std::vector<int> cls_;
};

}  // namespace repshift
