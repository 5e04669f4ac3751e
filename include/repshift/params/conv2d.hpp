#pragma once
// Shape of a 2-D convolution on NCHW maps and what follows its product,
// shared by the CPU (cpu/conv2d.hpp, im2col + BLAS) and CUDA
// (cuda/cudnn_conv.cuh, cuDNN) convolutions.

#include <cstdint>
#include <utility>

#include "../core/error.hpp"

namespace repshift {

struct Conv2dShape {
  std::int64_t in_channels = 0, out_channels = 0, kernel = 1, stride = 1, pad = 0;
  std::int64_t out_size(std::int64_t in) const { return (in + 2 * pad - kernel) / stride + 1; }
  std::int64_t patch() const { return in_channels * kernel * kernel; }
  bool is_pointwise() const { return kernel == 1 && stride == 1 && pad == 0; }

  void check(const char* where, std::int64_t height, std::int64_t width) const {
    detail::require_positive(where, "in_channels", in_channels);
    detail::require_positive(where, "out_channels", out_channels);
    detail::require_positive(where, "kernel", kernel);
    detail::require_positive(where, "stride", stride);
    detail::require_non_negative(where, "pad", pad);
    detail::require_positive(where, "height", height);
    detail::require_positive(where, "width", width);
    // Bounded before the products below (im2col, out_size) are taken.
    for (const auto& [name, value] : {std::pair<const char*, std::int64_t>{"in_channels", in_channels},
                                      {"out_channels", out_channels}, {"kernel", kernel}, {"stride", stride},
                                      {"pad", pad}, {"height", height}, {"width", width}}) {
      detail::require_int_size(where, name, {value});
    }
    if (height + 2 * pad < kernel || width + 2 * pad < kernel) {
      detail::fail(where, "a {}x{} map padded by {} is smaller than the {}x{} kernel", height, width, pad, kernel,
                   kernel);
    }
    detail::checked_extent(where, "im2col", patch(), out_size(height), out_size(width), sizeof(float));
  }

  // One call's arguments, for every convolution backend: this shape on
  // H x W maps, batch > 0, and the pointers (bias when the epilogue adds it).
  void check_call(const char* where, std::int64_t batch, std::int64_t height, std::int64_t width, const void* x,
                  const void* weight, const void* bias, bool with_bias, const char* out_name, const void* out) const {
    check(where, height, width);
    detail::require_positive(where, "batch", batch);
    detail::require_pointer(where, "x", x);
    detail::require_pointer(where, "weight", weight);
    detail::require_pointer(where, out_name, out);
    if (with_bias) detail::require_pointer(where, "bias", bias);
  }
};

enum class ConvEpilogue { None, Bias, BiasRelu };

// Memory order of a feature map: NCHW ([B, C, H, W], PyTorch's default) or
// NHWC ([B, H, W, C], channels last: oneDNN's fast CPU layout, and the one
// where a pixel's channels, which the shift reduces over, are contiguous).
enum class MapLayout { Nchw, Nhwc };

// A layout cast from an integer names neither; every executor's
// check_layout starts here.
inline void require_known_layout(const char* where, MapLayout layout) {
  if (layout != MapLayout::Nchw && layout != MapLayout::Nhwc) {
    detail::fail(where, "layout = {} is neither MapLayout::Nchw nor MapLayout::Nhwc", static_cast<int>(layout));
  }
}

}  // namespace repshift
