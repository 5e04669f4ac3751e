#pragma once
// ResNet-50 on the GPU with line-wise pruning: the CPU model's stages
// (models/resnet.hpp) with cuDNN convolutions, f32 NCHW — stem 7x7/2 conv
// + ReLU, 3x3/2 max pool, the bottleneck Blocks<CnnRows> with the same
// LinePruneSchedule (rows and columns removed after the last block of a
// stage), global average pool, fc GEMM. reserve(batch) allocates every
// buffer; forward() only enqueues.
//
//   rs::cuda::Dnn dnn;
//   rs::cuda::Blas blas;
//   rs::cuda::ResNet<> net(rs::ResNetWeights::random(rs::ResNetConfig::resnet50(), 0), dnn, blas);
//   net.reserve(64);
//   net.forward(rs::Cuda{stream}, d_images, 64, d_logits, rs::LinePruneSchedule::paper());

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "../blocks/cnn_block.cuh"
#include "../cuda/blas.cuh"
#include "../cuda/device_buffer.cuh"
#include "forward_args.hpp"
#include "resnet.hpp"

namespace repshift {
namespace cuda {

// The folded (conv + BatchNorm) weights on the device, and the per-block views.
class ResNetDeviceWeights {
 public:
  explicit ResNetDeviceWeights(const ResNetWeights& host) : config_(host.config) {
    stem_ = upload(host.stem);
    for (int s = 0; s < 4; ++s) {
      for (int i = 0; i < config_.blocks[std::size_t(s)]; ++i) {
        const BottleneckTensors& t = host.stages.at(std::size_t(s)).at(std::size_t(i));
        BottleneckWeights w = host.block(s, i);  // shapes; pointers replaced below
        w.conv1_weight = upload(t.conv1.weight), w.conv1_bias = upload(t.conv1.bias);
        w.conv2_weight = upload(t.conv2.weight), w.conv2_bias = upload(t.conv2.bias);
        w.conv3_weight = upload(t.conv3.weight), w.conv3_bias = upload(t.conv3.bias);
        if (w.has_projection()) w.down_weight = upload(t.down.weight), w.down_bias = upload(t.down.bias);
        blocks_.push_back(w);
      }
    }
    stem_bias_ = upload(host.stem.bias);
    fc_w_ = upload(host.fc_w);
    fc_b_ = upload(host.fc_b);
  }
  const ResNetConfig& config() const { return config_; }
  const BottleneckWeights& block(int stage, int i) const {
    int index = i;
    for (int s = 0; s < stage; ++s) index += config_.blocks[std::size_t(s)];
    return blocks_.at(std::size_t(index));
  }
  const float* stem_weight() const { return stem_; }
  const float* stem_bias() const { return stem_bias_; }
  const float* fc_weight() const { return fc_w_; }
  const float* fc_bias() const { return fc_b_; }

 private:
  const float* upload(const std::vector<float>& v) {
    buffers_.emplace_back();
    buffers_.back().upload(v);
    return buffers_.back().data();
  }
  const float* upload(const ConvTensors& t) { return upload(t.weight); }

  ResNetConfig config_;
  std::vector<DeviceBuffer<float>> buffers_;
  std::vector<BottleneckWeights> blocks_;
  const float *stem_ = nullptr, *stem_bias_ = nullptr, *fc_w_ = nullptr, *fc_b_ = nullptr;
};

template <class Metric = policies::L2>
class ResNet {
 public:
  using BlockType = Block<policies::CnnRows, policies::Block, Metric, policies::Prune, policies::PreNorm>;

  ResNet(const ResNetWeights& weights, Dnn& dnn, Blas& blas)
      : ResNet(std::make_shared<const ResNetDeviceWeights>(weights), dnn, blas) {}
  ResNet(std::shared_ptr<const ResNetDeviceWeights> weights, Dnn& dnn, Blas& blas)
      : weights_(std::move(weights)), ws_(dnn), blas_(&blas) {
    detail::require_pointer("cuda::ResNet", "weights", weights_.get());
    weights_->config().check("cuda::ResNet");
  }
  const ResNetConfig& config() const { return weights_->config(); }

  void reserve(int batch) {
    constexpr const char* where = "cuda::ResNet::reserve";
    detail::require_positive(where, "batch", batch);
    const ResNetConfig& cfg = config();
    const std::int64_t widest = detail::checked_extent(where, "activations", batch, cfg.widest_map(), 1, sizeof(float));
    a_.resize(std::size_t(widest));
    b_.resize(std::size_t(widest));
    for (int s = 0; s < 4; ++s) {
      const int in_size = s == 0 ? cfg.stage0_size() : cfg.stage_size(s - 1);
      for (int i = 0; i < cfg.blocks[std::size_t(s)]; ++i) {
        const int size = i == 0 ? in_size : cfg.stage_size(s);
        ws_.reserve(batch, size, size, weights_->block(s, i));
      }
    }
    pooled_.resize(std::size_t(batch) * cfg.out_channels(3));
    reserved_ = batch;
  }

  // images: device [batch, in_chans, image_size, image_size] (f32);
  // logits: device [batch, num_classes].
  void forward(const Cuda& exec, const float* images, int batch, float* logits,
               const LinePruneSchedule& schedule = LinePruneSchedule::none()) {
    constexpr const char* where = "cuda::ResNet::forward";
    const ResNetConfig& cfg = config();
    detail::check_model_forward(where, images, logits, batch, reserved_);
    schedule.check(where);
    const ResNetDeviceWeights& w = *weights_;
    ws_.dnn().conv2d<ConvEpilogue::BiasRelu>(exec, {cfg.in_chans, cfg.stem_channels, 7, 2, 3}, images, batch,
                                             cfg.image_size, cfg.image_size, w.stem_weight(), w.stem_bias(), b_.data());
    cuda_detail::max_pool_3x3s2(exec, static_cast<const float*>(b_.data()), std::int64_t(batch) * cfg.stem_channels,
                                cfg.stem_size(), cfg.stem_size(), a_.data());
    int size = cfg.stage0_size();
    float* x = a_.data();
    float* y = b_.data();
    for (int s = 0; s < 4; ++s) {
      for (int i = 0; i < cfg.blocks[std::size_t(s)]; ++i) {
        const BottleneckWeights& bw = w.block(s, i);
        const int out_size = int(bw.conv2().out_size(size));
        auto args = CnnBlockArgs::dense(x, y, batch, size, size);
        const bool last = i + 1 == cfg.blocks[std::size_t(s)];
        const int kept = last ? schedule.kept(where, s + 1, out_size) : out_size;
        if (kept < out_size) args.keep_rows = args.keep_cols = kept;
        BlockType::forward(exec, bw, args, ws_);
        size = kept;
        std::swap(x, y);
      }
    }
    const int C = cfg.out_channels(3);
    cuda_detail::global_avg_pool(exec, static_cast<const float*>(x), std::int64_t(batch) * C, std::int64_t(size) * size,
                                 pooled_.data());
    cuda_detail::dense(exec, *blas_, static_cast<const float*>(pooled_.data()), batch, C, w.fc_weight(), w.fc_bias(),
                       cfg.num_classes, logits);
  }

 private:
  std::shared_ptr<const ResNetDeviceWeights> weights_;
  CnnWorkspace ws_;
  Blas* blas_;
  DeviceBuffer<float> a_, b_, pooled_;
  int reserved_ = 0;
};

}  // namespace cuda
}  // namespace repshift
