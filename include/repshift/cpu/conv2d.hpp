#pragma once
// 2-D convolution on NCHW maps as im2col + one SGEMM per sample (cpu/gemm.hpp)
// (out[b] = W[Cout, Cin k k] . cols[Cin k k, Ho Wo]); a 1x1 stride-1 conv
// reads the map itself as cols. Bias and ReLU are applied in the pass that
// follows the GEMM; the bottleneck's last conv instead hands its raw
// product to the residual epilogue (cpu/residual_map.hpp). Max and global
// average pooling for the ResNet stem and head.

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "../params/conv2d.hpp"
#include "../core/error.hpp"
#include "../core/exec.hpp"
#include "gemm.hpp"
#include "parallel.hpp"

namespace repshift {


namespace cpu {

// cols[(c k + ky) k + kx, oy Wo + ox] = x[c, oy s - pad + ky, ox s - pad + kx] (0 outside).
inline void im2col(const Host& host, const Conv2dShape& s, const float* x, std::int64_t H, std::int64_t W, float* cols) {
  const std::int64_t Ho = s.out_size(H), Wo = s.out_size(W), k = s.kernel;
#pragma omp parallel for schedule(static) num_threads(thread_count(host))
  for (std::int64_t row = 0; row < s.patch(); ++row) {
    const std::int64_t c = row / (k * k), ky = (row / k) % k, kx = row % k;
    const float* plane = x + c * H * W;
    float* dst = cols + row * Ho * Wo;
    for (std::int64_t oy = 0; oy < Ho; ++oy) {
      const std::int64_t iy = oy * s.stride - s.pad + ky;
      float* line = dst + oy * Wo;
      if (iy < 0 || iy >= H) {
        std::fill(line, line + Wo, 0.0f);
        continue;
      }
      for (std::int64_t ox = 0; ox < Wo; ++ox) {
        const std::int64_t ix = ox * s.stride - s.pad + kx;
        line[ox] = ix >= 0 && ix < W ? plane[iy * W + ix] : 0.0f;
      }
    }
  }
}

// out: [B, Cout, Ho, Wo]; cols: scratch, grown to Cin k k x Ho Wo when needed.
template <ConvEpilogue Epilogue>
void conv2d(const Host& host, const Conv2dShape& s, const float* x, std::int64_t batch, std::int64_t H, std::int64_t W,
            const float* weight, const float* bias, float* out, std::vector<float>& cols) {
  constexpr const char* where = "conv2d";
  s.check_call(where, batch, H, W, x, weight, bias, Epilogue != ConvEpilogue::None, "out", out);
  const std::int64_t Ho = s.out_size(H), Wo = s.out_size(W), n = Ho * Wo, K = s.patch();
  // The BLAS takes int sizes and leading dimensions.
  repshift::detail::require_at_most(where, "output pixels (Ho x Wo)", n, "INT_MAX", INT_MAX);
  repshift::detail::require_at_most(where, "patch (in_channels x kernel^2)", K, "INT_MAX", INT_MAX);
  if (!s.is_pointwise() && std::int64_t(cols.size()) < K * n) cols.resize(std::size_t(K * n));
  const SgemmLibrary library = sgemm_library();
  for (std::int64_t b = 0; b < batch; ++b) {
    const float* xb = x + b * s.in_channels * H * W;
    const float* src = xb;
    if (!s.is_pointwise()) {
      im2col(host, s, xb, H, W, cols.data());
      src = cols.data();
    }
    float* ob = out + b * s.out_channels * n;
    sgemm_on(host, library, false, int(s.out_channels), int(n), int(K), 1.0f, weight, int(K), src, int(n), 0.0f, ob,
             int(n));
    if constexpr (Epilogue != ConvEpilogue::None) {
#pragma omp parallel for schedule(static) num_threads(thread_count(host))
      for (std::int64_t c = 0; c < s.out_channels; ++c) {
        float* plane = ob + c * n;
        const float bc = bias[c];
        for (std::int64_t i = 0; i < n; ++i) {
          const float v = plane[i] + bc;
          plane[i] = Epilogue == ConvEpilogue::BiasRelu ? (v < 0.0f ? 0.0f : v) : v;  // NaN stays NaN, as torch.relu
        }
      }
    }
  }
}

namespace detail {
// max(m, v) where a NaN wins and stays, as in torch's max_pool2d (std::max drops it).
inline float max_keeping_nan(float m, float v) { return (v > m || v != v) ? v : m; }
}  // namespace detail

// 3x3 stride-2 pad-1 max pooling (the ResNet stem); padding never wins.
inline void max_pool_3x3s2(const Host& host, const float* x, std::int64_t planes, std::int64_t H, std::int64_t W,
                           float* out) {
  const std::int64_t Ho = (H + 2 - 3) / 2 + 1, Wo = (W + 2 - 3) / 2 + 1;
#pragma omp parallel for schedule(static) num_threads(thread_count(host))
  for (std::int64_t p = 0; p < planes; ++p) {
    const float* plane = x + p * H * W;
    for (std::int64_t oy = 0; oy < Ho; ++oy)
      for (std::int64_t ox = 0; ox < Wo; ++ox) {
        float m = -INFINITY;
        for (std::int64_t ky = 0; ky < 3; ++ky)
          for (std::int64_t kx = 0; kx < 3; ++kx) {
            const std::int64_t iy = oy * 2 - 1 + ky, ix = ox * 2 - 1 + kx;
            if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
            const float v = plane[iy * W + ix];
            m = detail::max_keeping_nan(m, v);
          }
        out[(p * Ho + oy) * Wo + ox] = m;
      }
  }
}

// out[p] = mean of plane p.
inline void global_avg_pool(const Host& host, const float* x, std::int64_t planes, std::int64_t hw, float* out) {
#pragma omp parallel for schedule(static) num_threads(thread_count(host))
  for (std::int64_t p = 0; p < planes; ++p) {
    double s = 0;
    for (std::int64_t i = 0; i < hw; ++i) s += x[p * hw + i];
    out[p] = float(s / double(hw));
  }
}

// Channels-last twins of the two pools: x [B, H, W, C].
inline void max_pool_3x3s2_nhwc(const Host& host, const float* x, std::int64_t batch, std::int64_t H, std::int64_t W,
                                std::int64_t C, float* out) {
  const std::int64_t Ho = (H + 2 - 3) / 2 + 1, Wo = (W + 2 - 3) / 2 + 1;
#pragma omp parallel for schedule(static) num_threads(thread_count(host))
  for (std::int64_t bo = 0; bo < batch * Ho; ++bo) {
    const std::int64_t b = bo / Ho, oy = bo % Ho;
    for (std::int64_t ox = 0; ox < Wo; ++ox) {
      float* dst = out + ((b * Ho + oy) * Wo + ox) * C;
      for (std::int64_t c = 0; c < C; ++c) dst[c] = -INFINITY;
      for (std::int64_t ky = 0; ky < 3; ++ky)
        for (std::int64_t kx = 0; kx < 3; ++kx) {
          const std::int64_t iy = oy * 2 - 1 + ky, ix = ox * 2 - 1 + kx;
          if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
          const float* src = x + ((b * H + iy) * W + ix) * C;
#pragma omp simd  // vectorised at -O2 too (see layer_norm_row)
          for (std::int64_t c = 0; c < C; ++c) dst[c] = detail::max_keeping_nan(dst[c], src[c]);
        }
    }
  }
}

inline void global_avg_pool_nhwc(const Host& host, const float* x, std::int64_t batch, std::int64_t hw, std::int64_t C,
                                 float* out) {
#pragma omp parallel for schedule(static) num_threads(thread_count(host))
  for (std::int64_t b = 0; b < batch; ++b) {
    std::vector<double> sum(static_cast<std::size_t>(C), 0.0);
    for (std::int64_t i = 0; i < hw; ++i)
      for (std::int64_t c = 0; c < C; ++c) sum[std::size_t(c)] += x[(b * hw + i) * C + c];
    for (std::int64_t c = 0; c < C; ++c) out[b * C + c] = float(sum[std::size_t(c)] / double(hw));
  }
}

// NCHW -> NHWC (the ResNet input, 3 channels, enters the NHWC path once).
inline void nchw_to_nhwc(const Host& host, const float* x, std::int64_t batch, std::int64_t C, std::int64_t hw,
                         float* out) {
#pragma omp parallel for schedule(static) num_threads(thread_count(host))
  for (std::int64_t b = 0; b < batch; ++b)
    for (std::int64_t i = 0; i < hw; ++i)
      for (std::int64_t c = 0; c < C; ++c) out[(b * hw + i) * C + c] = x[(b * C + c) * hw + i];
}

}  // namespace cpu
}  // namespace repshift
