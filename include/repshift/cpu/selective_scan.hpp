#pragma once
// Mamba's selective scan (S6) and its causal depthwise convolution on the
// CPU, forward, for the SsmScan backbone (Vim).
//
// Per channel d and state n, along the sequence:
//   delta_t = softplus(dt[t, d] + dt_bias[d])
//   h_t[n]  = exp(delta_t A[d, n]) h_{t-1}[n] + delta_t B[t, n] u[t, d]
//   y[t, d] = (sum_n C[t, n] h_t[n] + D[d] u[t, d]) silu(z[t, d])
// with A = -exp(A_log) and h_{-1} = 0. ScanDirection::Backward runs the
// recurrence from the last token to the first, in place: the same as
// flipping the sequence, scanning and flipping back (Vim's backward branch)
// without the copies.
//
// Layout: token-major rows [batch, length, ...] with a token stride each,
// so u / dt / z can be column slices of a wider projection. The state is
// kept in vector registers across channels (kVec channels per task, every
// state its own vector), so the recurrence's exps and FMAs run on full
// vectors; channel tails run the same code on scalars.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "../core/error.hpp"
#include "../core/exec.hpp"
#include "../params/selective_scan.hpp"
#include "math.hpp"
#include "parallel.hpp"

namespace repshift {

namespace cpu {

namespace detail {

template <class V>
inline V load_lanes(const float* p) {
  if constexpr (std::is_same_v<V, float>) return *p;
  else return loadv(p);
}
template <class V>
inline void store_lanes(float* p, V v) {
  if constexpr (std::is_same_v<V, float>) *p = v;
  else storev(p, v);
}

// One sample, channels [d0, d0 + lanes(V)): the whole recurrence with the
// state in registers. At: [N][D], A transposed and exponentiated.
template <ScanDirection Dir, bool Accumulate, int State, class V>
inline void scan_lanes(const SelectiveScanParams& p, const float* At, std::int64_t b, std::int64_t d0) {
  const int S = State > 0 ? State : int(p.state);
  V h[State > 0 ? State : SelectiveScanParams::kMaxState];
  for (int n = 0; n < S; ++n) h[n] = broadcast<V>(0.0f);
  const V bias = p.dt_bias ? load_lanes<V>(p.dt_bias + d0) : broadcast<V>(0.0f);
  const V skip = p.D ? load_lanes<V>(p.D + d0) : broadcast<V>(0.0f);
  for (std::int64_t i = 0; i < p.length; ++i) {
    const std::int64_t t = Dir == ScanDirection::Forward ? i : p.length - 1 - i;
    const std::int64_t row = b * p.length + t;
    const V delta = softplus(load_lanes<V>(p.dt + row * p.dt_stride + d0) + bias);
    const V u = load_lanes<V>(p.u + row * p.u_stride + d0);
    const V du = delta * u;
    const float* Bt = p.B + row * p.bc_stride;
    const float* Ct = p.C + row * p.bc_stride;
    V y = skip * u;
    for (int n = 0; n < S; ++n) {
      h[n] = exp_approx(delta * load_lanes<V>(At + n * p.channels + d0)) * h[n] + du * Bt[n];
      y += h[n] * Ct[n];
    }
    if (p.z) y *= silu(load_lanes<V>(p.z + row * p.z_stride + d0));
    y *= p.out_scale;
    float* o = p.out + row * p.out_stride + d0;
    store_lanes<V>(o, Accumulate ? load_lanes<V>(o) + y : y);
  }
}

template <ScanDirection Dir, bool Accumulate, int State>
void scan_impl(const Host& host, const SelectiveScanParams& p) {
  const std::int64_t D = p.channels;
  std::vector<float> At(std::size_t(p.state * D));
  for (std::int64_t d = 0; d < D; ++d)
    for (std::int64_t n = 0; n < p.state; ++n) At[std::size_t(n * D + d)] = -std::exp(p.A_log[d * p.state + n]);
  const std::int64_t blocks = (D + kVec - 1) / kVec;
#pragma omp parallel for schedule(dynamic, 1) num_threads(thread_count(host))
  for (std::int64_t task = 0; task < p.batch * blocks; ++task) {
    const std::int64_t b = task / blocks, d0 = (task % blocks) * kVec;
    if (d0 + kVec <= D) {
      scan_lanes<Dir, Accumulate, State, vfloat>(p, At.data(), b, d0);
    } else {
      for (std::int64_t d = d0; d < D; ++d) scan_lanes<Dir, Accumulate, State, float>(p, At.data(), b, d);
    }
  }
}

template <ScanDirection Dir, class V>
inline void conv_lanes(const CausalConvParams& p, const float* wt, std::int64_t b, std::int64_t t, std::int64_t d) {
  const std::int64_t K = p.kernel;
  V acc = p.bias ? load_lanes<V>(p.bias + d) : broadcast<V>(0.0f);
  for (std::int64_t k = 0; k < K; ++k) {
    // Forward: taps t-K+1 .. t (causal); Backward: t .. t+K-1, mirrored.
    const std::int64_t src = Dir == ScanDirection::Forward ? t + k - (K - 1) : t - k + (K - 1);
    if (src < 0 || src >= p.length) continue;
    acc += load_lanes<V>(wt + k * p.channels + d) * load_lanes<V>(p.x + (b * p.length + src) * p.x_stride + d);
  }
  store_lanes<V>(p.out + (b * p.length + t) * p.out_stride + d, silu(acc));
}

}  // namespace detail

// out = SiLU(depthwise causal conv1d(x) + bias), per direction.
template <ScanDirection Dir>
void causal_conv1d_silu(const Host& host, const CausalConvParams& p) {
  p.check("causal_conv1d_silu");
  const std::int64_t D = p.channels;
  std::vector<float> wt(std::size_t(p.kernel * D));  // [K][D]: taps contiguous across channels
  for (std::int64_t d = 0; d < D; ++d)
    for (std::int64_t k = 0; k < p.kernel; ++k) wt[std::size_t(k * D + d)] = p.weight[d * p.kernel + k];
#pragma omp parallel for schedule(static) num_threads(cpu::thread_count(host))
  for (std::int64_t row = 0; row < p.batch * p.length; ++row) {
    const std::int64_t b = row / p.length, t = row % p.length;
    std::int64_t d = 0;
    for (; d + kVec <= D; d += kVec) detail::conv_lanes<Dir, vfloat>(p, wt.data(), b, t, d);
    for (; d < D; ++d) detail::conv_lanes<Dir, float>(p, wt.data(), b, t, d);
  }
}

// Writes (Accumulate = false) or adds (true) out_scale * y.
template <ScanDirection Dir, bool Accumulate = false>
void selective_scan(const Host& host, const SelectiveScanParams& p) {
  p.check("selective_scan");
  // The one runtime -> compile-time switch: Mamba's usual state size gets
  // its loop unrolled with the state in registers.
  if (p.state == 16) return detail::scan_impl<Dir, Accumulate, 16>(host, p);
  detail::scan_impl<Dir, Accumulate, 0>(host, p);
}

}  // namespace cpu
}  // namespace repshift
