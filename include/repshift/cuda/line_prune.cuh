#pragma once
// CUDA line-wise pruning (CnnRows), the contract of cpu/line_prune.hpp:
// pixel shift (cuda/pixel_reduce.cuh: a 2-D grid of pixel tiles x channel
// chunks, reads coalesced across pixels, partial sums combined after),
// then row means and column means (one thread per line), then
// remove_lines (one thread per output element). The pixel map is the caller's
// LineScoreParams::pixel_scores: no allocations, no synchronisation.

#include <cstdint>

#include "../params/line_prune.hpp"
#include "../policies/metric.hpp"
#include "error.cuh"
#include "exec.cuh"
#include "status.cuh"
#include "pixel_reduce.cuh"

namespace repshift {
namespace cuda_detail {

template <int Threads>
__global__ void __launch_bounds__(Threads)
    line_means_kernel(LineScoreParams p) {
  // Threads [0, B H): row means; [B H, B H + B W): column means.
  const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const std::int64_t hw = p.height * p.width;
  if (i < p.batch * p.height) {
    const float* line = p.pixel_scores + (i / p.height) * hw + (i % p.height) * p.width;
    float s = 0.0f;
    for (std::int64_t w = 0; w < p.width; ++w) s += line[w];
    p.row_scores[i] = s / float(p.width);
  } else if (i < p.batch * (p.height + p.width)) {
    const std::int64_t j = i - p.batch * p.height, b = j / p.width, w = j % p.width;
    float s = 0.0f;
    for (std::int64_t h = 0; h < p.height; ++h) s += p.pixel_scores[b * hw + h * p.width + w];
    p.col_scores[j] = s / float(p.height);
  }
}

// An index out of range is never read through: the element is zeroed and
// the first such index recorded in status (code 2) for throw_if_status.
template <int Threads>
__global__ void __launch_bounds__(Threads)
    remove_lines_kernel(RemoveLinesParams p, int* status) {
  const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= p.batch * p.channels * p.rows * p.cols) return;
  const std::int64_t j = i % p.cols, r = (i / p.cols) % p.rows, bc = i / (p.cols * p.rows), b = bc / p.channels;
  const int row = p.keep_rows[b * p.rows + r], col = p.keep_cols[b * p.cols + j];
  const bool row_ok = row >= 0 && row < p.height, col_ok = col >= 0 && col < p.width;
  if (!(row_ok && col_ok)) {
    record_status(status, kStatusLineIndex, row_ok ? 1 : 0, int(row_ok ? b * p.cols + j : b * p.rows + r),
                  row_ok ? col : row);
    p.out[i] = 0.0f;
    return;
  }
  p.out[i] = p.x[(bc * p.height + row) * p.width + col];
}

// Row and column means of p.pixel_scores (written by pixel_shift_kernel or
// by a fused epilogue such as the bottleneck's).
inline void line_means(const Cuda& exec, const LineScoreParams& p) {
  constexpr int kThreads = 256;
  line_means_kernel<kThreads>
      <<<cuda_detail::grid_blocks("line_means", "lines", p.batch * (p.height + p.width), kThreads), kThreads, 0,
         exec.stream>>>(p);
  check_launch("line_means_kernel");
}

}  // namespace cuda_detail

namespace cuda {

// Bytes of LineScoreParams::partials that let the pixel shift split the
// channels over more CTAs (cuda/pixel_reduce.cuh); 0 when one chunk is as
// fast. Without them the reduction still runs, in one chunk.
template <class Metric>
std::size_t line_scores_scratch_bytes(const LineScoreParams& p) {
  return cuda_detail::pixel_partials_bytes<Metric>(p.batch, p.height * p.width, p.channels);
}

template <class Metric>
void line_scores(const Cuda& exec, const LineScoreParams& p) {
  p.check("line_scores");
  detail::require_pointer("line_scores", "pixel_scores (the CUDA path's scratch)", p.pixel_scores);
  cuda_detail::PixelReduceParams r;
  r.after = p.after;
  r.before = p.before;
  r.scores = p.pixel_scores;
  r.partials = p.partials;
  r.batch = p.batch;
  r.channels = p.channels;
  r.pixels = p.height * p.width;
  cuda_detail::pixel_reduce<Metric, false, true>(exec, r, "line_scores");
  cuda_detail::line_means(exec, p);
}

// Indices are device data: out-of-range ones are zeroed and reported through
// exec.status / rs::cuda::throw_if_status, as gather_tokens does.
inline void remove_lines(const Cuda& exec, const RemoveLinesParams& p) {
  constexpr const char* where = "remove_lines";
  p.check_shape(where);
  constexpr int kThreads = 256;
  cuda_detail::remove_lines_kernel<kThreads>
      <<<cuda_detail::grid_blocks(where, "output elements", p.batch * p.channels * p.rows * p.cols, kThreads),
         kThreads, 0, exec.stream>>>(p, exec.status);
  cuda_detail::check_launch("remove_lines_kernel");
}

}  // namespace cuda
}  // namespace repshift
