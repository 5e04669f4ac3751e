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
#include "cpu_isa.hpp"
#include "math.hpp"
#include "parallel.hpp"
#include "simd_targets.hpp"

namespace repshift {

namespace cpu {

#include "target/selective_scan.inl"

namespace detail {

template <ScanDirection Dir, bool Accumulate, int State>
void scan_impl(const Host& host, const SelectiveScanParams& p, CpuIsa isa) {
  const std::int64_t D = p.channels;
  std::vector<float> At(std::size_t(p.state * D));
  for (std::int64_t d = 0; d < D; ++d)
    for (std::int64_t n = 0; n < p.state; ++n) At[std::size_t(n * D + d)] = -std::exp(p.A_log[d * p.state + n]);
  with_cpu_target(isa, [&](auto target) {
    const std::int64_t lanes = decltype(target)::kLanes, blocks = (D + lanes - 1) / lanes;
#pragma omp parallel for schedule(dynamic, 1) num_threads(thread_count(host))
    for (std::int64_t task = 0; task < p.batch * blocks; ++task)
      scan_block<Dir, Accumulate, State>(target, p, At.data(), task / blocks, (task % blocks) * lanes);
  });
}

}  // namespace detail

// out = SiLU(depthwise causal conv1d(x) + bias), per direction. isa: as
// flash_attention's (the vector copy to run, capped at what this CPU runs).
template <ScanDirection Dir>
void causal_conv1d_silu(const Host& host, const CausalConvParams& p, CpuIsa isa = active_cpu_isa()) {
  p.check("causal_conv1d_silu");
  const std::int64_t D = p.channels;
  std::vector<float> wt(std::size_t(p.kernel * D));  // [K][D]: taps contiguous across channels
  for (std::int64_t d = 0; d < D; ++d)
    for (std::int64_t k = 0; k < p.kernel; ++k) wt[std::size_t(k * D + d)] = p.weight[d * p.kernel + k];
  with_cpu_target(isa, [&](auto target) {
#pragma omp parallel for schedule(static) num_threads(cpu::thread_count(host))
    for (std::int64_t row = 0; row < p.batch * p.length; ++row) conv_row<Dir>(target, p, wt.data(), row);
  });
}

// Writes (Accumulate = false) or adds (true) out_scale * y.
template <ScanDirection Dir, bool Accumulate = false>
void selective_scan(const Host& host, const SelectiveScanParams& p, CpuIsa isa = active_cpu_isa()) {
  p.check("selective_scan");
  // Mamba's usual state size gets its loop unrolled with the state in registers.
  if (p.state == 16) return detail::scan_impl<Dir, Accumulate, 16>(host, p, isa);
  detail::scan_impl<Dir, Accumulate, 0>(host, p, isa);
}

}  // namespace cpu
}  // namespace repshift
