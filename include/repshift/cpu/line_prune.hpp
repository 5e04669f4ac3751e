#pragma once
// Line-wise pruning of feature maps (the CnnRows backbone, ResNet):
//   pixel_shift[b, h, w] = Metric over channels of (after[b, :, h, w], before[b, :, h, w])
//   row_scores[b, h] = mean_w pixel_shift,  col_scores[b, w] = mean_h pixel_shift
// in one pass over both maps (NCHW, contiguous), then per sample the
// kept rows and columns (rs::select_top: best first, ties to the lower
// index, ascending output) and remove_lines, which keeps the map dense:
// [B, C, H, W] -> [B, C, keep_rows, keep_cols].

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../core/exec.hpp"
#include "../params/line_prune.hpp"
#include "../policies/metric.hpp"
#include "parallel.hpp"

namespace repshift {

namespace cpu {

// Row and column means of one sample's pixel shift map (also the tail of
// the bottleneck epilogue, which forms the map itself).
inline void reduce_lines(const LineScoreParams& p, std::int64_t b, const float* pixel) {
  float* rows = p.row_scores + b * p.height;
  float* cols = p.col_scores + b * p.width;
  for (std::int64_t w = 0; w < p.width; ++w) cols[w] = 0.0f;
  for (std::int64_t h = 0; h < p.height; ++h) {
    const float* line = pixel + h * p.width;
    float sum = 0.0f;
    for (std::int64_t w = 0; w < p.width; ++w) sum += line[w], cols[w] += line[w];
    rows[h] = sum / float(p.width);
  }
  for (std::int64_t w = 0; w < p.width; ++w) cols[w] /= float(p.height);
  if (p.pixel_scores) {
    for (std::int64_t i = 0; i < p.height * p.width; ++i) p.pixel_scores[b * p.height * p.width + i] = pixel[i];
  }
}

// Row and column means of the pixel map p.pixel_scores [B, H, W] (written
// by a fused epilogue such as the bottleneck's).
inline void line_means(const Host& host, const LineScoreParams& p) {
  LineScoreParams lines = p;
  lines.pixel_scores = nullptr;  // read here, not copied onto itself
  const std::int64_t hw = p.height * p.width;
#pragma omp parallel for schedule(static) num_threads(thread_count(host))
  for (std::int64_t b = 0; b < p.batch; ++b) reduce_lines(lines, b, p.pixel_scores + b * hw);
}

// Pixel accumulators of one sample's plane: the channel loop is outermost so
// both maps stream through memory once, each pixel's Accum updated in place.
template <class Metric>
void line_scores(const Host& host, const LineScoreParams& p) {
  p.check("line_scores");
  const std::int64_t hw = p.height * p.width;
#pragma omp parallel num_threads(thread_count(host))
  {
    std::vector<typename Metric::Accum> acc(static_cast<std::size_t>(hw));
    std::vector<float> pixel(static_cast<std::size_t>(hw));
#pragma omp for schedule(static)
    for (std::int64_t b = 0; b < p.batch; ++b) {
      for (auto& a : acc) a = Metric::init();
      for (std::int64_t c = 0; c < p.channels; ++c) {
        const float* after = p.after + (b * p.channels + c) * hw;
        const float* before = p.before + (b * p.channels + c) * hw;
        for (std::int64_t i = 0; i < hw; ++i) Metric::accumulate(acc[std::size_t(i)], after[i], before[i]);
      }
      for (std::int64_t i = 0; i < hw; ++i) pixel[std::size_t(i)] = Metric::finalize(acc[std::size_t(i)]);
      reduce_lines(p, b, pixel.data());
    }
  }
}

// Channels last: x [B, height, width, C] -> out [B, rows, cols, C], each
// kept pixel's channel vector copied whole.
inline void remove_lines_nhwc(const Host& host, const RemoveLinesParams& p) {
  p.check("remove_lines_nhwc");
  const std::size_t pixel_bytes = std::size_t(p.channels) * sizeof(float);
#pragma omp parallel for schedule(static) num_threads(thread_count(host))
  for (std::int64_t br = 0; br < p.batch * p.rows; ++br) {
    const std::int64_t b = br / p.rows;
    const int* cols = p.keep_cols + b * p.cols;
    const float* src_row = p.x + (b * p.height + p.keep_rows[br]) * p.width * p.channels;
    float* dst = p.out + br * p.cols * p.channels;
    for (std::int64_t j = 0; j < p.cols; ++j) std::memcpy(dst + j * p.channels, src_row + cols[j] * p.channels, pixel_bytes);
  }
}

inline void remove_lines(const Host& host, const RemoveLinesParams& p) {
  p.check("remove_lines");
#pragma omp parallel for schedule(static) num_threads(thread_count(host))
  for (std::int64_t bc = 0; bc < p.batch * p.channels; ++bc) {
    const std::int64_t b = bc / p.channels;
    const float* plane = p.x + bc * p.height * p.width;
    float* dst = p.out + bc * p.rows * p.cols;
    const int* rows = p.keep_rows + b * p.rows;
    const int* cols = p.keep_cols + b * p.cols;
    for (std::int64_t i = 0; i < p.rows; ++i) {
      const float* src = plane + std::int64_t(rows[i]) * p.width;
      for (std::int64_t j = 0; j < p.cols; ++j) dst[i * p.cols + j] = src[cols[j]];
    }
  }
}

}  // namespace cpu
}  // namespace repshift
