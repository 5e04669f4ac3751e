#pragma once
// The fused block on CUDA tensors, declared for ops_cuda.cu; defined in
// block_cuda.cuh and instantiated once per storage type T (float, __half,
// __nv_bfloat16) by block_cuda_{f32,f16,bf16}.cu.

#include <torch/types.h>

#include <cstdint>
#include <tuple>

#include "op_support.hpp"

namespace repshift_ops {

using BlockOutputs = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

// One block over [B, N, C] tokens (x and the weights in storage type T on
// the current device; sizes float32 or undefined). Returns (out, kept
// indices int32, scores, kept sizes); first_token_only as in ops.cpp.
template <class T>
BlockOutputs cuda_block_forward(const at::Tensor& x, const BlockTensors& w, int64_t heads, double eps,
                                c10::string_view site, c10::string_view importance, c10::string_view compress,
                                int64_t keep, int64_t protect, bool post_norm, int64_t seed, const at::Tensor& sizes,
                                bool first_token_only);

// The same over packed samples; cu and kcu are host int32 [B + 1] (the
// block plans on the host). Returns (out [out_total, C], kept indices
// int32, scores, out_cu_seqlens int32 on the CPU).
template <class T>
BlockOutputs cuda_block_forward_varlen(const at::Tensor& x, const at::Tensor& cu, const at::Tensor& kcu,
                                       const BlockTensors& w, int64_t heads, double eps, c10::string_view site,
                                       c10::string_view importance, c10::string_view compress, int64_t protect,
                                       bool post_norm, int64_t seed);

}  // namespace repshift_ops
