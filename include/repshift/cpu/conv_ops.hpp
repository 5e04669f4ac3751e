#pragma once
// ConvOps<Host> (conv_ops.hpp): the CnnRows convolutions on the CPU. NCHW
// runs im2col + OpenBLAS (cpu/conv2d.hpp); NHWC runs oneDNN
// (cpu/onednn_conv.hpp) where the build has it (REPSHIFT_HAS_ONEDNN), and
// is then the default: 1.4-2x faster on ResNet-50's convolutions
// (bench/bench_conv_onednn.cpp).

#include <cstdint>
#include <memory>
#include <vector>

#include "../core/conv_ops.hpp"
#include "../params/conv2d.hpp"
#include "../core/error.hpp"
#include "../core/exec.hpp"
#include "backend.hpp"
#include "conv2d.hpp"
#if defined(REPSHIFT_HAS_ONEDNN)
#include "onednn_conv.hpp"
#endif

namespace repshift {

template <>
struct ConvOps<Host> {
  using Context = Backend<Host>::Context;

  // im2col's buffer (NCHW) and oneDNN's primitives with the weights
  // reordered once (NHWC; keyed by the weights' address).
  struct State {
    std::vector<float> im2col;
#if defined(REPSHIFT_HAS_ONEDNN)
    std::unique_ptr<cpu::OneDnnConv> onednn;
#endif
  };

#if defined(REPSHIFT_HAS_ONEDNN)
  static constexpr MapLayout default_layout = MapLayout::Nhwc;
#else
  static constexpr MapLayout default_layout = MapLayout::Nchw;
#endif

  static void check_layout(const char* where, MapLayout layout) {
    require_known_layout(where, layout);
    if (layout == MapLayout::Nhwc && default_layout != MapLayout::Nhwc) {
      repshift::detail::fail(where, "layout = NHWC needs oneDNN: this build has no libdnnl-dev (REPSHIFT_HAS_ONEDNN is off)");
    }
  }

  // y [B, out, Ho, Wo] (NHWC: [B, Ho, Wo, out]) = conv(x) + Epilogue;
  // weight is PyTorch's [out, in, k, k].
  template <ConvEpilogue Epilogue>
  static void conv2d(const Host& host, Context, State& state, MapLayout layout, const Conv2dShape& s, const float* x,
                     std::int64_t batch, std::int64_t H, std::int64_t W, const float* weight, const float* bias,
                     float* y) {
    if (layout == MapLayout::Nchw) {
      return cpu::conv2d<Epilogue>(host, s, x, batch, H, W, weight, bias, y, state.im2col);
    }
    check_layout("ConvOps<Host>::conv2d", layout);
#if defined(REPSHIFT_HAS_ONEDNN)
    if (!state.onednn) state.onednn = std::make_unique<cpu::OneDnnConv>();
    state.onednn->conv2d_nhwc<Epilogue>(host, s, x, batch, H, W, weight, bias, y);
#endif
  }
};

}  // namespace repshift
