#pragma once
// Vision Mamba (Vim) built from Block<SsmScan, Block, Importance, Prune,
// PreNorm>, one model for every executor (f32): patch embedding (im2col +
// GEMM), a class token inserted at `cls_position` (Vim puts it in the
// middle of the patch sequence), position embedding, `depth`
// bidirectional Mamba blocks pruning per a PruneSchedule with the class
// token always kept (and followed as its position moves), final RMSNorm on
// the class token, classification head. Weights are random (Mamba's init)
// or loaded from a safetensors file with Vim's tensor names
// (layers.{i}.mixer.in_proj.weight, layers.{i}.mixer.A_b_log, norm_f.weight, ...).
//
//   rs::VisionMamba<> vim(rs::VimWeights::random(rs::VimConfig::vim_tiny(), 0));   // CPU
//   vim.forward(rs::Host{}, images, 8, logits, rs::vim_schedule(0.2));
//
//   rs::cuda::Blas blas;                                    // after repshift/cuda/models.cuh
//   rs::cuda::VisionMamba<> gpu(rs::VimWeights::random(rs::VimConfig::vim_tiny(), 0), blas);
//   gpu.reserve(64);                                        // every allocation, up front
//   gpu.forward(rs::Cuda{stream}, d_images, 64, d_logits, rs::vim_schedule(0.2));

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "../blocks/ssm_block.hpp"
#include "../blocks/workspace.hpp"
#include "../io/safetensors.hpp"
#include "../params/patch_embed.hpp"
#include "../params/rms_norm.hpp"
#include "forward_args.hpp"
#include "prune_schedule.hpp"
#include "tensor_store.hpp"
#include "weights_init.hpp"

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

  void check(const char* where) const {
    detail::require_epsilon(where, "config.eps", eps);
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
    detail::require_int_size(where, "the patches (grid x grid)", {grid(), grid()});
    detail::require_int_size(where, "the patch vector (in_chans x patch_size^2)", {in_chans, patch_size, patch_size});
    detail::require_int_size(where, "the inner width (expand x dim)", {expand, dim});
    detail::require_int_size(where, "config.dt_rank", {dt_rank});
    detail::require_at_most(where, "config.state", state, "SelectiveScanParams::kMaxState",
                            SelectiveScanParams::kMaxState);
    if (cls_position < -1 || cls_position > num_patches()) {
      detail::fail(where, "config.cls_position = {} is outside [-1, num_patches = {}]", cls_position, num_patches());
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
    if (w.layers.size() != std::size_t(c.depth)) {
      detail::fail("VimWeights", "layers holds {} layers, but config.depth = {}", w.layers.size(), c.depth);
    }
    using Shape = std::vector<std::int64_t>;
    const std::int64_t C = c.dim, I = c.inner(), S = c.state, R = c.dt_rank, K = c.conv_kernel;
    fn("patch_embed.proj.weight", Shape{C, c.in_chans, c.patch_size, c.patch_size}, w.patch_w);
    fn("patch_embed.proj.bias", Shape{C}, w.patch_b);
    fn("cls_token", Shape{1, 1, C}, w.cls_token);
    fn("pos_embed", Shape{1, c.tokens(), C}, w.pos_embed);
    for (int i = 0; i < c.depth; ++i) {
      const std::string p = fmt::format("layers.{}.", i);
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
      const std::int64_t n = io::shape_numel(shape);
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
    file.require_no_layer_past("layers.", cfg.depth, "config.depth");
    VimWeights w;
    w.config = cfg;
    w.layers.resize(std::size_t(cfg.depth));
    io::load_tensors(w, file, {"layers.", "patch_embed.", "cls_token", "pos_embed", "norm_f.", "head."});
    return w;
  }

  void save(const std::string& path) const {
    detail::check_host_weights("VimWeights::save", *this);
    io::save_tensors(*this, path);
  }

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

// Every Vim tensor where Exec's kernels read it, and the per-layer views
// the Block takes. f32 only: the SsmScan path keeps the scan in f32.
template <class Exec, class T = float>
class VimModelWeights {
  static_assert(std::is_same_v<T, float>, "VimModelWeights: the SsmScan path runs in f32");

 public:
  explicit VimModelWeights(std::shared_ptr<const VimWeights> host)
      : config_(detail::checked_weights("VisionMamba", host)->config), tensors_(host) {
    for (int i = 0; i < config_.depth; ++i) layers_.push_back(make_block(i));
  }
  explicit VimModelWeights(const VimWeights& host) : VimModelWeights(std::make_shared<const VimWeights>(host)) {}
  const VimConfig& config() const { return config_; }
  const T* operator[](const std::string& name) const { return tensors_[name]; }
  const SsmBlockWeights& block(int i) const { return layers_.at(std::size_t(i)); }

 private:
  SsmBlockWeights make_block(int i) const {
    const VimConfig& c = config_;
    const std::string p = fmt::format("layers.{}.", i);
    SsmBlockWeights w;
    w.dim = c.dim;
    w.inner = c.inner();
    w.state = c.state;
    w.dt_rank = c.dt_rank;
    w.conv_kernel = c.conv_kernel;
    w.norm_eps = c.eps;
    w.norm_weight = tensors_[p + "norm.weight"];
    w.in_proj_weight = tensors_[p + "mixer.in_proj.weight"];
    w.out_proj_weight = tensors_[p + "mixer.out_proj.weight"];
    w.forward = branch(p, "");
    w.backward = branch(p, "_b");
    return w;
  }
  // One direction's tensors; an absent one (empty) is null.
  ScanBranchWeights branch(const std::string& p, const std::string& s) const {
    ScanBranchWeights b;
    b.conv_weight = tensors_[p + "mixer.conv1d" + s + ".weight"];
    b.conv_bias = tensors_[p + "mixer.conv1d" + s + ".bias"];
    b.x_proj_weight = tensors_[p + "mixer.x_proj" + s + ".weight"];
    b.dt_proj_weight = tensors_[p + "mixer.dt_proj" + s + ".weight"];
    b.dt_proj_bias = tensors_[p + "mixer.dt_proj" + s + ".bias"];
    b.A_log = tensors_[p + "mixer.A" + s + "_log"];
    b.D = tensors_[p + "mixer.D" + s];
    return b;
  }

  VimConfig config_;
  TensorStore<Exec, T> tensors_;
  std::vector<SsmBlockWeights> layers_;
};

// images: [batch, in_chans, image_size, image_size] (f32); logits: [batch,
// num_classes]; on CUDA both are device pointers. One thread at a time (a
// second is refused), and on CUDA one stream: the model owns its scratch.
// reserve(batch) allocates everything a forward of up to `batch` images
// needs; the CPU model also grows on demand, the CUDA one refuses a batch
// larger than the largest reserved.
template <class Exec, class T = float, class Importance = policies::L2>
class BasicVisionMamba {
  static_assert(std::is_same_v<T, float>, "VisionMamba: the SsmScan path runs in f32");
  using B = Backend<Exec>;
  template <class U>
  using Buffer = typename B::template Buffer<U>;

 public:
  using BlockType = Block<policies::SsmScan, policies::BlockOutput, Importance, policies::Prune, policies::PreNorm>;
  using ModelWeights = VimModelWeights<Exec, T>;
  using Context = typename B::Context;

  // Models of different importances can share one set of weights (ablations).
  explicit BasicVisionMamba(std::shared_ptr<const ModelWeights> weights, Context ctx = {})
      : weights_(std::move(weights)), ws_(ctx) {
    detail::require_pointer("VisionMamba", "weights", weights_.get());
  }
  explicit BasicVisionMamba(std::shared_ptr<const VimWeights> weights, Context ctx = {})
      : BasicVisionMamba(std::make_shared<const ModelWeights>(std::move(weights)), ctx) {}
  explicit BasicVisionMamba(VimWeights weights, Context ctx = {})
      : BasicVisionMamba(std::make_shared<const VimWeights>(std::move(weights)), ctx) {}
  const VimConfig& config() const { return weights_->config(); }

  void reserve(int batch) {
    constexpr const char* where = "VisionMamba::reserve";
    const auto entered = caller_.enter(where);
    detail::require_positive(where, "batch", batch);
    const VimConfig& cfg = config();
    const std::int64_t N = cfg.tokens(), C = cfg.dim, P = cfg.num_patches();
    detail::checked_extent(where, "activations", batch, N, 2 * std::int64_t(cfg.inner()), sizeof(T));
    detail::checked_extent(where, "patches", batch, P, std::int64_t(cfg.in_chans) * cfg.patch_size * cfg.patch_size,
                           sizeof(T));
    BlockType::reserve(ws_, weights_->block(0), std::int64_t(batch) * N);
    ping_.resize(std::size_t(batch * N * C));
    pong_.resize(std::size_t(batch * N * C));
    cols_.resize(std::size_t(batch * P * cfg.in_chans * cfg.patch_size * cfg.patch_size));
    proj_.resize(std::size_t(batch * P * C));
    pooled_.resize(std::size_t(batch * C));
    cls_.resize(std::size_t(batch));
    keep_idx_.resize(std::size_t(batch * N));
    reserved_ = std::max(reserved_, batch);  // the buffers only grow
  }

  // trace (optional): what the forward did, in host memory (on CUDA it is
  // copied back, which waits for the stream).
  void forward(const Exec& exec, const T* images, int batch, T* logits,
               const PruneSchedule& requested = PruneSchedule::none(), VimTrace* trace = nullptr) {
    constexpr const char* where = "VisionMamba::forward";
    const auto entered = caller_.enter(where);
    const VimConfig& cfg = config();
    // No prefix by default: the class token is kept wherever it sits (keep_token).
    const PruneSchedule schedule = requested.for_model(0);
    if (B::grows_on_demand && images && logits && batch > reserved_) reserve(batch);
    detail::check_model_forward(where, images, logits, batch, reserved_);
    schedule.check(where, cfg.depth);
    schedule.check_sample(where, 0, cfg.tokens(), cfg.depth);
    // A pruning layer keeps the class token besides the protected prefix;
    // a class token inside the prefix is protected already, and stays put.
    const bool cls_in_prefix = cfg.cls_index() < schedule.protect;
    const std::vector<int> counts = schedule.token_counts(cfg.tokens(), cfg.depth);
    for (int l = 0; l < cfg.depth; ++l) {
      const int keep = schedule.keep_at(l, counts[std::size_t(l)]);
      if (!cls_in_prefix && keep < counts[std::size_t(l)] && keep < schedule.protect + 1) {
        detail::fail(where,
                     "the schedule keeps {} tokens at layer {}, fewer than the class token and schedule.protect = "
                     "{} leading tokens",
                     keep, l, schedule.protect);
      }
    }
    const std::int64_t N = cfg.tokens(), C = cfg.dim;
    const ModelWeights& w = *weights_;

    // x[b] = patches with the class token inserted at cls_index, + pos_embed.
    const PatchGeometry g{cfg.image_size, cfg.patch_size, cfg.in_chans};
    B::patchify(exec, images, batch, g, cols_.data());
    B::linear(exec, ws_.context(), static_cast<const T*>(cols_.data()), std::int64_t(batch) * cfg.num_patches(),
              g.patch_dim(), w["patch_embed.proj.weight"], w["patch_embed.proj.bias"], C, proj_.data());
    B::assemble_tokens(exec, static_cast<const T*>(proj_.data()), w["cls_token"], w["pos_embed"], batch, N, C,
                       cfg.cls_index(), ping_.data());
    B::fill_ints(exec, cls_.data(), batch, cfg.cls_index());
    if (trace) *trace = VimTrace{{int(N)}, {}, {}};

    int tokens = int(N);
    T* x = ping_.data();
    T* y = pong_.data();
    for (int l = 0; l < cfg.depth; ++l) {
      auto a = SsmBlockArgs::dense(x, y, batch, tokens);
      a.keep = schedule.keep_at(l, tokens);
      a.protect = schedule.protect;
      a.keep_token = cls_in_prefix ? nullptr : cls_.data();
      a.seed = std::uint64_t(l);
      const bool pruned = a.keep < tokens;
      if (trace && pruned) a.keep_idx = keep_idx_.data();
      BlockType::forward(exec, w.block(l), a, ws_);
      if (trace && pruned) {
        trace->keep_idx.emplace_back(std::size_t(batch) * a.keep);
        B::copy_to_host(exec, keep_idx_.data(), std::int64_t(batch) * a.keep, trace->keep_idx.back().data());
        trace->cls_position.emplace_back(std::size_t(batch));
        B::copy_to_host(exec, cls_.data(), batch, trace->cls_position.back().data());
      }
      tokens = a.keep;
      std::swap(x, y);
      if (trace) trace->tokens.push_back(tokens);
    }
    // logits = head(RMSNorm(x[b, cls[b]]))
    B::rms_norm_rows(exec, static_cast<const T*>(x), pooled_.data(), batch, C,
                     RmsNormParams<T>{w["norm_f.weight"], cfg.eps}, cls_.data(), tokens);
    B::linear(exec, ws_.context(), static_cast<const T*>(pooled_.data()), batch, C, w["head.weight"], w["head.bias"],
              cfg.num_classes, logits);
  }

  // Each sample's class-token position after the last forward, in Exec's
  // memory.
  const int* cls_position() const { return cls_.data(); }

 private:
  std::shared_ptr<const ModelWeights> weights_;
  Workspace<Exec, T> ws_;
  Buffer<T> ping_, pong_, cols_, proj_, pooled_;
  Buffer<int> cls_, keep_idx_;
  int reserved_ = 0;
  detail::OneCaller caller_;
};

// The CPU model (the CUDA one: rs::cuda::VisionMamba<Importance>).
template <class Importance = policies::L2>
using VisionMamba = BasicVisionMamba<Host, float, Importance>;

}  // namespace repshift
