#pragma once
// Launch shapes of the one-thread-per-element kernels (token scores,
// kept-token ranking, patchify, fills).

#include <cstdint>

#include "../core/error.hpp"
#include "tiling.hpp"

namespace repshift {
namespace cuda_detail {

constexpr int kElementwiseThreads = 256;

// One thread per element.
inline unsigned elementwise_grid(const char* where, std::int64_t n) {
  return cuda_detail::grid_blocks(where, "elements", n, kElementwiseThreads);
}

// One CTA row per sample: the grid's y is the sample, x its tokens up to
// the longest.
inline dim3 sample_grid(const char* where, std::int64_t batch, std::int64_t tokens) {
  detail::require_at_most(where, "batch", batch, "65535 (CUDA grid y)", 65535);
  return dim3(cuda_detail::grid_blocks(where, "tokens", tokens, kElementwiseThreads), unsigned(batch));
}

}  // namespace cuda_detail
}  // namespace repshift
