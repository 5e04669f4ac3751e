#pragma once
// Block<CnnRows, Block, Metric, Prune, PreNorm> on the CPU: a ResNet
// bottleneck on NCHW maps,
//   y = ReLU(conv3(ReLU(conv2(ReLU(conv1 x)))) + shortcut(x)),
// conv1/conv3 1x1, conv2 3x3 with the block's stride (torchvision's v1.5),
// shortcut = x or a 1x1 strided projection; BatchNorm is folded into each
// conv's bias. The residual epilogue that forms y also accumulates the
// per-pixel shift Metric(y[:, h, w], x[:, h, w]) over channels, so the
// row and column scores cost no extra pass; pruning then keeps the best
// keep_rows rows and keep_cols columns per sample and the output stays a
// dense [B, C, keep_rows, keep_cols] map. Scoring needs y and x of one
// shape (no projection shortcut), as between the blocks of a stage.

#include <algorithm>
#include <climits>
#include <cstring>
#include <memory>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "../cpu/backend.hpp"
#include "../cpu/conv2d.hpp"
#include "../cpu/line_prune.hpp"
#include "../cpu/reduce_channels.hpp"
#if defined(REPSHIFT_HAS_ONEDNN)
#include "../cpu/onednn_conv.hpp"
#endif
#include "../entry_points.hpp"
#include "../policies/backbone.hpp"
#include "../policies/importance.hpp"
#include "../policies/site.hpp"
#include "block.hpp"

namespace repshift {

struct Cuda;  // repshift/cuda/exec.cuh
namespace cuda {
class CnnWorkspace;  // blocks/cnn_block.cuh
}

struct BottleneckWeights {
  std::int64_t in_channels = 0, mid_channels = 0, out_channels = 0, stride = 1;
  const float* conv1_weight = nullptr;  // [mid, in, 1, 1]
  const float* conv1_bias = nullptr;    // [mid] (folded BatchNorm)
  const float* conv2_weight = nullptr;  // [mid, mid, 3, 3]
  const float* conv2_bias = nullptr;
  const float* conv3_weight = nullptr;  // [out, mid, 1, 1]
  const float* conv3_bias = nullptr;
  const float* down_weight = nullptr;   // [out, in, 1, 1] or null (identity shortcut)
  const float* down_bias = nullptr;

  bool has_projection() const { return down_weight != nullptr; }
  Conv2dShape conv1() const { return {in_channels, mid_channels, 1, 1, 0}; }
  Conv2dShape conv2() const { return {mid_channels, mid_channels, 3, stride, 1}; }
  Conv2dShape conv3() const { return {mid_channels, out_channels, 1, 1, 0}; }
  Conv2dShape down() const { return {in_channels, out_channels, 1, stride, 0}; }

  void check(const char* where) const {
    detail::require_positive(where, "weights.in_channels", in_channels);
    detail::require_positive(where, "weights.mid_channels", mid_channels);
    detail::require_positive(where, "weights.out_channels", out_channels);
    detail::require_positive(where, "weights.stride", stride);
    detail::require_pointer(where, "weights.conv1_weight", conv1_weight);
    detail::require_pointer(where, "weights.conv1_bias", conv1_bias);
    detail::require_pointer(where, "weights.conv2_weight", conv2_weight);
    detail::require_pointer(where, "weights.conv2_bias", conv2_bias);
    detail::require_pointer(where, "weights.conv3_weight", conv3_weight);
    detail::require_pointer(where, "weights.conv3_bias", conv3_bias);
    if (!has_projection() && (stride != 1 || in_channels != out_channels)) {
      detail::fail(where, "an identity shortcut needs stride 1 and in_channels == out_channels (" +
                              std::to_string(in_channels) + " vs " + std::to_string(out_channels) +
                              "): pass down_weight");
    }
    if (has_projection()) detail::require_pointer(where, "weights.down_bias", down_bias);
  }
};

struct CnnBlockArgs {
  const float* x = nullptr;  // [batch, in_channels, height, width] (NHWC: [batch, height, width, in_channels])
  float* y = nullptr;        // [batch, out_channels, keep_rows, keep_cols] (NHWC: channels last)
  int batch = 0, height = 0, width = 0;
  int keep_rows = 0, keep_cols = 0;  // 0: all of the output's rows / columns (no pruning)
  float* row_scores = nullptr;       // optional [batch, out height]: written when set
  float* col_scores = nullptr;       // optional [batch, out width]
  int* kept_rows = nullptr;          // optional [batch, keep_rows]: ascending
  int* kept_cols = nullptr;          // optional [batch, keep_cols]
  // Both maps' memory order. NHWC runs oneDNN's convolutions (CPU only,
  // needs a build with libdnnl-dev: REPSHIFT_HAS_ONEDNN).
  MapLayout layout = MapLayout::Nchw;

  static CnnBlockArgs dense(const float* x, float* y, int batch, int height, int width) {
    CnnBlockArgs a;
    a.x = x;
    a.y = y;
    a.batch = batch;
    a.height = height;
    a.width = width;
    return a;
  }
};

class CnnWorkspace {
 public:
  std::vector<float> t1, t2, t3, shortcut, full, pixel, rows, cols, im2col;
  std::vector<int> row_idx, col_idx;
  static void grow(std::vector<float>& v, std::int64_t n) {
    if (std::int64_t(v.size()) < n) v.resize(std::size_t(n));
  }
#if defined(REPSHIFT_HAS_ONEDNN)
  // The NHWC path's convolutions (primitives and packed weights kept).
  cpu::OneDnnConv& onednn() {
    if (!onednn_) onednn_ = std::make_unique<cpu::OneDnnConv>();
    return *onednn_;
  }

 private:
  std::unique_ptr<cpu::OneDnnConv> onednn_;
#endif
};

template <class Site, class Metric, class Compress, class Norm>
struct Block<policies::CnnRows, Site, Metric, Compress, Norm> {
  static_assert(std::is_same_v<Site, policies::Block>,
                "Block<CnnRows>: Site must be Block (the shift of the whole bottleneck, per pixel)");
  static_assert(std::is_same_v<Compress, policies::Prune>,
                "Block<CnnRows>: Compress must be Prune (whole rows and columns are removed)");
  static_assert(policies::is_metric_v<Metric>, "Block<CnnRows>: Metric must be a shift metric or Norm");

  // What a forward of these arguments does, after checking them.
  struct Plan {
    std::int64_t out_height, out_width, keep_rows, keep_cols;
    bool prune, score;
  };

  static Plan plan(const char* where, const BottleneckWeights& w, const CnnBlockArgs& a) {
    w.check(where);
    detail::require_pointer(where, "x", a.x);
    detail::require_pointer(where, "y", a.y);
    detail::require_positive(where, "batch", a.batch);
    w.conv2().check(where, a.height, a.width);
    Plan p;
    p.out_height = w.conv2().out_size(a.height);
    p.out_width = w.conv2().out_size(a.width);
    p.keep_rows = a.keep_rows ? a.keep_rows : p.out_height;
    p.keep_cols = a.keep_cols ? a.keep_cols : p.out_width;
    detail::require_positive(where, "keep_rows", p.keep_rows);
    detail::require_positive(where, "keep_cols", p.keep_cols);
    detail::require_at_most(where, "keep_rows", p.keep_rows, "output height", p.out_height);
    detail::require_at_most(where, "keep_cols", p.keep_cols, "output width", p.out_width);
    p.prune = p.keep_rows < p.out_height || p.keep_cols < p.out_width;
    p.score = p.prune || a.row_scores || a.col_scores;
    if (p.score && w.has_projection()) {
      detail::fail(where, "the shift needs x and y of one shape; this block projects its shortcut (" +
                              std::to_string(w.in_channels) + " -> " + std::to_string(w.out_channels) +
                              " channels, stride " + std::to_string(w.stride) + ")");
    }
    if (static_cast<const void*>(a.x) == static_cast<const void*>(a.y)) detail::fail(where, "y must not alias x");
    detail::checked_extent(where, "activations", a.batch, std::max(w.mid_channels, w.out_channels) * 4,
                           std::int64_t(a.height) * a.width, sizeof(float));
    return p;
  }

  // On the GPU: defined in blocks/cnn_block.cuh (cuDNN convolutions); every
  // pointer is a device pointer, f32.
  static void forward(const Cuda& exec, const BottleneckWeights& w, const CnnBlockArgs& a, cuda::CnnWorkspace& ws);

  static void forward(const Host& host, const BottleneckWeights& w, const CnnBlockArgs& a, CnnWorkspace& ws) {
    const Plan p = plan("Block<CnnRows>::forward", w, a);
    // The one runtime -> code switch of the block: the maps' layout.
    if (a.layout == MapLayout::Nhwc) return forward_nhwc(host, w, a, p, ws);
    const std::int64_t B = a.batch, H = a.height, W = a.width;
    const std::int64_t Ho = p.out_height, Wo = p.out_width, n = Ho * Wo;
    const bool prune = p.prune, score = p.score;

    CnnWorkspace::grow(ws.t1, B * w.mid_channels * H * W);
    CnnWorkspace::grow(ws.t2, B * w.mid_channels * n);
    CnnWorkspace::grow(ws.t3, B * w.out_channels * n);
    cpu::conv2d<ConvEpilogue::BiasRelu>(host, w.conv1(), a.x, B, H, W, w.conv1_weight, w.conv1_bias, ws.t1.data(),
                                        ws.im2col);
    cpu::conv2d<ConvEpilogue::BiasRelu>(host, w.conv2(), ws.t1.data(), B, H, W, w.conv2_weight, w.conv2_bias,
                                        ws.t2.data(), ws.im2col);
    cpu::conv2d<ConvEpilogue::None>(host, w.conv3(), ws.t2.data(), B, Ho, Wo, w.conv3_weight, nullptr, ws.t3.data(),
                                    ws.im2col);
    const float* shortcut = a.x;
    if (w.has_projection()) {
      CnnWorkspace::grow(ws.shortcut, B * w.out_channels * n);
      cpu::conv2d<ConvEpilogue::Bias>(host, w.down(), a.x, B, H, W, w.down_weight, w.down_bias, ws.shortcut.data(),
                                      ws.im2col);
      shortcut = ws.shortcut.data();
    }
    float* out = a.y;
    if (prune) {
      CnnWorkspace::grow(ws.full, B * w.out_channels * n);
      out = ws.full.data();
    }
    if (!score) return residual_epilogue<false>(host, w, ws.t3.data(), shortcut, out, B, n, a.x, nullptr);
    CnnWorkspace::grow(ws.pixel, B * n);
    residual_epilogue<true>(host, w, ws.t3.data(), shortcut, out, B, n, a.x, ws.pixel.data());
    const LineScoreParams lines = line_scores_params(w, a, p, out, ws);
    for (std::int64_t b = 0; b < B; ++b) cpu::reduce_lines(lines, b, ws.pixel.data() + b * n);
    if (prune) prune_lines(host, w, a, p, lines, out, ws);
  }

 private:
  // Channels last: oneDNN's convolutions (bias and ReLU fused), then one
  // pass per pixel for y = ReLU(conv3 + shortcut) and, on the row while it
  // is in L1, the Metric over its now contiguous channels.
  static void forward_nhwc(const Host& host, const BottleneckWeights& w, const CnnBlockArgs& a, const Plan& p,
                           CnnWorkspace& ws) {
#if defined(REPSHIFT_HAS_ONEDNN)
    const std::int64_t B = a.batch, H = a.height, W = a.width, n = p.out_height * p.out_width, C = w.out_channels;
    cpu::OneDnnConv& conv = ws.onednn();
    CnnWorkspace::grow(ws.t1, B * w.mid_channels * H * W);
    CnnWorkspace::grow(ws.t2, B * w.mid_channels * n);
    CnnWorkspace::grow(ws.t3, B * C * n);
    conv.conv2d_nhwc<ConvEpilogue::BiasRelu>(w.conv1(), a.x, B, H, W, w.conv1_weight, w.conv1_bias, ws.t1.data());
    conv.conv2d_nhwc<ConvEpilogue::BiasRelu>(w.conv2(), ws.t1.data(), B, H, W, w.conv2_weight, w.conv2_bias,
                                             ws.t2.data());
    conv.conv2d_nhwc<ConvEpilogue::Bias>(w.conv3(), ws.t2.data(), B, p.out_height, p.out_width, w.conv3_weight,
                                         w.conv3_bias, ws.t3.data());
    const float* shortcut = a.x;
    if (w.has_projection()) {
      CnnWorkspace::grow(ws.shortcut, B * C * n);
      conv.conv2d_nhwc<ConvEpilogue::Bias>(w.down(), a.x, B, H, W, w.down_weight, w.down_bias, ws.shortcut.data());
      shortcut = ws.shortcut.data();
    }
    float* out = a.y;
    if (p.prune) {
      CnnWorkspace::grow(ws.full, B * C * n);
      out = ws.full.data();
    }
    if (p.score) CnnWorkspace::grow(ws.pixel, B * n);
    const float* t3 = ws.t3.data();
    float* pixel = ws.pixel.data();
#pragma omp parallel for schedule(static) num_threads(cpu::thread_count(host))
    for (std::int64_t i = 0; i < B * n; ++i) {
      const float* branch = t3 + i * C;
      const float* sc = shortcut + i * C;
      float* y = out + i * C;
      for (std::int64_t c = 0; c < C; ++c) y[c] = std::max(branch[c] + sc[c], 0.0f);
      if (p.score) pixel[i] = cpu::reduce_channels<Metric>(y, a.x + i * C, C);
    }
    if (!p.score) return;
    LineScoreParams lines = line_scores_params(w, a, p, out, ws);
    for (std::int64_t b = 0; b < B; ++b) cpu::reduce_lines(lines, b, pixel + b * n);
    if (p.prune) prune_lines(host, w, a, p, lines, out, ws);
#else
    (void)host, (void)w, (void)a, (void)p, (void)ws;
    detail::fail("Block<CnnRows>::forward", "layout = NHWC needs oneDNN: this build has no libdnnl-dev "
                                            "(REPSHIFT_HAS_ONEDNN is off)");
#endif
  }

  // Row and column scores of the block's output `out` (written to the
  // caller's arrays when given).
  static LineScoreParams line_scores_params(const BottleneckWeights& w, const CnnBlockArgs& a, const Plan& p,
                                            const float* out, CnnWorkspace& ws) {
    LineScoreParams lines;
    lines.before = a.x;
    lines.after = out;
    lines.batch = a.batch;
    lines.channels = w.out_channels;
    lines.height = p.out_height;
    lines.width = p.out_width;
    CnnWorkspace::grow(ws.rows, a.batch * p.out_height);
    CnnWorkspace::grow(ws.cols, a.batch * p.out_width);
    lines.row_scores = a.row_scores ? a.row_scores : ws.rows.data();
    lines.col_scores = a.col_scores ? a.col_scores : ws.cols.data();
    return lines;
  }

  // The best keep_rows rows and keep_cols columns per sample, then the
  // dense pruned map in a.y.
  static void prune_lines(const Host& host, const BottleneckWeights& w, const CnnBlockArgs& a, const Plan& p,
                          const LineScoreParams& lines, const float* out, CnnWorkspace& ws) {
    ws.row_idx.resize(std::size_t(a.batch * p.keep_rows));
    ws.col_idx.resize(std::size_t(a.batch * p.keep_cols));
    int* rows = a.kept_rows ? a.kept_rows : ws.row_idx.data();
    int* cols = a.kept_cols ? a.kept_cols : ws.col_idx.data();
    select_top(host, lines.row_scores, rows, a.batch, int(p.out_height), int(p.keep_rows), 0);
    select_top(host, lines.col_scores, cols, a.batch, int(p.out_width), int(p.keep_cols), 0);
    const RemoveLinesParams r = line_removal(w, a, p, out, rows, cols);
    if (a.layout == MapLayout::Nhwc) {
      cpu::remove_lines_nhwc(host, r);
    } else {
      cpu::remove_lines(host, r);
    }
  }

  // The full map `out` -> a.y, keeping the selected rows and columns.
  static RemoveLinesParams line_removal(const BottleneckWeights& w, const CnnBlockArgs& a, const Plan& p,
                                        const float* out, const int* rows, const int* cols) {
    RemoveLinesParams r;
    r.x = out;
    r.keep_rows = rows;
    r.keep_cols = cols;
    r.out = a.y;
    r.batch = a.batch;
    r.channels = w.out_channels;
    r.height = p.out_height;
    r.width = p.out_width;
    r.rows = p.keep_rows;
    r.cols = p.keep_cols;
    return r;
  }

  // out = ReLU(branch + bias + shortcut); with Score, pixel[b, p] =
  // Metric over channels of (out, x) at p. One task per (sample, run of
  // pixels): the channel loop is outside, so every plane streams once.
  template <bool Score>
  static void residual_epilogue(const Host& host, const BottleneckWeights& w, const float* branch,
                                const float* shortcut, float* out, std::int64_t B, std::int64_t n, const float* x,
                                float* pixel) {
    constexpr std::int64_t kRun = 512;
    const std::int64_t runs = (n + kRun - 1) / kRun, C = w.out_channels;
#pragma omp parallel for schedule(static) num_threads(cpu::thread_count(host))
    for (std::int64_t task = 0; task < B * runs; ++task) {
      const std::int64_t b = task / runs, p0 = (task % runs) * kRun, len = std::min(kRun, n - p0);
      typename Metric::Accum acc[kRun];
      if constexpr (Score) {
        for (std::int64_t i = 0; i < len; ++i) acc[i] = Metric::init();
      }
      for (std::int64_t c = 0; c < C; ++c) {
        const std::int64_t off = (b * C + c) * n + p0;
        const float bias = w.conv3_bias[c];
        for (std::int64_t i = 0; i < len; ++i) {
          const float v = branch[off + i] + bias + shortcut[off + i];
          out[off + i] = v > 0.0f ? v : 0.0f;
          if constexpr (Score) Metric::accumulate(acc[i], out[off + i], x[off + i]);
        }
      }
      if constexpr (Score) {
        for (std::int64_t i = 0; i < len; ++i) pixel[b * n + p0 + i] = Metric::finalize(acc[i]);
      }
    }
  }
};

}  // namespace repshift
