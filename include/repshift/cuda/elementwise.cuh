#pragma once
// Launch shapes of the one-thread-per-element kernels (token scores,
// kept-token ranking, patchify, fills).

#include <cstdint>

#include <cuda_runtime.h>

#include "../core/error.hpp"
#include "error.cuh"
#include "tiling.hpp"

namespace repshift {
namespace cuda_detail {

constexpr int kElementwiseThreads = 256;

// One thread per element.
inline unsigned elementwise_grid(const char* where, std::int64_t n) {
  return cuda_detail::grid_blocks(where, "elements", n, kElementwiseThreads);
}

// One CTA column per sample: the grid's x is the sample (up to 2^31 - 1),
// y its tokens up to the longest, kElementwiseThreads to a CTA (y holds
// 65535 CTAs: 16.7M tokens).
inline dim3 sample_grid(const char* where, std::int64_t batch, std::int64_t tokens) {
  detail::require_at_most(where, "tokens", tokens, "65535 x 256 (CUDA grid y)", 65535 * kElementwiseThreads);
  return dim3(grid_blocks(where, "batch", batch, 1), unsigned(blocks_needed(tokens, kElementwiseThreads)));
}

// Launches `kernel`, kElementwiseThreads to a CTA, over `grid` (from the two
// above) on `stream`, and checks the launch. An empty grid launches
// nothing: there is no element to touch, and a grid of 0 blocks is a
// launch error.
template <class... Params, class... Args>
void launch_elementwise(const char* where, void (*kernel)(Params...), dim3 grid, cudaStream_t stream,
                        const Args&... args) {
  if (grid.x == 0 || grid.y == 0) return;
  kernel<<<grid, kElementwiseThreads, 0, stream>>>(args...);
  check_launch(where);
}

}  // namespace cuda_detail
}  // namespace repshift
