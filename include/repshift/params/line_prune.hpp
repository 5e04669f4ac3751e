#pragma once
// Arguments of the line-wise (CnnRows) kernels, shared by the CPU
// (cpu/line_prune.hpp) and CUDA (cuda/line_prune.cuh) paths.

#include <cstdint>

#include "../core/error.hpp"

namespace repshift {

struct LineScoreParams {
  const float* before = nullptr;  // [B, C, H, W]
  const float* after = nullptr;   // [B, C, H, W]
  float* row_scores = nullptr;    // [B, H]
  float* col_scores = nullptr;    // [B, W]
  float* pixel_scores = nullptr;  // [B, H, W]: optional on the CPU, the scratch the CUDA path needs
  void* partials = nullptr;       // CUDA only, optional: cuda::line_scores_scratch_bytes<Metric>(p) bytes
  std::int64_t batch = 0, channels = 0, height = 0, width = 0;

  void check(const char* where) const {
    detail::require_pointer(where, "before", before);
    detail::require_pointer(where, "after", after);
    detail::require_pointer(where, "row_scores", row_scores);
    detail::require_pointer(where, "col_scores", col_scores);
    detail::require_positive(where, "batch", batch);
    detail::require_positive(where, "channels", channels);
    detail::require_positive(where, "height", height);
    detail::require_positive(where, "width", width);
    detail::checked_extent(where, "feature map", detail::checked_extent(where, "feature map", batch, channels, 1, 1),
                           height, width, sizeof(float));
  }
};

struct RemoveLinesParams {
  const float* x = nullptr;      // [B, C, H, W]
  const int* keep_rows = nullptr;  // [B, rows] ascending row indices
  const int* keep_cols = nullptr;  // [B, cols] ascending column indices
  float* out = nullptr;          // [B, C, rows, cols]
  std::int64_t batch = 0, channels = 0, height = 0, width = 0, rows = 0, cols = 0;

  // Pointers and extents: what any path can check on the host.
  void check_shape(const char* where) const {
    detail::require_pointer(where, "x", x);
    detail::require_pointer(where, "keep_rows", keep_rows);
    detail::require_pointer(where, "keep_cols", keep_cols);
    detail::require_pointer(where, "out", out);
    detail::require_positive(where, "batch", batch);
    detail::require_positive(where, "channels", channels);
    detail::require_positive(where, "height", height);
    detail::require_positive(where, "width", width);
    detail::require_positive(where, "rows", rows);
    detail::require_positive(where, "cols", cols);
    detail::require_at_most(where, "rows", rows, "height", height);
    detail::require_at_most(where, "cols", cols, "width", width);
    detail::checked_extent(where, "x", detail::checked_extent(where, "x", batch, channels, 1, 1), height, width,
                           sizeof(float));
  }

  // check_shape, then every index (host memory only).
  void check(const char* where) const {
    check_shape(where);
    auto check_index = [&](const int* idx, std::int64_t n, std::int64_t limit, const char* name) {
      for (std::int64_t i = 0; i < batch * n; ++i) {
        if (idx[i] < 0 || idx[i] >= limit) {
          detail::fail(where, "{}[{}] = {} is outside [0, {})", name, i, idx[i], limit);
        }
      }
    };
    check_index(keep_rows, rows, height, "keep_rows");
    check_index(keep_cols, cols, width, "keep_cols");
  }
};

}  // namespace repshift
