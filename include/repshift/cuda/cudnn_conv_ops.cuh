#pragma once
// ConvOps<Cuda> (conv_ops.hpp): the CnnRows convolutions on the GPU through
// cuDNN (cuda/cudnn_conv.cuh; target repshift::cudnn), NCHW, f32. The
// cuda::Dnn (handle, plan cache, workspace) comes with the context, like
// the cuBLASLt handle: Workspace<Cuda>(dnn), or a model's {blas, dnn}.

#include <cstdint>

#include "../core/conv_ops.hpp"
#include "../params/conv2d.hpp"
#include "../core/error.hpp"
#include "backend.cuh"
#include "cudnn_conv.cuh"
#include "exec.cuh"

namespace repshift {

template <>
struct ConvOps<Cuda> {
  using Context = Backend<Cuda>::Context;
  struct State {};  // cuDNN's plans live in the context's cuda::Dnn

  static constexpr MapLayout default_layout = MapLayout::Nchw;

  static void check_layout(const char* where, MapLayout layout) {
    require_known_layout(where, layout);
    if (layout != MapLayout::Nchw) detail::fail(where, "layout = NHWC is CPU-only (cuDNN runs NCHW here)");
  }

  // y [B, out, Ho, Wo] = conv(x [B, in, H, W]) + Epilogue; device pointers.
  template <ConvEpilogue Epilogue>
  static void conv2d(const Cuda& exec, Context ctx, State&, MapLayout layout, const Conv2dShape& s, const float* x,
                     std::int64_t batch, std::int64_t H, std::int64_t W, const float* weight, const float* bias,
                     float* y) {
    constexpr const char* where = "ConvOps<Cuda>::conv2d";
    check_layout(where, layout);
    if (!ctx.dnn) detail::fail(where, "no cuda::Dnn: make the workspace or model with one");
    ctx.dnn->conv2d<Epilogue>(exec, s, x, batch, H, W, weight, bias, y);
  }
};

}  // namespace repshift
