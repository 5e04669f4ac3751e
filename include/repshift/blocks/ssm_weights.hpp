#pragma once
// Non-owning weights of one Mamba / Vim block, PyTorch layout and Vim's
// tensor names (layers.{i}.mixer.in_proj.weight, ...). A bidirectional
// (Vim "v2") block has a second scan branch (conv1d_b, x_proj_b, dt_proj_b,
// A_b_log, D_b); a plain Mamba block leaves it empty.

#include <cstdint>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../params/rms_norm.hpp"
#include "../params/selective_scan.hpp"

namespace repshift {

// One scan direction: conv -> x_proj -> dt_proj -> selective scan.
struct ScanBranchWeights {
  const float* conv_weight = nullptr;     // [inner, kernel]
  const float* conv_bias = nullptr;       // [inner] or null
  const float* x_proj_weight = nullptr;   // [dt_rank + 2 state, inner]
  const float* dt_proj_weight = nullptr;  // [inner, dt_rank]
  const float* dt_proj_bias = nullptr;    // [inner] or null
  const float* A_log = nullptr;           // [inner, state]
  const float* D = nullptr;               // [inner] or null

  bool present() const { return A_log != nullptr; }
  void check(const char* where, const std::string& prefix) const {
    // require_pointer's message with the prefix, built only on failure.
    auto require = [&](const char* name, const float* ptr) {
      if (ptr == nullptr) detail::fail(where, "{}{} is a null pointer", prefix, name);
    };
    require("conv_weight", conv_weight);
    require("x_proj_weight", x_proj_weight);
    require("dt_proj_weight", dt_proj_weight);
    require("A_log", A_log);
  }
};

struct SsmBlockWeights {
  std::int64_t dim = 0, inner = 0, state = 0, dt_rank = 0, conv_kernel = 0;
  float norm_eps = 1e-5f;
  const float* norm_weight = nullptr;      // [dim] RMSNorm before the mixer
  const float* in_proj_weight = nullptr;   // [2 inner, dim]: x then z
  const float* out_proj_weight = nullptr;  // [dim, inner]
  ScanBranchWeights forward, backward;     // backward.present(): bidirectional (Vim)

  bool bidirectional() const { return backward.present(); }
  RmsNormParams<float> norm() const { return {norm_weight, norm_eps}; }
  std::int64_t proj_width() const { return dt_rank + 2 * state; }

  void check(const char* where) const {
    detail::require_positive(where, "weights.dim", dim);
    detail::require_positive(where, "weights.inner", inner);
    detail::require_positive(where, "weights.state", state);
    detail::require_positive(where, "weights.dt_rank", dt_rank);
    detail::require_positive(where, "weights.conv_kernel", conv_kernel);
    // Bounded before any product of them is taken (workspace rows, proj_width).
    detail::require_int_size(where, "weights.dim", {dim});
    detail::require_int_size(where, "weights.inner", {inner});
    detail::require_int_size(where, "weights.dt_rank", {dt_rank});
    detail::require_int_size(where, "weights.conv_kernel", {conv_kernel});
    detail::require_at_most(where, "weights.state", state, "SelectiveScanParams::kMaxState",
                            SelectiveScanParams::kMaxState);
    detail::require_epsilon(where, "weights.norm_eps", norm_eps);
    detail::require_pointer(where, "weights.norm_weight", norm_weight);
    detail::require_pointer(where, "weights.in_proj_weight", in_proj_weight);
    detail::require_pointer(where, "weights.out_proj_weight", out_proj_weight);
    forward.check(where, "weights.forward.");
    if (backward.present()) backward.check(where, "weights.backward.");
  }
};

// Owning storage of one block, as models keep it.
struct SsmBlockTensors {
  struct Branch {
    std::vector<float> conv_w, conv_b, x_proj_w, dt_proj_w, dt_proj_b, A_log, D;
    ScanBranchWeights view() const {
      if (A_log.empty()) return {};
      return {conv_w.data(), conv_b.empty() ? nullptr : conv_b.data(), x_proj_w.data(), dt_proj_w.data(),
              dt_proj_b.empty() ? nullptr : dt_proj_b.data(), A_log.data(), D.empty() ? nullptr : D.data()};
    }
  };
  std::vector<float> norm_w, in_proj_w, out_proj_w;
  Branch fwd, bwd;

  SsmBlockWeights view(std::int64_t dim, std::int64_t inner, std::int64_t state, std::int64_t dt_rank,
                       std::int64_t conv_kernel, float eps) const {
    SsmBlockWeights v;
    v.dim = dim;
    v.inner = inner;
    v.state = state;
    v.dt_rank = dt_rank;
    v.conv_kernel = conv_kernel;
    v.norm_eps = eps;
    v.norm_weight = norm_w.data();
    v.in_proj_weight = in_proj_w.data();
    v.out_proj_weight = out_proj_w.data();
    v.forward = fwd.view();
    v.backward = bwd.view();
    return v;
  }
};

}  // namespace repshift
