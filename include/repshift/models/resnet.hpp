#pragma once
// ResNet (torchvision's v1.5 bottleneck layout) built from
// Block<CnnRows, Block, Metric, Prune, PreNorm>, with line-wise pruning: after
// a stage's last block, the rows and columns of lowest shift are removed
// per sample and the rest of the network runs on the smaller, still dense
// map. BatchNorm is folded into the convs: random weights (He init, BN the
// identity) or torchvision-named safetensors (conv1.weight, bn1.running_var,
// layer1.0.conv2.weight, layer1.0.downsample.1.weight, fc.weight, ...)
// folded at load.

#include <array>
#include <cmath>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "../blocks/cnn_block.hpp"
#include "../cpu/gemm.hpp"
#include "../io/safetensors.hpp"
#include "forward_args.hpp"

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
    if (image_size < 32) detail::fail(where, "config.image_size = " + std::to_string(image_size) + " is below 32");
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
        detail::fail(where, "schedule step (stage " + std::to_string(s.stage) + ", rows " + std::to_string(s.rows) +
                                ", cols " + std::to_string(s.cols) + ") needs stage in [1, 4] and counts >= 0");
      }
    }
  }

  // Lines kept (per side) by the last block of `stage` (1-based), whose
  // output is out_size x out_size; out_size when the stage does not prune.
  int kept(const char* where, int stage, int out_size) const {
    const Step* step = at(stage);
    if (!step) return out_size;
    if (step->rows != step->cols) {
      detail::fail(where, "schedule step at stage " + std::to_string(stage) +
                              ": rows and cols must match (the model keeps square maps)");
    }
    const int kept = out_size - step->rows;
    if (kept < 1) {
      detail::fail(where, "schedule removes " + std::to_string(step->rows) + " of " + std::to_string(out_size) +
                              " lines after stage " + std::to_string(stage));
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
    fn(std::string("conv1"), std::string("bn1"), c.stem_channels, c.in_chans, 7, w.stem);
    for (int s = 0; s < 4; ++s)
      for (int i = 0; i < c.blocks[std::size_t(s)]; ++i) {
        auto& t = w.stages[std::size_t(s)][std::size_t(i)];
        const std::string p = "layer" + std::to_string(s + 1) + "." + std::to_string(i) + ".";
        const int mid = c.widths[std::size_t(s)], out = c.out_channels(s), in = c.in_channels(s, i);
        fn(p + "conv1", p + "bn1", mid, in, 1, t.conv1);
        fn(p + "conv2", p + "bn2", mid, mid, 3, t.conv2);
        fn(p + "conv3", p + "bn3", out, mid, 1, t.conv3);
        if (i == 0) fn(p + "downsample.0", p + "downsample.1", out, in, 1, t.down);
      }
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
    ResNetWeights w = empty(cfg);
    for_each_conv(w, [&](const std::string& conv, const std::string& bn, int out, int in, int k, ConvTensors& t) {
      t.weight = f.load_f32(conv + ".weight", {out, in, k, k});
      const auto gamma = f.load_f32(bn + ".weight", {out});
      const auto beta = f.load_f32(bn + ".bias", {out});
      const auto mean = f.load_f32(bn + ".running_mean", {out});
      const auto var = f.load_f32(bn + ".running_var", {out});
      t.bias.resize(std::size_t(out));
      const std::size_t per_out = std::size_t(in) * k * k;
      for (int o = 0; o < out; ++o) {
        const float scale = gamma[std::size_t(o)] / std::sqrt(var[std::size_t(o)] + cfg.bn_eps);
        for (std::size_t i = 0; i < per_out; ++i) t.weight[std::size_t(o) * per_out + i] *= scale;
        t.bias[std::size_t(o)] = beta[std::size_t(o)] - mean[std::size_t(o)] * scale;
      }
    });
    w.fc_w = f.load_f32("fc.weight", {cfg.num_classes, cfg.out_channels(3)});
    w.fc_b = f.load_f32("fc.bias", {cfg.num_classes});
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

template <class Metric = policies::L2>
class ResNet {
 public:
  using BlockType = Block<policies::CnnRows, policies::Block, Metric, policies::Prune, policies::PreNorm>;

  explicit ResNet(ResNetWeights weights) : ResNet(std::make_shared<const ResNetWeights>(std::move(weights))) {}
  explicit ResNet(std::shared_ptr<const ResNetWeights> weights) : weights_(std::move(weights)) {
    detail::require_pointer("ResNet", "weights", weights_.get());
    weights_->config.check("ResNet");
  }
  const ResNetConfig& config() const { return weights_->config; }

  // Memory order the network runs in: NHWC (oneDNN convolutions) where the
  // build has oneDNN, NCHW (im2col + BLAS) otherwise. Input images are NCHW
  // either way. NHWC without oneDNN is refused.
  static constexpr MapLayout default_layout() {
#if defined(REPSHIFT_HAS_ONEDNN)
    return MapLayout::Nhwc;
#else
    return MapLayout::Nchw;
#endif
  }
  void set_layout(MapLayout layout) {
    if (layout == MapLayout::Nhwc && default_layout() != MapLayout::Nhwc) {
      detail::fail("ResNet::set_layout", "layout = NHWC needs oneDNN: this build has no libdnnl-dev");
    }
    layout_ = layout;
  }
  MapLayout layout() const { return layout_; }

  // images: [batch, in_chans, image_size, image_size]; logits: [batch, num_classes].
  void forward(const Host& host, const float* images, int batch, float* logits,
               const LinePruneSchedule& schedule = LinePruneSchedule::none(), ResNetTrace* trace = nullptr) {
    constexpr const char* where = "ResNet::forward";
    const ResNetConfig& cfg = weights_->config;
    detail::check_model_forward(where, images, logits, batch);
    schedule.check(where);
    // Both ping-pong buffers hold the largest map.
    const int stem_size = cfg.stem_size();
    const std::int64_t widest = cfg.widest_map();
    detail::checked_extent(where, "activations", batch, widest, 1, sizeof(float));
    CnnWorkspace::grow(a_, batch * widest);
    CnnWorkspace::grow(b_, batch * widest);

    // Stem: 7x7 stride-2 conv + ReLU, 3x3 stride-2 max pool.
    const bool nhwc = layout_ == MapLayout::Nhwc;
    const Conv2dShape stem{cfg.in_chans, cfg.stem_channels, 7, 2, 3};
    if (nhwc) {
#if defined(REPSHIFT_HAS_ONEDNN)
      const std::int64_t pixels = std::int64_t(cfg.image_size) * cfg.image_size;
      CnnWorkspace::grow(input_, batch * cfg.in_chans * pixels);
      cpu::nchw_to_nhwc(host, images, batch, cfg.in_chans, pixels, input_.data());
      ws_.onednn().conv2d_nhwc<ConvEpilogue::BiasRelu>(stem, input_.data(), batch, cfg.image_size, cfg.image_size,
                                                       weights_->stem.weight.data(), weights_->stem.bias.data(),
                                                       b_.data());
      cpu::max_pool_3x3s2_nhwc(host, b_.data(), batch, stem_size, stem_size, cfg.stem_channels, a_.data());
#endif
    } else {
      cpu::conv2d<ConvEpilogue::BiasRelu>(host, stem, images, batch, cfg.image_size, cfg.image_size,
                                          weights_->stem.weight.data(), weights_->stem.bias.data(), b_.data(),
                                          ws_.im2col);
      cpu::max_pool_3x3s2(host, b_.data(), std::int64_t(batch) * cfg.stem_channels, stem_size, stem_size, a_.data());
    }
    int size = cfg.stage0_size();
    if (trace) *trace = ResNetTrace{};

    float* x = a_.data();
    float* y = b_.data();
    for (int s = 0; s < 4; ++s) {
      if (trace) trace->sizes.push_back(size);
      for (int i = 0; i < cfg.blocks[std::size_t(s)]; ++i) {
        const BottleneckWeights w = weights_->block(s, i);
        const int out_size = int(w.conv2().out_size(size));
        auto args = CnnBlockArgs::dense(x, y, batch, size, size);
        args.layout = layout_;
        const bool last = i + 1 == cfg.blocks[std::size_t(s)];
        const int kept = last ? schedule.kept(where, s + 1, out_size) : out_size;
        if (kept < out_size) {
          args.keep_rows = args.keep_cols = kept;
          if (trace) {
            trace->kept_rows.emplace_back(std::size_t(batch) * kept);
            trace->kept_cols.emplace_back(std::size_t(batch) * kept);
            args.kept_rows = trace->kept_rows.back().data();
            args.kept_cols = trace->kept_cols.back().data();
          }
        }
        BlockType::forward(host, w, args, ws_);
        size = kept;
        std::swap(x, y);
      }
    }
    if (trace) trace->sizes.push_back(size);
    const int C = cfg.out_channels(3);
    pooled_.resize(std::size_t(batch) * C);
    if (nhwc) {
      cpu::global_avg_pool_nhwc(host, x, batch, std::int64_t(size) * size, C, pooled_.data());
    } else {
      cpu::global_avg_pool(host, x, std::int64_t(batch) * C, std::int64_t(size) * size, pooled_.data());
    }
    cpu::linear_bias(host, pooled_.data(), batch, C, weights_->fc_w.data(), weights_->fc_b.data(), cfg.num_classes,
                     logits);
  }

 private:
  std::shared_ptr<const ResNetWeights> weights_;
  CnnWorkspace ws_;
  std::vector<float> a_, b_, pooled_;
  std::vector<float> input_;  // the images in NHWC
  MapLayout layout_ = default_layout();
};

}  // namespace repshift
