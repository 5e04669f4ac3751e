#pragma once
// Per-pixel Metric reductions over the channels of NCHW maps, for the
// CnnRows backbone: the bottleneck's residual epilogue (out = ReLU(branch +
// bias[c] + shortcut), scored against the block input) and the plain pixel
// shift of rs::cuda::line_scores. Geometry in cuda_detail::PixelTiling: a
// 2-D grid of (32-pixel tiles) x (channel chunks); inside a CTA, 8 slices
// of threads walk a chunk's channels with reads coalesced across pixels,
// their partial sums combine in shared memory, and with more than one
// chunk a second kernel combines the chunks' partials (caller's scratch,
// pixel_partials_bytes) and finalises.

#include <cstdint>
#include <type_traits>

#include "../core/config.hpp"
#include "error.cuh"
#include "exec.cuh"
#include "tiling.hpp"

namespace repshift {
namespace cuda_detail {

struct PixelReduceParams {
  const float* after = nullptr;     // pixel shift: the map after; residual: the branch
  const float* bias = nullptr;      // residual: [C]
  const float* shortcut = nullptr;  // residual: [B, C, n]
  float* out = nullptr;             // residual: [B, C, n]
  const float* before = nullptr;    // [B, C, n], the score's other operand
  float* scores = nullptr;          // [B, n]
  void* partials = nullptr;                      // [chunks, B * n] Accums, when chunks > 1
  std::int64_t batch = 0, channels = 0, pixels = 0;  // pixels per sample: n = H * W
  std::int64_t chunks = 1, chunk_channels = 0;
};

template <class Metric, bool Residual, bool Score>
__global__ void __launch_bounds__(PixelTiling::kThreads) pixel_reduce_kernel(PixelReduceParams p) {
  using Accum = typename Metric::Accum;
  const std::int64_t total = p.batch * p.pixels;
  const std::int64_t i = std::int64_t(blockIdx.x) * PixelTiling::kPixels + threadIdx.x;
  const bool valid = i < total;
  const std::int64_t b = valid ? i / p.pixels : 0, pix = valid ? i % p.pixels : 0;
  const std::int64_t c0 = std::int64_t(blockIdx.y) * p.chunk_channels;
  const std::int64_t c1 = c0 + p.chunk_channels < p.channels ? c0 + p.chunk_channels : p.channels;
  // The maps never alias one another: say so, so loads can be reordered.
  const float* __restrict__ after = p.after;
  const float* __restrict__ bias = p.bias;
  const float* __restrict__ shortcut = p.shortcut;
  const float* __restrict__ before = p.before;
  float* __restrict__ out = p.out;
  Accum acc = Metric::init();
  if (valid) {
    for (std::int64_t c = c0 + threadIdx.y; c < c1; c += PixelTiling::kSlices) {
      const std::int64_t off = (b * p.channels + c) * p.pixels + pix;
      float v;
      if constexpr (Residual) {
        v = fmaxf(after[off] + bias[c] + shortcut[off], 0.0f);
        out[off] = v;
      } else {
        v = after[off];
      }
      if constexpr (Score) Metric::accumulate(acc, v, before[off]);
    }
  }
  if constexpr (Score) {
    __shared__ Accum slices[PixelTiling::kSlices][PixelTiling::kPixels];
    slices[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && valid) {
      for (int s = 1; s < PixelTiling::kSlices; ++s) acc = Metric::combine(acc, slices[s][threadIdx.x]);
      if (p.chunks == 1) {
        p.scores[i] = Metric::finalize(acc);
      } else {
        static_cast<Accum*>(p.partials)[std::int64_t(blockIdx.y) * total + i] = acc;
      }
    }
  }
}

template <class Metric>
__global__ void combine_pixel_partials_kernel(PixelReduceParams p) {
  using Accum = typename Metric::Accum;
  const std::int64_t total = p.batch * p.pixels;
  const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= total) return;
  const Accum* partials = static_cast<const Accum*>(p.partials);
  Accum acc = partials[i];
  for (std::int64_t k = 1; k < p.chunks; ++k) acc = Metric::combine(acc, partials[k * total + i]);
  p.scores[i] = Metric::finalize(acc);
}

// Scratch the chunked reduction needs for batch x pixels pixels of
// `channels`, or for any fewer (a bound: reserve() sizes it once for the
// largest map); 0 when one chunk is all there can be.
template <class Metric>
std::size_t pixel_partials_bytes(std::int64_t batch, std::int64_t pixels, std::int64_t channels) {
  return std::size_t(PixelTiling::partials_bound(batch * pixels, channels)) * sizeof(typename Metric::Accum);
}

// Fills the chunking of p from its shape; without scratch (partials null)
// it falls back to one chunk: correct, only less parallel.
template <class Metric, bool Residual, bool Score>
void pixel_reduce(const Cuda& exec, PixelReduceParams p, const char* where) {
  const std::int64_t total = p.batch * p.pixels;
  if (total == 0) return;
  // Without a score there is nothing to combine, so chunks are free; with
  // one, chunks need the caller's scratch for their partials.
  p.chunks = (!Score || p.partials) ? PixelTiling::chunks(total, p.channels) : 1;
  p.chunk_channels = cuda_detail::blocks_needed(p.channels, p.chunks);
  const dim3 grid(cuda_detail::grid_blocks(where, "pixels", total, PixelTiling::kPixels), unsigned(p.chunks));
  const dim3 block(PixelTiling::kPixels, PixelTiling::kSlices);
  pixel_reduce_kernel<Metric, Residual, Score><<<grid, block, 0, exec.stream>>>(p);
  check_launch("pixel_reduce_kernel");
  if (Score && p.chunks > 1) {
    constexpr int kThreads = 256;
    combine_pixel_partials_kernel<Metric>
        <<<cuda_detail::grid_blocks(where, "pixels", total, kThreads), kThreads, 0, exec.stream>>>(p);
    check_launch("combine_pixel_partials_kernel");
  }
}

}  // namespace cuda_detail
}  // namespace repshift
