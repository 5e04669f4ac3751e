#pragma once
// TransformerModelWeights<Exec, T, HostWeights>: a transformer model's
// tensors where Exec's kernels read them, in storage type T (TensorStore),
// and the per-block views the Block takes. HostWeights names its blocks'
// tensors (`block_prefix(i)`, then `kBlockTensors`) and its store
// (`kModelWeights`, for messages). ViT and BERT hold their weights this way.

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "../blocks/transformer_weights.hpp"
#include "tensor_store.hpp"

namespace repshift {

// One block's tensor names after its prefix, field for field as
// BasicTransformerBlockWeights points at them.
struct BlockTensorNames {
  const char *norm1_weight, *norm1_bias, *qkv_weight, *qkv_bias, *proj_weight, *proj_bias;
  const char *norm2_weight, *norm2_bias, *fc1_weight, *fc1_bias, *fc2_weight, *fc2_bias;
};

// fn(name, shape, storage) for one block's tensors (TransformerBlockTensors,
// const or not) under `prefix`: what the host weights' for_each_tensor walks.
template <class BlockTensors, class Fn>
void for_each_block_tensor(const std::string& prefix, const BlockTensorNames& n, std::int64_t dim,
                           std::int64_t mlp_hidden, BlockTensors& b, Fn& fn) {
  using Shape = std::vector<std::int64_t>;
  const std::int64_t C = dim, H = mlp_hidden;
  fn(prefix + n.norm1_weight, Shape{C}, b.norm1_w);
  fn(prefix + n.norm1_bias, Shape{C}, b.norm1_b);
  fn(prefix + n.qkv_weight, Shape{3 * C, C}, b.qkv_w);
  fn(prefix + n.qkv_bias, Shape{3 * C}, b.qkv_b);
  fn(prefix + n.proj_weight, Shape{C, C}, b.proj_w);
  fn(prefix + n.proj_bias, Shape{C}, b.proj_b);
  fn(prefix + n.norm2_weight, Shape{C}, b.norm2_w);
  fn(prefix + n.norm2_bias, Shape{C}, b.norm2_b);
  fn(prefix + n.fc1_weight, Shape{H, C}, b.fc1_w);
  fn(prefix + n.fc1_bias, Shape{H}, b.fc1_b);
  fn(prefix + n.fc2_weight, Shape{C, H}, b.fc2_w);
  fn(prefix + n.fc2_bias, Shape{C}, b.fc2_b);
}

template <class Exec, class T, class HostWeights>
class TransformerModelWeights {
 public:
  using Config = decltype(HostWeights::config);

  explicit TransformerModelWeights(std::shared_ptr<const HostWeights> host)
      : config_(detail::checked_weights(HostWeights::kModelWeights, host)->config), tensors_(host) {
    for (int i = 0; i < config_.depth; ++i) blocks_.push_back(make_block(i));
  }
  explicit TransformerModelWeights(const HostWeights& host)
      : TransformerModelWeights(std::make_shared<const HostWeights>(host)) {}
  const Config& config() const { return config_; }
  const T* operator[](const std::string& name) const { return tensors_[name]; }
  const BasicTransformerBlockWeights<T>& block(int i) const { return blocks_.at(std::size_t(i)); }

 private:
  BasicTransformerBlockWeights<T> make_block(int i) const {
    const std::string p = HostWeights::block_prefix(i);
    const BlockTensorNames& n = HostWeights::kBlockTensors;
    BasicTransformerBlockWeights<T> w;
    w.dim = config_.dim;
    w.heads = config_.heads;
    w.mlp_hidden = config_.mlp_hidden;
    w.ln_eps = config_.ln_eps;
    w.norm1_weight = tensors_[p + n.norm1_weight];
    w.norm1_bias = tensors_[p + n.norm1_bias];
    w.qkv_weight = tensors_[p + n.qkv_weight];
    w.qkv_bias = tensors_[p + n.qkv_bias];
    w.proj_weight = tensors_[p + n.proj_weight];
    w.proj_bias = tensors_[p + n.proj_bias];
    w.norm2_weight = tensors_[p + n.norm2_weight];
    w.norm2_bias = tensors_[p + n.norm2_bias];
    w.fc1_weight = tensors_[p + n.fc1_weight];
    w.fc1_bias = tensors_[p + n.fc1_bias];
    w.fc2_weight = tensors_[p + n.fc2_weight];
    w.fc2_bias = tensors_[p + n.fc2_bias];
    return w;
  }

  Config config_;
  TensorStore<Exec, T> tensors_;
  std::vector<BasicTransformerBlockWeights<T>> blocks_;
};

}  // namespace repshift
