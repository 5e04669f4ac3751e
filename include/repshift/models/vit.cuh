#pragma once
// ViT / DeiT on the GPU: the CPU model's stages (models/vit.hpp) with
// device kernels — patch im2col + cuBLASLt GEMM, CLS + position embedding,
// Block<Transformer, Site, Metric, Compress, PreNorm>::forward(Cuda) per
// layer with the same PruneSchedule, LayerNorm of the CLS rows, head GEMM.
// Weights are the CPU model's ViTWeights converted once to the storage
// type T (float, __half, __nv_bfloat16). reserve(batch) allocates every
// buffer; forward() then only enqueues kernels on exec.stream.
//
//   rs::cuda::Blas blas;
//   rs::cuda::VisionTransformer<__half> deit(rs::ViTWeights::random(rs::ViTConfig::deit_small(), 0), blas);
//   deit.reserve(64);
//   deit.forward(rs::Cuda{stream}, d_images, 64, d_logits, rs::PruneSchedule::paper());

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "../blocks/transformer_block.cuh"
#include "../cuda/device_buffer.cuh"
#include "../cuda/patch_embed.cuh"
#include "forward_args.hpp"
#include "vit.hpp"

namespace repshift {
namespace cuda {

// Every ViT tensor on the device in storage type T, by its timm name, and
// the per-block views the Block takes.
template <class T>
class ViTDeviceWeights {
 public:
  explicit ViTDeviceWeights(const ViTWeights& host) : config_(host.config), tensors_(host) {
    for (int i = 0; i < config_.depth; ++i) blocks_.push_back(make_block(i));
  }
  const ViTConfig& config() const { return config_; }
  const T* operator[](const std::string& name) const { return tensors_[name]; }
  const BasicTransformerBlockWeights<T>& block(int i) const { return blocks_.at(std::size_t(i)); }

 private:
  BasicTransformerBlockWeights<T> make_block(int i) const {
    const std::string p = "blocks." + std::to_string(i) + ".";
    BasicTransformerBlockWeights<T> w;
    w.dim = config_.dim;
    w.heads = config_.heads;
    w.mlp_hidden = config_.mlp_hidden;
    w.ln_eps = config_.ln_eps;
    w.norm1_weight = tensors_[p + "norm1.weight"];
    w.norm1_bias = tensors_[p + "norm1.bias"];
    w.qkv_weight = tensors_[p + "attn.qkv.weight"];
    w.qkv_bias = tensors_[p + "attn.qkv.bias"];
    w.proj_weight = tensors_[p + "attn.proj.weight"];
    w.proj_bias = tensors_[p + "attn.proj.bias"];
    w.norm2_weight = tensors_[p + "norm2.weight"];
    w.norm2_bias = tensors_[p + "norm2.bias"];
    w.fc1_weight = tensors_[p + "mlp.fc1.weight"];
    w.fc1_bias = tensors_[p + "mlp.fc1.bias"];
    w.fc2_weight = tensors_[p + "mlp.fc2.weight"];
    w.fc2_bias = tensors_[p + "mlp.fc2.bias"];
    return w;
  }

  ViTConfig config_;
  DeviceTensorMap<T> tensors_;
  std::vector<BasicTransformerBlockWeights<T>> blocks_;
};

template <class T, class Site = policies::Mlp, class Metric = policies::L2, class Compress = policies::Prune>
class VisionTransformer {
 public:
  using BlockType = Block<policies::Transformer, Site, Metric, Compress, policies::PreNorm>;

  VisionTransformer(const ViTWeights& weights, Blas& blas)
      : VisionTransformer(std::make_shared<const ViTDeviceWeights<T>>(weights), blas) {}
  // Models of different policies can share one set of device weights.
  VisionTransformer(std::shared_ptr<const ViTDeviceWeights<T>> weights, Blas& blas)
      : weights_(std::move(weights)), ws_(blas) {
    detail::require_pointer("cuda::VisionTransformer", "weights", weights_.get());
    weights_->config().check("cuda::VisionTransformer");
  }
  const ViTConfig& config() const { return weights_->config(); }

  // Allocates everything a forward of up to `batch` images needs.
  void reserve(int batch) {
    detail::require_positive("cuda::VisionTransformer::reserve", "batch", batch);
    const ViTConfig& cfg = config();
    const std::int64_t N = cfg.tokens(), C = cfg.dim, P = cfg.num_patches();
    ws_.reserve(batch, N, C, cfg.mlp_hidden, cfg.heads, policies::needs_attention_map_v<Metric>);
    ping_.resize(std::size_t(batch * N * C));
    pong_.resize(std::size_t(batch * N * C));
    cols_.resize(std::size_t(batch * P * cfg.patch_dim()));
    proj_.resize(std::size_t(batch * P * C));
    cls_.resize(std::size_t(batch * C));
    if constexpr (BlockType::kMerge) {
      sizes_in_.resize(std::size_t(batch * N));
      sizes_out_.resize(std::size_t(batch * N));
    }
    reserved_ = batch;
  }

  // images: device [batch, in_chans, image_size, image_size] (NCHW, T);
  // logits: device [batch, num_classes] (T).
  void forward(const Cuda& exec, const T* images, int batch, T* logits,
               const PruneSchedule& schedule = PruneSchedule::none()) {
    constexpr const char* where = "cuda::VisionTransformer::forward";
    const ViTConfig& cfg = config();
    detail::check_model_forward(where, images, logits, batch, reserved_);
    schedule.check(where, cfg.depth);
    schedule.check_sample(where, 0, cfg.tokens(), cfg.depth);
    detail::require_at_most(where, "schedule.protect", schedule.protect, "tokens", cfg.tokens());
    const std::int64_t N = cfg.tokens(), C = cfg.dim;
    const ViTDeviceWeights<T>& w = *weights_;
    Blas& blas = ws_.blas();

    const cuda_detail::PatchGeometry g{cfg.image_size, cfg.patch_size, cfg.in_chans};
    cuda_detail::patchify(exec, images, batch, g, cols_.data());
    cuda_detail::dense(exec, blas, static_cast<const T*>(cols_.data()), std::int64_t(batch) * cfg.num_patches(),
                       cfg.patch_dim(), w["patch_embed.proj.weight"], w["patch_embed.proj.bias"], C, proj_.data());
    cuda_detail::assemble_tokens(exec, static_cast<const T*>(proj_.data()), w["cls_token"], w["pos_embed"], batch, N,
                                 C, 0, ping_.data());

    int tokens = int(N);
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
      BlockType::forward(exec, w.block(l), a, ws_);
      if (a.kept_sizes) {
        std::swap(sizes_in, sizes_out);
        sizes = sizes_in;
      }
      tokens = BlockType::output_tokens(tokens, a.keep);
      std::swap(x, y);
    }
    // logits = head(LN(x[:, 0]))
    cuda_detail::layer_norm_rows(exec, static_cast<const T*>(x), std::int64_t(tokens) * C, cls_.data(), C, batch, C,
                                 cuda_detail::norm_params(w["norm.weight"], w["norm.bias"], cfg.ln_eps));
    cuda_detail::dense(exec, blas, static_cast<const T*>(cls_.data()), batch, C, w["head.weight"], w["head.bias"],
                       cfg.num_classes, logits);
  }

 private:
  std::shared_ptr<const ViTDeviceWeights<T>> weights_;
  TransformerWorkspace<T> ws_;
  DeviceBuffer<T> ping_, pong_, cols_, proj_, cls_;
  DeviceBuffer<float> sizes_in_, sizes_out_;
  int reserved_ = 0;
};

}  // namespace cuda
}  // namespace repshift
