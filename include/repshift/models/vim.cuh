#pragma once
// Vision Mamba on the GPU: the CPU model's stages (models/vim.hpp) with
// device kernels, f32 — patch im2col + cuBLASLt GEMM, the class token
// inserted at its position (Vim: the middle), Block<SsmScan>::forward(Cuda)
// per layer with the same PruneSchedule, the class token followed through
// pruning on the device, RMSNorm of each sample's class token, head GEMM.
// reserve(batch) allocates every buffer; forward() only enqueues.
//
//   rs::cuda::Blas blas;
//   rs::cuda::VisionMamba<> vim(rs::VimWeights::random(rs::VimConfig::vim_tiny(), 0), blas);
//   vim.reserve(64);
//   vim.forward(rs::Cuda{stream}, d_images, 64, d_logits, rs::vim_schedule(0.8));

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "../blocks/ssm_block.cuh"
#include "../cuda/device_buffer.cuh"
#include "../cuda/patch_embed.cuh"
#include "forward_args.hpp"
#include "vim.hpp"

namespace repshift {
namespace cuda {

// Every Vim tensor on the device by its name, and the per-layer views.
class VimDeviceWeights {
 public:
  explicit VimDeviceWeights(const VimWeights& host) : config_(host.config), tensors_(host) {
    const VimConfig& c = config_;
    for (int i = 0; i < c.depth; ++i) {
      const std::string p = "layers." + std::to_string(i) + ".";
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
      layers_.push_back(w);
    }
  }
  const VimConfig& config() const { return config_; }
  const float* operator[](const std::string& name) const { return tensors_[name]; }
  const SsmBlockWeights& block(int i) const { return layers_.at(std::size_t(i)); }

 private:
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
  DeviceTensorMap<float> tensors_;
  std::vector<SsmBlockWeights> layers_;
};

template <class Metric = policies::L2>
class VisionMamba {
 public:
  using BlockType = Block<policies::SsmScan, policies::Block, Metric, policies::Prune, policies::PreNorm>;

  VisionMamba(const VimWeights& weights, Blas& blas)
      : VisionMamba(std::make_shared<const VimDeviceWeights>(weights), blas) {}
  VisionMamba(std::shared_ptr<const VimDeviceWeights> weights, Blas& blas) : weights_(std::move(weights)), ws_(blas) {
    detail::require_pointer("cuda::VisionMamba", "weights", weights_.get());
    weights_->config().check("cuda::VisionMamba");
  }
  const VimConfig& config() const { return weights_->config(); }

  void reserve(int batch) {
    detail::require_positive("cuda::VisionMamba::reserve", "batch", batch);
    const VimConfig& cfg = config();
    const std::int64_t N = cfg.tokens(), C = cfg.dim, P = cfg.num_patches();
    ws_.reserve(std::int64_t(batch) * N, weights_->block(0));
    ping_.resize(std::size_t(batch * N * C));
    pong_.resize(std::size_t(batch * N * C));
    cols_.resize(std::size_t(batch * P * cfg.in_chans * cfg.patch_size * cfg.patch_size));
    proj_.resize(std::size_t(batch * P * C));
    pooled_.resize(std::size_t(batch * C));
    cls_.resize(std::size_t(batch));
    reserved_ = batch;
  }

  // images: device [batch, in_chans, image_size, image_size] (f32);
  // logits: device [batch, num_classes]. cls_position(), after a forward,
  // is the device array of each sample's class-token position.
  void forward(const Cuda& exec, const float* images, int batch, float* logits,
               const PruneSchedule& schedule = PruneSchedule::none()) {
    constexpr const char* where = "cuda::VisionMamba::forward";
    const VimConfig& cfg = config();
    detail::check_model_forward(where, images, logits, batch, reserved_);
    schedule.check(where, cfg.depth);
    schedule.check_sample(where, 0, cfg.tokens(), cfg.depth);
    const std::int64_t N = cfg.tokens(), C = cfg.dim;
    const VimDeviceWeights& w = *weights_;
    Blas& blas = ws_.blas();

    const cuda_detail::PatchGeometry g{cfg.image_size, cfg.patch_size, cfg.in_chans};
    cuda_detail::patchify(exec, images, batch, g, cols_.data());
    cuda_detail::dense(exec, blas, static_cast<const float*>(cols_.data()), std::int64_t(batch) * cfg.num_patches(),
                       g.patch_dim(), w["patch_embed.proj.weight"], w["patch_embed.proj.bias"], C, proj_.data());
    cuda_detail::assemble_tokens(exec, static_cast<const float*>(proj_.data()), w["cls_token"], w["pos_embed"], batch,
                                 N, C, cfg.cls_index(), ping_.data());
    cuda_detail::fill_ints(exec, cls_.data(), batch, cfg.cls_index());

    int tokens = int(N);
    float* x = ping_.data();
    float* y = pong_.data();
    for (int l = 0; l < cfg.depth; ++l) {
      auto a = SsmBlockArgs::dense(x, y, batch, tokens);
      a.keep = schedule.keep_at(l, tokens);
      a.protect = schedule.protect;
      a.keep_token = cls_.data();
      a.seed = std::uint64_t(l);
      BlockType::forward(exec, w.block(l), a, ws_);
      tokens = a.keep;
      std::swap(x, y);
    }
    // logits = head(RMSNorm(x[b, cls[b]]))
    cuda_detail::rms_norm_rows(exec, static_cast<const float*>(x), pooled_.data(), batch, C, w["norm_f.weight"], cfg.eps,
                               static_cast<const int*>(cls_.data()), tokens);
    cuda_detail::dense(exec, blas, static_cast<const float*>(pooled_.data()), batch, C, w["head.weight"], w["head.bias"],
                       cfg.num_classes, logits);
  }

  const int* cls_position() const { return cls_.data(); }

 private:
  std::shared_ptr<const VimDeviceWeights> weights_;
  SsmWorkspace ws_;
  DeviceBuffer<float> ping_, pong_, cols_, proj_, pooled_;
  DeviceBuffer<int> cls_;
  int reserved_ = 0;
};

}  // namespace cuda
}  // namespace repshift
