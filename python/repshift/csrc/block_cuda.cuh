#pragma once
// The fused transformer block on CUDA tensors (declared in block_cuda.hpp),
// one storage type T per translation unit (block_cuda_{f32,f16,bf16}.cu
// instantiate it, so the three compile in parallel): the library's Block<Transformer, ...>::forward
// with rs::Cuda on torch's current stream. Each (device, stream) of a
// thread keeps one cuBLASLt handle and one workspace, reserved up front and
// grown only when a larger batch arrives: one Blas per concurrent stream,
// as the library requires (docs/cuda.md).

#include <ATen/cuda/CUDAContext.h>

#include <map>
#include <memory>
#include <tuple>
#include <utility>

#include <repshift/cuda.hpp>
#include <repshift/cuda/blas.cuh>

#include "block_cuda.hpp"
#include "op_support.hpp"

namespace repshift_ops {

template <class T>
struct CudaBlockContext {
  rs::cuda::Blas blas;
  rs::Workspace<rs::Cuda, T> workspace{blas};
};

template <class T>
CudaBlockContext<T>& cuda_block_context(int device, cudaStream_t stream) {
  thread_local std::map<std::pair<int, cudaStream_t>, std::unique_ptr<CudaBlockContext<T>>> contexts;
  auto& held = contexts[{device, stream}];
  if (!held) held = std::make_unique<CudaBlockContext<T>>();
  return *held;
}

template <class T>
BlockOutputs cuda_block_forward(const at::Tensor& x, const BlockTensors& w, int64_t heads, double eps,
                                c10::string_view site, c10::string_view importance, c10::string_view compress,
                                int64_t keep, int64_t protect, bool post_norm, int64_t seed, const at::Tensor& sizes,
                                bool first_token_only) {
  constexpr const char* op = "block_forward";
  const int64_t B = x.size(0), N = x.size(1), C = x.size(2);
  const auto weights = block_weights<T>(w.t, C, heads, eps, op);
  const auto f32 = x.options().dtype(at::kFloat);
  at::Tensor scores = at::empty({B, first_token_only ? 0 : N}, f32);
  at::Tensor keep_idx = at::empty({B, keep}, x.options().dtype(at::kInt));
  at::Tensor out, kept_sizes = at::empty({0}, f32);
  at::Tensor status;  // allocated only where the device must report: Merge's sizes
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream().stream();
  rs::Cuda exec{stream};
  auto& context = cuda_block_context<T>(int(x.device().index()), stream);
  refusing([&] {
    with_block(site, importance, compress, post_norm, [&](auto block) {
      using Block = decltype(block);
      out = at::empty({B, first_token_only ? 1 : Block::output_tokens(int(N), int(keep)), C}, x.options());
      auto a = dense_block_args<T>(x, out, keep, protect, seed, scores, keep_idx, first_token_only);
      if constexpr (Block::kMerge) {
        if (sizes.defined()) {
          a.sizes = sizes.data_ptr<float>();
          status = at::zeros({4}, x.options().dtype(at::kInt));  // only the device sees a bad size
          exec.status = status.data_ptr<int>();
        }
        if (keep < N) {
          kept_sizes = at::empty({B, keep}, f32);
          a.kept_sizes = kept_sizes.data_ptr<float>();
        }
      } else {
        TORCH_CHECK_VALUE(!sizes.defined(), "repshift::block_forward: sizes belong to compress = 'merge'");
      }
      Block::reserve(context.workspace, weights, B, N);
      Block::forward(exec, weights, a, context.workspace);
    });
    rs::cuda::throw_if_status(exec);  // synchronises only when status is set
    return 0;
  });
  return {out, keep_idx, scores, kept_sizes};
}

template <class T>
BlockOutputs cuda_block_forward_varlen(const at::Tensor& x, const at::Tensor& cu, const at::Tensor& kcu,
                                       const BlockTensors& w, int64_t heads, double eps, c10::string_view site,
                                       c10::string_view importance, c10::string_view compress, int64_t protect,
                                       bool post_norm, int64_t seed) {
  constexpr const char* op = "block_forward_varlen";
  const int batch = int(cu.size(0) - 1);
  const int64_t total = x.size(0), C = x.size(1);
  const auto weights = block_weights<T>(w.t, C, heads, eps, op);
  at::Tensor scores = at::empty({total}, x.options().dtype(at::kFloat));
  at::Tensor keep_idx = at::empty({last(kcu)}, x.options().dtype(at::kInt));
  at::Tensor out_cu = at::empty({batch + 1}, cu.options());
  at::Tensor out = at::empty({total + batch, C}, x.options());  // room for Fuse's one extra row per sample
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream().stream();
  auto& context = cuda_block_context<T>(int(x.device().index()), stream);
  refusing([&] {
    with_block(site, importance, compress, post_norm, [&](auto block) {
      using Block = decltype(block);
      TORCH_CHECK_VALUE(!Block::kMerge, "repshift::block_forward_varlen: compress = 'merge' is not offered packed here");
      auto a = packed_block_args<T>(x, out, cu, kcu, out_cu, protect, seed, scores, keep_idx);
      Block::reserve(context.workspace, weights, batch, rs::max_seqlen(cu.data_ptr<int>(), batch));
      Block::forward(rs::Cuda{stream}, weights, a, context.workspace);
    });
    return 0;
  });
  return {out.narrow(0, 0, last(out_cu)), keep_idx, scores, out_cu};
}

#define REPSHIFT_OPS_INSTANTIATE_CUDA_BLOCK(T)                                                                        \
  template BlockOutputs cuda_block_forward<T>(const at::Tensor&, const BlockTensors&, int64_t, double,               \
                                              c10::string_view, c10::string_view, c10::string_view, int64_t,         \
                                              int64_t, bool, int64_t, const at::Tensor&, bool);                      \
  template BlockOutputs cuda_block_forward_varlen<T>(const at::Tensor&, const at::Tensor&, const at::Tensor&,        \
                                                     const BlockTensors&, int64_t, double, c10::string_view,         \
                                                     c10::string_view, c10::string_view, int64_t, bool, int64_t);

}  // namespace repshift_ops
