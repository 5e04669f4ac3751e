#pragma once
// Block<CnnRows, BlockOutput, Importance, Prune, PreNorm>: a ResNet bottleneck on
// feature maps, one forward for every executor, written against
// Backend<Exec> and ConvOps<Exec> and run with a Workspace<Exec, float>:
//   y = ReLU(conv3(ReLU(conv2(ReLU(conv1 x)))) + shortcut(x)),
// conv1/conv3 1x1, conv2 3x3 with the block's stride (torchvision's v1.5),
// shortcut = x or a 1x1 strided projection; BatchNorm is folded into each
// conv's bias. conv3 writes its raw product; the residual epilogue adds
// its bias, forms y and accumulates the per-pixel shift Importance(y[:, h, w],
// x[:, h, w]) over channels in the same pass, so the row and column scores
// cost no extra pass. Pruning then keeps the best keep_rows rows and
// keep_cols columns per sample and the output stays a dense
// [B, C, keep_rows, keep_cols] map. Scoring needs y and x of one shape (no
// projection shortcut), as between the blocks of a stage.
//
// CPU: rs::Host{}, NCHW (im2col + BLAS) or NHWC (oneDNN, where built).
// CUDA: rs::Cuda{stream} after <repshift/cuda/cudnn_conv_ops.cuh> (cuDNN), NCHW,
// every pointer a device pointer, the workspace made with a cuda::Dnn and
// reserved first.

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "../core/backend.hpp"
#include "../core/conv_ops.hpp"
#include "../params/conv2d.hpp"
#include "../cpu/backend.hpp"  // the CPU executor is always there; CUDA: cuda/cudnn_conv_ops.cuh
#include "../cpu/conv_ops.hpp"
#include "../params/line_prune.hpp"
#include "../params/select_top.hpp"
#include "../params/residual_map.hpp"
#include "../policies/backbone.hpp"
#include "../policies/combination.hpp"
#include "../policies/metric.hpp"
#include "../policies/site.hpp"
#include "block.hpp"
#include "workspace.hpp"

namespace repshift {

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
    detail::require_int_size(where, "weights.in_channels", {in_channels});
    detail::require_int_size(where, "weights.mid_channels", {mid_channels});
    detail::require_int_size(where, "weights.out_channels", {out_channels});
    detail::require_int_size(where, "weights.stride", {stride});
    detail::require_pointer(where, "weights.conv1_weight", conv1_weight);
    detail::require_pointer(where, "weights.conv1_bias", conv1_bias);
    detail::require_pointer(where, "weights.conv2_weight", conv2_weight);
    detail::require_pointer(where, "weights.conv2_bias", conv2_bias);
    detail::require_pointer(where, "weights.conv3_weight", conv3_weight);
    detail::require_pointer(where, "weights.conv3_bias", conv3_bias);
    if (!has_projection() && (stride != 1 || in_channels != out_channels)) {
      detail::fail(where,
                   "an identity shortcut needs stride 1 and in_channels == out_channels ({} vs {}): pass down_weight",
                   in_channels, out_channels);
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

template <class Site, class Importance, class Compress, class Norm>
struct Block<policies::CnnRows, Site, Importance, Compress, Norm> {
  using Rule = policies::CombinationRule<policies::CnnRows, Site, Importance, Compress>;
  static_assert(Rule::site_ok, "Block<CnnRows>: Site must be BlockOutput (the shift of the whole bottleneck, per pixel)");
  static_assert(Rule::compress_ok, "Block<CnnRows>: Compress must be Prune (whole rows and columns are removed)");
  static_assert(Rule::importance_ok, "Block<CnnRows>: Importance must be a shift metric or TokenNorm");

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
      detail::fail(where,
                   "the shift needs x and y of one shape; this block projects its shortcut ({} -> {} channels, "
                   "stride {})",
                   w.in_channels, w.out_channels, w.stride);
    }
    detail::checked_extent(where, "activations", a.batch, std::max(w.mid_channels, w.out_channels) * 4,
                           std::int64_t(a.height) * a.width, sizeof(float));
    const std::int64_t x_values = detail::checked_extent(where, "x", a.batch, w.in_channels,
                                                         std::int64_t(a.height) * a.width, sizeof(float));
    const std::int64_t y_values = detail::checked_extent(where, "y", a.batch, w.out_channels,
                                                         p.keep_rows * p.keep_cols, sizeof(float));
    detail::require_y_apart_from_x(where, a.x, x_values * std::int64_t(sizeof(float)), a.y,
                                   y_values * std::int64_t(sizeof(float)));
    return p;
  }

  // The workspace of a forward of `batch` height x width maps (pruning or
  // not: the pruned map's copy is the last slice).
  template <class Exec>
  static WorkspaceExtent workspace_extent(const BottleneckWeights& w, std::int64_t batch, std::int64_t height,
                                          std::int64_t width, bool prune = true) {
    const std::int64_t Ho = w.conv2().out_size(height), Wo = w.conv2().out_size(width), n = Ho * Wo;
    const std::int64_t maps = 1 + (w.has_projection() ? 1 : 0) + (prune ? 1 : 0);  // t3, shortcut, full
    WorkspaceExtent e;
    e.values = batch * (w.mid_channels * (height * width + n) + maps * w.out_channels * n);
    e.floats = Backend<Exec>::template residual_map_scratch<Importance>(batch, n, w.out_channels) + batch * (n + Ho + Wo);
    e.ints = batch * (Ho + Wo);
    return e;
  }
  // Room for `batch` maps of up to height x width entering a block of
  // weights w: after this, such a forward allocates nothing (and on CUDA is
  // allowed to run).
  template <class Exec, class T>
  static void reserve(Workspace<Exec, T>& ws, const BottleneckWeights& w, std::int64_t batch, std::int64_t height,
                      std::int64_t width) {
    constexpr const char* where = "Block<CnnRows>::reserve";
    w.check(where);
    detail::require_positive(where, "batch", batch);
    w.conv2().check(where, height, width);
    detail::checked_extent(where, "activations", batch, std::max(w.mid_channels, w.out_channels) * 4,
                           height * width, sizeof(float));
    ws.reserve(workspace_extent<Exec>(w, batch, height, width));
  }

  // x -> y on Exec (f32: a Workspace<Exec, float>). CUDA only enqueues.
  template <class Exec, class T>
  static void forward(const Exec& exec, const BottleneckWeights& w, const CnnBlockArgs& a, Workspace<Exec, T>& ws) {
    static_assert(std::is_same_v<T, float>, "Block<CnnRows>::forward: f32 only (a Workspace<Exec, float>)");
    using B = Backend<Exec>;
    using Conv = ConvOps<Exec>;
    constexpr const char* where = "Block<CnnRows>::forward";
    const Plan p = plan(where, w, a);
    Conv::check_layout(where, a.layout);
    const std::int64_t batch = a.batch, H = a.height, W = a.width, Ho = p.out_height, Wo = p.out_width, n = Ho * Wo;
    ws.require(where, workspace_extent<Exec>(w, batch, H, W, p.prune), "batch {} of {}x{} maps", batch, H, W);
    const Scratch s = Scratch::template carve<Exec>(ws, w, batch, H, W);
    auto& conv = ws.template kept<typename Conv::State>();

    Conv::template conv2d<ConvEpilogue::BiasRelu>(exec, ws.context(), conv, a.layout, w.conv1(), a.x, batch, H, W,
                                                  w.conv1_weight, w.conv1_bias, s.t1);
    Conv::template conv2d<ConvEpilogue::BiasRelu>(exec, ws.context(), conv, a.layout, w.conv2(), s.t1, batch, H, W,
                                                  w.conv2_weight, w.conv2_bias, s.t2);
    Conv::template conv2d<ConvEpilogue::None>(exec, ws.context(), conv, a.layout, w.conv3(), s.t2, batch, Ho, Wo,
                                              w.conv3_weight, nullptr, s.t3);
    const float* shortcut = a.x;
    if (w.has_projection()) {
      Conv::template conv2d<ConvEpilogue::Bias>(exec, ws.context(), conv, a.layout, w.down(), a.x, batch, H, W,
                                                w.down_weight, w.down_bias, s.shortcut);
      shortcut = s.shortcut;
    }
    float* out = p.prune ? s.full : a.y;
    ResidualMap r;
    r.branch = s.t3;
    r.bias = w.conv3_bias;
    r.shortcut = shortcut;
    r.out = out;
    r.before = a.x;
    r.scores = s.pixel;
    r.scratch = s.partials;
    r.batch = batch;
    r.channels = w.out_channels;
    r.pixels = n;
    r.layout = a.layout;
    if (!p.score) return B::template residual_map<Importance, false>(exec, r);
    B::template residual_map<Importance, true>(exec, r);

    LineScoreParams lines;
    lines.before = a.x;
    lines.after = out;
    lines.batch = batch;
    lines.channels = w.out_channels;
    lines.height = Ho;
    lines.width = Wo;
    lines.pixel_scores = s.pixel;
    lines.row_scores = a.row_scores ? a.row_scores : s.rows;
    lines.col_scores = a.col_scores ? a.col_scores : s.cols;
    B::line_means(exec, lines);
    if (!p.prune) return;

    int* rows = a.kept_rows ? a.kept_rows : s.row_idx;
    int* cols = a.kept_cols ? a.kept_cols : s.col_idx;
    B::select_top(exec, SelectParams::contiguous(lines.row_scores, rows, batch, Ho, p.keep_rows, 0));
    B::select_top(exec, SelectParams::contiguous(lines.col_scores, cols, batch, Wo, p.keep_cols, 0));
    B::remove_lines(exec, a.layout, line_removal(w, a, p, out, rows, cols));
  }

 private:
  // The forward's buffers, carved from a workspace in workspace_extent's
  // order. The partial sums come first: the arena's own alignment suits
  // any Importance::Accum.
  struct Scratch {
    float *t1, *t2, *t3, *shortcut, *full;
    float *partials, *pixel, *rows, *cols;
    int *row_idx, *col_idx;

    template <class Exec, class T>
    static Scratch carve(const Workspace<Exec, T>& ws, const BottleneckWeights& w, std::int64_t batch,
                         std::int64_t height, std::int64_t width) {
      const std::int64_t Ho = w.conv2().out_size(height), Wo = w.conv2().out_size(width), n = Ho * Wo;
      const std::int64_t map = batch * w.out_channels * n;
      Scratch s;
      s.t1 = ws.values();
      s.t2 = s.t1 + batch * w.mid_channels * height * width;
      s.t3 = s.t2 + batch * w.mid_channels * n;
      s.shortcut = s.t3 + map;
      s.full = s.shortcut + (w.has_projection() ? map : 0);
      const std::int64_t partials = Backend<Exec>::template residual_map_scratch<Importance>(batch, n, w.out_channels);
      s.partials = partials ? ws.floats() : nullptr;
      s.pixel = ws.floats() + partials;
      s.rows = s.pixel + batch * n;
      s.cols = s.rows + batch * Ho;
      s.row_idx = ws.ints();
      s.col_idx = s.row_idx + batch * Ho;
      return s;
    }
  };

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
};

}  // namespace repshift
