#pragma once
// ResNet (torchvision's v1.5 bottleneck layout) built from
// Block<CnnRows, Block, Importance, Prune, PreNorm>, one model for every
// executor, with line-wise pruning: after a stage's last block, the rows and
// columns of lowest shift are removed per sample and the rest of the network
// runs on the smaller, still dense map. Stem 7x7/2 conv + ReLU, 3x3/2 max
// pool, the bottlenecks, global average pool, fc. BatchNorm is folded into
// the convs: random weights (He init, BN the identity) or torchvision-named
// safetensors (conv1.weight, bn1.running_var, layer1.0.conv2.weight,
// layer1.0.downsample.1.weight, fc.weight, ...) folded at load.
//
//   rs::ResNet<> net(rs::ResNetWeights::random(rs::ResNetConfig::resnet50(), 0));   // CPU, f32
//   net.forward(rs::Host{}, images, 8, logits, rs::LinePruneSchedule::paper());
//
//   rs::cuda::Dnn dnn;                                  // after repshift/cuda/cudnn_models.cuh
//   rs::cuda::Blas blas;
//   rs::cuda::ResNet<> gpu(weights, {blas, dnn});
//   gpu.reserve(64);                                    // every allocation, up front
//   gpu.forward(rs::Cuda{stream}, d_images, 64, d_logits, rs::LinePruneSchedule::paper());

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "../blocks/cnn_block.hpp"
#include "../blocks/workspace.hpp"
#include "../io/safetensors.hpp"
#include "forward_args.hpp"
#include "tensor_store.hpp"

namespace repshift {

struct ResNetConfig {
  int image_size = 224, in_chans = 3, stem_channels = 64, num_classes = 1000, expansion = 4;
  std::array<int, 4> blocks{3, 4, 6, 3};        // bottlenecks per stage
  std::array<int, 4> widths{64, 128, 256, 512};  // mid channels per stage (out = expansion x)
  float bn_eps = 1e-5f;

  static ResNetConfig resnet50() { return {}; }

  int out_channels(int stage) const { return widths[std::size_t(stage)] * expansion; }
  int in_channels(int stage, int block) const {
    return block > 0 ? out_channels(stage) : (stage == 0 ? stem_channels : out_channels(stage - 1));
  }
  int stride(int stage, int block) const { return block == 0 && stage > 0 ? 2 : 1; }
  // Map size after the stem's 7x7 stride-2 conv, and entering stage 0 (after the 3x3 stride-2 max pool).
  int stem_size() const { return (image_size + 6 - 7) / 2 + 1; }
  int stage0_size() const { return (stem_size() + 2 - 3) / 2 + 1; }
  // Side of stage s's output map (unpruned).
  int stage_size(int stage) const {
    int size = stage0_size();
    for (int s = 1; s <= stage; ++s) size = (size + 2 - 3) / 2 + 1;
    return size;
  }
  // Elements of the largest map one sample holds in a forward: the stem's
  // output or a stage's (unpruned sizes bound the pruned ones).
  std::int64_t widest_map() const {
    std::int64_t widest = std::int64_t(stem_channels) * stem_size() * stem_size();
    for (int s = 0; s < 4; ++s)
      widest = std::max<std::int64_t>(widest, std::int64_t(out_channels(s)) * stage_size(s) * stage_size(s));
    return widest;
  }

  void check(const char* where) const {
    detail::require_positive(where, "config.image_size", image_size);
    detail::require_positive(where, "config.in_chans", in_chans);
    detail::require_positive(where, "config.stem_channels", stem_channels);
    detail::require_positive(where, "config.num_classes", num_classes);
    detail::require_positive(where, "config.expansion", expansion);
    for (int s = 0; s < 4; ++s) {
      detail::require_positive(where, "config.blocks[stage]", blocks[std::size_t(s)]);
      detail::require_positive(where, "config.widths[stage]", widths[std::size_t(s)]);
    }
    if (image_size < 32) detail::fail(where, "config.image_size = {} is below 32", image_size);
    // Inf allowed would fold a zero running_var into an infinite scale.
    detail::require_epsilon(where, "config.bn_eps", bn_eps);
    detail::require_int_size(where, "config.image_size", {image_size});
    detail::require_int_size(where, "the stem's map (stem_channels x stem size^2)",
                             {stem_channels, stem_size(), stem_size()});
    for (int s = 0; s < 4; ++s) {
      detail::require_int_size(where, "a stage's map (widths[stage] x expansion x its size^2)",
                               {widths[std::size_t(s)], expansion, stage_size(s), stage_size(s)});
    }
  }
};

// Rows and columns removed after a stage (1-based, as the paper counts).
struct LinePruneSchedule {
  struct Step {
    int stage, rows, cols;
  };
  std::vector<Step> steps;

  static LinePruneSchedule none() { return {}; }
  // The paper's ResNet-50 setting: 8 rows + 8 columns after stage 1
  // (56 -> 48), 4 + 4 after stage 2 (which then runs at 24 -> 20).
  static LinePruneSchedule paper() { return {{{1, 8, 8}, {2, 4, 4}}}; }

  const Step* at(int stage) const {
    for (const auto& s : steps)
      if (s.stage == stage) return &s;
    return nullptr;
  }

  void check(const char* where) const {
    for (const auto& s : steps) {
      if (s.stage < 1 || s.stage > 4 || s.rows < 0 || s.cols < 0) {
        detail::fail(where, "schedule step (stage {}, rows {}, cols {}) needs stage in [1, 4] and counts >= 0", s.stage,
                     s.rows, s.cols);
      }
      if (at(s.stage) != &s) detail::fail(where, "schedule has two steps for stage {}", s.stage);
    }
  }

  // Lines kept (per side) by the last block of `stage` (1-based), whose
  // output is out_size x out_size; out_size when the stage does not prune.
  int kept(const char* where, int stage, int out_size) const {
    const Step* step = at(stage);
    if (!step) return out_size;
    if (step->rows != step->cols) {
      detail::fail(where, "schedule step at stage {}: rows and cols must match (the model keeps square maps)", stage);
    }
    const int kept = out_size - step->rows;
    if (kept < 1) {
      detail::fail(where, "schedule removes {} of {} lines after stage {}", step->rows, out_size, stage);
    }
    return kept;
  }
};

struct ConvTensors {
  std::vector<float> weight, bias;  // bias: the folded BatchNorm
};

struct BottleneckTensors {
  ConvTensors conv1, conv2, conv3, down;  // down empty: identity shortcut
};

struct ResNetWeights {
  ResNetConfig config;
  ConvTensors stem;
  std::vector<std::vector<BottleneckTensors>> stages;
  std::vector<float> fc_w, fc_b;

  BottleneckWeights block(int stage, int i) const {
    const auto& t = stages.at(std::size_t(stage)).at(std::size_t(i));
    BottleneckWeights w;
    w.in_channels = config.in_channels(stage, i);
    w.mid_channels = config.widths[std::size_t(stage)];
    w.out_channels = config.out_channels(stage);
    w.stride = config.stride(stage, i);
    w.conv1_weight = t.conv1.weight.data();
    w.conv1_bias = t.conv1.bias.data();
    w.conv2_weight = t.conv2.weight.data();
    w.conv2_bias = t.conv2.bias.data();
    w.conv3_weight = t.conv3.weight.data();
    w.conv3_bias = t.conv3.bias.data();
    if (!t.down.weight.empty()) {
      w.down_weight = t.down.weight.data();
      w.down_bias = t.down.bias.data();
    }
    return w;
  }

  // Visits every conv as (torchvision prefix of conv and BN, out, in, k, tensors).
  template <class Self, class Fn>
  static void for_each_conv(Self& w, Fn&& fn) {
    const ResNetConfig& c = w.config;
    if (w.stages.size() != 4) detail::fail("ResNetWeights", "stages holds {} stages, not 4", w.stages.size());
    for (int s = 0; s < 4; ++s) {
      if (w.stages[std::size_t(s)].size() != std::size_t(c.blocks[std::size_t(s)])) {
        detail::fail("ResNetWeights", "stages[{}] holds {} blocks, but config.blocks[{}] = {}", s,
                     w.stages[std::size_t(s)].size(), s, c.blocks[std::size_t(s)]);
      }
    }
    fn(std::string("conv1"), std::string("bn1"), c.stem_channels, c.in_chans, 7, w.stem);
    for (int s = 0; s < 4; ++s)
      for (int i = 0; i < c.blocks[std::size_t(s)]; ++i) {
        auto& t = w.stages[std::size_t(s)][std::size_t(i)];
        const std::string p = fmt::format("layer{}.{}.", s + 1, i);
        const int mid = c.widths[std::size_t(s)], out = c.out_channels(s), in = c.in_channels(s, i);
        fn(p + "conv1", p + "bn1", mid, in, 1, t.conv1);
        fn(p + "conv2", p + "bn2", mid, mid, 3, t.conv2);
        fn(p + "conv3", p + "bn3", out, mid, 1, t.conv3);
        if (i == 0) fn(p + "downsample.0", p + "downsample.1", out, in, 1, t.down);
      }
  }

  // Every folded tensor as (name, shape, storage), for TensorStore: each
  // conv's weight, its folded-BatchNorm bias under the conv's name
  // (conv1.bias, layer1.0.downsample.0.bias: torchvision's convs have none),
  // then fc.
  template <class Fn>
  void for_each_tensor(Fn&& fn) const {
    for_each_conv(*this, [&](const std::string& conv, const std::string&, int out, int in, int k,
                             const ConvTensors& t) {
      fn(conv + ".weight", std::vector<std::int64_t>{out, in, k, k}, t.weight);
      fn(conv + ".bias", std::vector<std::int64_t>{out}, t.bias);
    });
    fn(std::string("fc.weight"), std::vector<std::int64_t>{config.num_classes, config.out_channels(3)}, fc_w);
    fn(std::string("fc.bias"), std::vector<std::int64_t>{config.num_classes}, fc_b);
  }

  // He-normal convs (fan_in); the last conv of each bottleneck scaled by
  // 0.2 so the residual stream stays O(1) without BatchNorm; biases 0.
  static ResNetWeights random(const ResNetConfig& cfg, std::uint32_t seed) {
    cfg.check("ResNetWeights::random");
    ResNetWeights w = empty(cfg);
    std::mt19937 gen(seed);
    for_each_conv(w, [&](const std::string& name, const std::string&, int out, int in, int k, ConvTensors& t) {
      const float fan_in = float(in * k * k);
      const float scale = name.find("conv3") != std::string::npos ? 0.2f : 1.0f;
      std::normal_distribution<float> normal(0.0f, scale * std::sqrt(2.0f / fan_in));
      t.weight.resize(std::size_t(out) * in * k * k);
      for (auto& x : t.weight) x = normal(gen);
      t.bias.assign(std::size_t(out), 0.0f);
    });
    std::normal_distribution<float> normal(0.0f, 0.01f);
    w.fc_w.resize(std::size_t(cfg.num_classes) * cfg.out_channels(3));
    for (auto& x : w.fc_w) x = normal(gen);
    w.fc_b.assign(std::size_t(cfg.num_classes), 0.0f);
    return w;
  }

  // torchvision names; each BN folded into its conv:
  // w' = w gamma / sqrt(var + eps), b' = beta - mean gamma / sqrt(var + eps).
  static ResNetWeights load(const ResNetConfig& cfg, const io::SafeTensorsFile& f) {
    cfg.check("ResNetWeights::load");
    for (int s = 0; s < 4; ++s) {
      f.require_no_layer_past(fmt::format("layer{}.", s + 1), cfg.blocks[std::size_t(s)],
                              fmt::format("config.blocks[{}]", s).c_str());
    }
    ResNetWeights w = empty(cfg);
    io::TensorReader reader(f);
    for_each_conv(w, [&](const std::string& conv, const std::string& bn, int out, int in, int k, ConvTensors& t) {
      t.weight = reader.load_f32(conv + ".weight", {out, in, k, k});
      const auto gamma = reader.load_f32(bn + ".weight", {out});
      const auto beta = reader.load_f32(bn + ".bias", {out});
      const auto mean = reader.load_f32(bn + ".running_mean", {out});
      const auto var = reader.load_f32(bn + ".running_var", {out});
      t.bias.resize(std::size_t(out));
      const std::size_t per_out = std::size_t(in) * k * k;
      for (int o = 0; o < out; ++o) {
        // A variance is never negative: one that is (or NaN) would fold into NaN weights.
        if (!(var[std::size_t(o)] >= 0.0f)) {
          detail::fail("ResNetWeights::load", "{}.running_var[{}] = {} must be >= 0", bn, o, var[std::size_t(o)]);
        }
        const float scale = gamma[std::size_t(o)] / std::sqrt(var[std::size_t(o)] + cfg.bn_eps);
        for (std::size_t i = 0; i < per_out; ++i) t.weight[std::size_t(o) * per_out + i] *= scale;
        t.bias[std::size_t(o)] = beta[std::size_t(o)] - mean[std::size_t(o)] * scale;
      }
    });
    w.fc_w = reader.load_f32("fc.weight", {cfg.num_classes, cfg.out_channels(3)});
    w.fc_b = reader.load_f32("fc.bias", {cfg.num_classes});
    reader.require_all_read({"conv1.", "bn1.", "layer1.", "layer2.", "layer3.", "layer4.", "fc."});
    return w;
  }

 private:
  static ResNetWeights empty(const ResNetConfig& cfg) {
    ResNetWeights w;
    w.config = cfg;
    w.stages.resize(4);
    for (int s = 0; s < 4; ++s) w.stages[std::size_t(s)].resize(std::size_t(cfg.blocks[std::size_t(s)]));
    return w;
  }
};

struct ResNetTrace {
  std::vector<int> sizes;                      // map size (square) entering each stage, then the last
  std::vector<std::vector<int>> kept_rows;     // per pruning step: [batch, rows]
  std::vector<std::vector<int>> kept_cols;     // per pruning step: [batch, cols]
};

// Every ResNet tensor where Exec's kernels read it, in storage type T, and
// the per-block views the Block takes.
template <class Exec, class T = float>
class ResNetModelWeights {
  static_assert(std::is_same_v<T, float>, "ResNet: f32 only (the CnnRows kernels run f32)");

 public:
  explicit ResNetModelWeights(std::shared_ptr<const ResNetWeights> host)
      : config_(detail::checked_weights("ResNetModelWeights", host)->config), tensors_(host) {
    for (int s = 0; s < 4; ++s) {
      blocks_.emplace_back();
      for (int i = 0; i < config_.blocks[std::size_t(s)]; ++i) blocks_.back().push_back(make_block(*host, s, i));
    }
  }
  explicit ResNetModelWeights(const ResNetWeights& host)
      : ResNetModelWeights(std::make_shared<const ResNetWeights>(host)) {}
  const ResNetConfig& config() const { return config_; }
  const T* operator[](const std::string& name) const { return tensors_[name]; }
  const BottleneckWeights& block(int stage, int i) const {
    return blocks_.at(std::size_t(stage)).at(std::size_t(i));
  }

 private:
  BottleneckWeights make_block(const ResNetWeights& host, int s, int i) const {
    const std::string p = fmt::format("layer{}.{}.", s + 1, i);
    BottleneckWeights w = host.block(s, i);  // the shapes; the pointers follow
    w.conv1_weight = tensors_[p + "conv1.weight"];
    w.conv1_bias = tensors_[p + "conv1.bias"];
    w.conv2_weight = tensors_[p + "conv2.weight"];
    w.conv2_bias = tensors_[p + "conv2.bias"];
    w.conv3_weight = tensors_[p + "conv3.weight"];
    w.conv3_bias = tensors_[p + "conv3.bias"];
    if (w.has_projection()) {
      w.down_weight = tensors_[p + "downsample.0.weight"];
      w.down_bias = tensors_[p + "downsample.0.bias"];
    }
    return w;
  }

  ResNetConfig config_;
  TensorStore<Exec, T> tensors_;
  std::vector<std::vector<BottleneckWeights>> blocks_;
};

// images: [batch, in_chans, image_size, image_size] (NCHW, f32); logits:
// [batch, num_classes]; on CUDA both are device pointers. One thread at a
// time (a second is refused), and on CUDA one stream: the model owns its
// scratch. reserve(batch) allocates everything a forward of up to
// `batch` images needs; the CPU model also grows on demand, the CUDA one
// refuses a batch larger than the largest reserved.
template <class Exec, class T = float, class Importance = policies::L2>
class BasicResNet {
  static_assert(std::is_same_v<T, float>, "ResNet: f32 only (the CnnRows kernels run f32)");
  using B = Backend<Exec>;
  using Conv = ConvOps<Exec>;
  template <class U>
  using Buffer = typename B::template Buffer<U>;

 public:
  using BlockType = Block<policies::CnnRows, policies::BlockOutput, Importance, policies::Prune, policies::PreNorm>;
  using ModelWeights = ResNetModelWeights<Exec, T>;
  using Context = typename B::Context;

  // Models of different metrics can share one set of weights.
  explicit BasicResNet(std::shared_ptr<const ModelWeights> weights, Context ctx = {})
      : weights_(std::move(weights)), ws_(ctx) {
    detail::require_pointer("ResNet", "weights", weights_.get());
  }
  explicit BasicResNet(std::shared_ptr<const ResNetWeights> weights, Context ctx = {})
      : BasicResNet(std::make_shared<const ModelWeights>(std::move(weights)), ctx) {}
  explicit BasicResNet(ResNetWeights weights, Context ctx = {})
      : BasicResNet(std::make_shared<const ResNetWeights>(std::move(weights)), ctx) {}
  const ResNetConfig& config() const { return weights_->config(); }

  // Memory order the network runs in: the fastest the executor's
  // convolutions offer (CPU: NHWC with oneDNN, NCHW without; CUDA: NCHW).
  // Input images are NCHW either way.
  static constexpr MapLayout default_layout() { return Conv::default_layout; }
  void set_layout(MapLayout layout) {
    constexpr const char* where = "ResNet::set_layout";
    const auto entered = caller_.enter(where);
    Conv::check_layout(where, layout);
    if (layout != layout_) reserved_ = 0;  // NHWC also holds the transposed images
    layout_ = layout;
  }
  MapLayout layout() const { return layout_; }

  void reserve(int batch) {
    constexpr const char* where = "ResNet::reserve";
    const auto entered = caller_.enter(where);
    detail::require_positive(where, "batch", batch);
    const ResNetConfig& cfg = config();
    const std::int64_t widest = detail::checked_extent(where, "activations", batch, cfg.widest_map(), 1, sizeof(T));
    a_.resize(std::size_t(widest));
    b_.resize(std::size_t(widest));
    if (layout_ != MapLayout::Nchw) {
      const std::int64_t pixels = std::int64_t(cfg.image_size) * cfg.image_size;
      input_.resize(std::size_t(detail::checked_extent(where, "input", batch, cfg.in_chans, pixels, sizeof(T))));
    }
    for (int s = 0; s < 4; ++s) {
      const int in_size = s == 0 ? cfg.stage0_size() : cfg.stage_size(s - 1);
      for (int i = 0; i < cfg.blocks[std::size_t(s)]; ++i) {
        const int size = i == 0 ? in_size : cfg.stage_size(s);
        BlockType::reserve(ws_, weights_->block(s, i), batch, size, size);
      }
    }
    pooled_.resize(std::size_t(batch) * cfg.out_channels(3));
    kept_rows_.resize(std::size_t(batch) * cfg.stage0_size());  // the widest map a step prunes
    kept_cols_.resize(std::size_t(batch) * cfg.stage0_size());
    reserved_ = std::max(reserved_, batch);  // the buffers only grow
  }

  // trace (optional): what the forward did, in host memory (on CUDA its
  // kept lines are copied back, which waits for the stream).
  void forward(const Exec& exec, const T* images, int batch, T* logits,
               const LinePruneSchedule& schedule = LinePruneSchedule::none(), ResNetTrace* trace = nullptr) {
    constexpr const char* where = "ResNet::forward";
    const auto entered = caller_.enter(where);
    const ResNetConfig& cfg = config();
    if (B::grows_on_demand && images && logits && batch > reserved_) reserve(batch);
    detail::check_model_forward(where, images, logits, batch, reserved_);
    schedule.check(where);
    const ModelWeights& w = *weights_;
    // Each stage's map after its last block, every step checked against the
    // map it prunes before any work (a stage's first block sets its size).
    std::array<int, 4> stage_out{};
    for (int s = 0, size = cfg.stage0_size(); s < 4; ++s) {
      const int out = int(w.block(s, 0).conv2().out_size(size));
      size = stage_out[std::size_t(s)] = schedule.kept(where, s + 1, out);
      const int last = cfg.blocks[std::size_t(s)] - 1;
      if (size < out && w.block(s, last).has_projection()) {
        detail::fail(where,
                     "the step after stage {} prunes, but that stage's last block projects its shortcut "
                     "(config.blocks[{}] = {}): the shift is measured on a block whose input and output have one "
                     "shape",
                     s + 1, s, cfg.blocks[std::size_t(s)]);
      }
    }
    auto& conv = ws_.template kept<typename Conv::State>();

    // Stem: 7x7 stride-2 conv + ReLU, 3x3 stride-2 max pool.
    const int stem_size = cfg.stem_size();
    const std::int64_t pixels = std::int64_t(cfg.image_size) * cfg.image_size;
    const T* in = B::from_nchw(exec, layout_, images, batch, cfg.in_chans, pixels, input_.data());
    Conv::template conv2d<ConvEpilogue::BiasRelu>(exec, ws_.context(), conv, layout_,
                                                  {cfg.in_chans, cfg.stem_channels, 7, 2, 3}, in, batch,
                                                  cfg.image_size, cfg.image_size, w["conv1.weight"],
                                                  w["conv1.bias"], b_.data());
    B::max_pool_3x3s2(exec, layout_, b_.data(), batch, cfg.stem_channels, stem_size, stem_size, a_.data());
    int size = cfg.stage0_size();
    if (trace) *trace = ResNetTrace{};

    T* x = a_.data();
    T* y = b_.data();
    for (int s = 0; s < 4; ++s) {
      if (trace) trace->sizes.push_back(size);
      for (int i = 0; i < cfg.blocks[std::size_t(s)]; ++i) {
        const BottleneckWeights& bw = w.block(s, i);
        const int out_size = int(bw.conv2().out_size(size));
        auto args = CnnBlockArgs::dense(x, y, batch, size, size);
        args.layout = layout_;
        const bool last = i + 1 == cfg.blocks[std::size_t(s)];
        const int kept = last ? stage_out[std::size_t(s)] : out_size;
        const bool pruned = kept < out_size;
        if (pruned) {
          args.keep_rows = args.keep_cols = kept;
          if (trace) {
            args.kept_rows = kept_rows_.data();
            args.kept_cols = kept_cols_.data();
          }
        }
        BlockType::forward(exec, bw, args, ws_);
        if (trace && pruned) record_kept(exec, *trace, std::int64_t(batch) * kept);
        size = kept;
        std::swap(x, y);
      }
    }
    if (trace) trace->sizes.push_back(size);
    const int C = cfg.out_channels(3);
    B::global_avg_pool(exec, layout_, x, batch, C, std::int64_t(size) * size, pooled_.data());
    B::linear(exec, ws_.context(), static_cast<const T*>(pooled_.data()), batch, C, w["fc.weight"], w["fc.bias"],
              cfg.num_classes, logits);
  }

 private:
  void record_kept(const Exec& exec, ResNetTrace& t, std::int64_t n) {
    t.kept_rows.emplace_back(std::size_t(n));
    t.kept_cols.emplace_back(std::size_t(n));
    B::copy_to_host(exec, kept_rows_.data(), n, t.kept_rows.back().data());
    B::copy_to_host(exec, kept_cols_.data(), n, t.kept_cols.back().data());
  }

  std::shared_ptr<const ModelWeights> weights_;
  Workspace<Exec, T> ws_;
  Buffer<T> a_, b_, pooled_;
  Buffer<T> input_;  // the images in NHWC
  Buffer<int> kept_rows_, kept_cols_;
  MapLayout layout_ = default_layout();
  int reserved_ = 0;
  detail::OneCaller caller_;
};

// The CPU model, f32 (the CUDA one: rs::cuda::ResNet<Importance>, cuda/cudnn_models.cuh).
template <class Importance = policies::L2>
using ResNet = BasicResNet<Host, float, Importance>;

}  // namespace repshift
