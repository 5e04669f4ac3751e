#pragma once
// Block<CnnRows, Block, Metric, Prune, PreNorm>::forward on the GPU and its
// workspace: the CPU bottleneck (blocks/cnn_block.hpp) with cuDNN
// convolutions (bias + ReLU fused into conv1 and conv2), f32, NCHW:
//   conv1 1x1 + ReLU -> conv2 3x3/stride + ReLU -> conv3 1x1 (raw) ->
//   residual epilogue: y = ReLU(conv3 + bias + shortcut), and in the same
//   pass the per-pixel Metric(y, x) over channels -> row / column means ->
//   top rows and columns per sample (select_top, ascending) -> remove_lines.

#include <cstdint>

#include "../cuda/backend.cuh"
#include "../cuda/cudnn_conv.cuh"
#include "../cuda/device_buffer.cuh"
#include "../cuda/line_prune.cuh"
#include "../cuda/pixel_reduce.cuh"
#include "../entry_points.hpp"
#include "cnn_block.hpp"

namespace repshift {
namespace cuda {

// Device scratch of a bottleneck forward; reserve() allocates, forward()
// refuses a workspace that is too small.
class CnnWorkspace {
 public:
  explicit CnnWorkspace(Dnn& dnn) : dnn_(&dnn) {}

  // Room for `batch` maps of height x width entering a block of weights w.
  void reserve(std::int64_t batch, std::int64_t height, std::int64_t width, const BottleneckWeights& w) {
    const Sizes z = sizes(batch, height, width, w);
    t1.resize(z.t1);
    t2.resize(z.t2);
    t3.resize(z.out);
    shortcut.resize(z.shortcut);
    full.resize(z.out);
    pixel.resize(z.pixel);
    rows.resize(z.rows);
    cols.resize(z.cols);
    row_idx.resize(z.rows);
    col_idx.resize(z.cols);
    partials.resize(z.partials);
  }
  bool fits(std::int64_t batch, std::int64_t height, std::int64_t width, const BottleneckWeights& w) const {
    const Sizes z = sizes(batch, height, width, w);
    return t1.size() >= z.t1 && t2.size() >= z.t2 && t3.size() >= z.out && shortcut.size() >= z.shortcut &&
           full.size() >= z.out && pixel.size() >= z.pixel && rows.size() >= z.rows && cols.size() >= z.cols &&
           row_idx.size() >= z.rows && col_idx.size() >= z.cols && partials.size() >= z.partials;
  }
  Dnn& dnn() const { return *dnn_; }

  DeviceBuffer<float> t1, t2, t3, shortcut, full, pixel, rows, cols;
  DeviceBuffer<int> row_idx, col_idx;
  // The chunked pixel reduction's partial sums (cuda/pixel_reduce.cuh),
  // room for any Metric whose Accum fits kAccumBytes.
  static constexpr std::size_t kAccumBytes = 16;
  DeviceBuffer<unsigned char> partials;

 private:
  struct Sizes {
    std::size_t t1, t2, out, shortcut, pixel, rows, cols, partials;
  };
  static Sizes sizes(std::int64_t batch, std::int64_t height, std::int64_t width, const BottleneckWeights& w) {
    const std::int64_t Ho = w.conv2().out_size(height), Wo = w.conv2().out_size(width), n = Ho * Wo;
    return {std::size_t(batch * w.mid_channels * height * width), std::size_t(batch * w.mid_channels * n),
            std::size_t(batch * w.out_channels * n), std::size_t(w.has_projection() ? batch * w.out_channels * n : 0),
            std::size_t(batch * n), std::size_t(batch * Ho), std::size_t(batch * Wo),
            std::size_t(cuda_tiling::PixelTiling::chunks(batch * n, w.out_channels) * batch * n) * kAccumBytes};
  }
  Dnn* dnn_;
};

}  // namespace cuda

namespace cuda_detail {

}  // namespace cuda_detail

template <class Site, class Metric, class Compress, class Norm>
void Block<policies::CnnRows, Site, Metric, Compress, Norm>::forward(const Cuda& exec, const BottleneckWeights& w,
                                                                    const CnnBlockArgs& a, cuda::CnnWorkspace& ws) {
  constexpr const char* where = "Block<CnnRows>::forward(Cuda)";
  const Plan p = plan(where, w, a);
  if (a.layout != MapLayout::Nchw) detail::fail(where, "layout = NHWC is CPU-only (cuDNN runs NCHW here)");
  const std::int64_t B = a.batch, H = a.height, W = a.width, Ho = p.out_height, Wo = p.out_width, n = Ho * Wo;
  const std::int64_t C = w.out_channels;
  if (!ws.fits(B, H, W, w)) {
    detail::fail(where, "the workspace is smaller than this block's maps (batch " + std::to_string(B) + ", " +
                            std::to_string(H) + "x" + std::to_string(W) + "): call reserve() first");
  }
  cuda::Dnn& dnn = ws.dnn();
  dnn.conv2d<ConvEpilogue::BiasRelu>(exec, w.conv1(), a.x, B, H, W, w.conv1_weight, w.conv1_bias, ws.t1.data());
  dnn.conv2d<ConvEpilogue::BiasRelu>(exec, w.conv2(), static_cast<const float*>(ws.t1.data()), B, H, W,
                                     w.conv2_weight, w.conv2_bias, ws.t2.data());
  dnn.conv2d<ConvEpilogue::None>(exec, w.conv3(), static_cast<const float*>(ws.t2.data()), B, Ho, Wo, w.conv3_weight,
                                 static_cast<const float*>(nullptr), ws.t3.data());
  const float* shortcut = a.x;
  if (w.has_projection()) {
    dnn.conv2d<ConvEpilogue::Bias>(exec, w.down(), a.x, B, H, W, w.down_weight, w.down_bias, ws.shortcut.data());
    shortcut = ws.shortcut.data();
  }
  float* out = p.prune ? ws.full.data() : a.y;
  // out = ReLU(branch + bias[c] + shortcut), with the per-pixel shift
  // against the block input fused (cuda/pixel_reduce.cuh).
  cuda_detail::PixelReduceParams r;
  r.after = ws.t3.data();
  r.bias = w.conv3_bias;
  r.shortcut = shortcut;
  r.out = out;
  r.before = a.x;
  r.scores = ws.pixel.data();
  r.partials = ws.partials.data();
  r.batch = B;
  r.channels = C;
  r.pixels = n;
  static_assert(sizeof(typename Metric::Accum) <= cuda::CnnWorkspace::kAccumBytes, "Metric::Accum too large");
  if (p.score) {
    cuda_detail::pixel_reduce<Metric, true, true>(exec, r, where);
  } else {
    cuda_detail::pixel_reduce<Metric, true, false>(exec, r, where);
  }
  if (!p.score) return;

  LineScoreParams lines;
  lines.before = a.x;
  lines.after = out;
  lines.batch = B;
  lines.channels = C;
  lines.height = Ho;
  lines.width = Wo;
  lines.pixel_scores = ws.pixel.data();
  lines.row_scores = a.row_scores ? a.row_scores : ws.rows.data();
  lines.col_scores = a.col_scores ? a.col_scores : ws.cols.data();
  cuda_detail::line_means(exec, lines);
  if (!p.prune) return;

  int* rows = a.kept_rows ? a.kept_rows : ws.row_idx.data();
  int* cols = a.kept_cols ? a.kept_cols : ws.col_idx.data();
  select_top(exec, static_cast<const float*>(lines.row_scores), rows, int(B), int(Ho), int(p.keep_rows), 0);
  select_top(exec, static_cast<const float*>(lines.col_scores), cols, int(B), int(Wo), int(p.keep_cols), 0);
  cuda::remove_lines(exec, line_removal(w, a, p, out, rows, cols));
}

}  // namespace repshift
