#pragma once
// Arguments of the selective scan and the causal depthwise conv (the SsmScan
// backbone), shared by the CPU (cpu/selective_scan.hpp) and CUDA
// (cuda/selective_scan.cuh) kernels: plain C++, no SIMD or CUDA types.

#include <cstdint>
#include <string>

#include "../core/error.hpp"

namespace repshift {

enum class ScanDirection { Forward, Backward };

struct SelectiveScanParams {
  static constexpr int kMaxState = 64;
  const float* u = nullptr;           // [B, L, D] scan input, token stride u_stride
  const float* dt = nullptr;          // [B, L, D] raw delta (before bias and softplus), token stride dt_stride
  const float* dt_bias = nullptr;     // [D] or null
  const float* A_log = nullptr;       // [D, N]: A = -exp(A_log)
  const float* B = nullptr;           // [B, L, N], token stride bc_stride
  const float* C = nullptr;           // [B, L, N], token stride bc_stride
  const float* D = nullptr;           // [D] skip, or null
  const float* z = nullptr;           // [B, L, D] gate, token stride z_stride, or null
  float* out = nullptr;               // [B, L, D], token stride out_stride
  float out_scale = 1.0f;             // y is scaled by this before it is written (or added)
  std::int64_t batch = 0, length = 0, channels = 0, state = 0;
  std::int64_t u_stride = 0, dt_stride = 0, bc_stride = 0, z_stride = 0, out_stride = 0;

  void check(const char* where) const {
    detail::require_pointer(where, "u", u);
    detail::require_pointer(where, "dt", dt);
    detail::require_pointer(where, "A_log", A_log);
    detail::require_pointer(where, "B", B);
    detail::require_pointer(where, "C", C);
    detail::require_pointer(where, "out", out);
    detail::require_positive(where, "batch", batch);
    detail::require_positive(where, "length", length);
    detail::require_positive(where, "channels", channels);
    detail::require_positive(where, "state", state);
    detail::require_at_most(where, "state", state, "kMaxState", kMaxState);
    detail::require_at_most(where, "channels", channels, "u_stride", u_stride);
    detail::require_at_most(where, "channels", channels, "dt_stride", dt_stride);
    detail::require_at_most(where, "state", state, "bc_stride", bc_stride);
    detail::require_at_most(where, "channels", channels, "out_stride", out_stride);
    if (z) detail::require_at_most(where, "channels", channels, "z_stride", z_stride);
    // Every row the kernels address (row x stride) stays within 64 bits.
    detail::checked_extent(where, "u", batch, length, u_stride, sizeof(float));
    detail::checked_extent(where, "dt", batch, length, dt_stride, sizeof(float));
    detail::checked_extent(where, "B and C", batch, length, bc_stride, sizeof(float));
    detail::checked_extent(where, "out", batch, length, out_stride, sizeof(float));
    if (z) detail::checked_extent(where, "z", batch, length, z_stride, sizeof(float));
  }
};

struct CausalConvParams {
  const float* x = nullptr;       // [B, L, D], token stride x_stride
  const float* weight = nullptr;  // [D, K] (PyTorch's depthwise Conv1d [D, 1, K])
  const float* bias = nullptr;    // [D] or null
  float* out = nullptr;           // [B, L, D], token stride out_stride
  std::int64_t batch = 0, length = 0, channels = 0, kernel = 0;
  std::int64_t x_stride = 0, out_stride = 0;

  void check(const char* where) const {
    detail::require_pointer(where, "x", x);
    detail::require_pointer(where, "weight", weight);
    detail::require_pointer(where, "out", out);
    detail::require_positive(where, "batch", batch);
    detail::require_positive(where, "length", length);
    detail::require_positive(where, "channels", channels);
    detail::require_positive(where, "kernel", kernel);
    detail::require_at_most(where, "channels", channels, "x_stride", x_stride);
    detail::require_at_most(where, "channels", channels, "out_stride", out_stride);
    detail::checked_extent(where, "x", batch, length, x_stride, sizeof(float));
    detail::checked_extent(where, "out", batch, length, out_stride, sizeof(float));
    detail::checked_extent(where, "weight", channels, kernel, 1, sizeof(float));
  }
};

}  // namespace repshift
