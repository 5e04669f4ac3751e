#pragma once
// CUDA selective scan (Mamba S6, forward) and causal depthwise conv + SiLU,
// the same contract as cpu/selective_scan.hpp (params/selective_scan.hpp).
//
// Scan: one thread per (sample, channel) runs the recurrence with its
// states in registers (a compiled bucket of 8, 16, 32 or 64 slots,
// scan_state_bucket; a state equal to its bucket, as Mamba's 16, runs
// without per-slot guards); a CTA holds kScanThreads channels of one sample, so
// the per-token B_t and C_t, shared by all channels, are staged through
// shared memory kScanChunk tokens at a time (one coalesced load per chunk
// instead of one per channel), while u, dt, z and the output are read and
// written coalesced across channels. Backward scans from the last token.
// No allocations, no synchronisation; errors become CudaError.

#include <cstdint>

#include "../params/selective_scan.hpp"
#include "error.cuh"
#include "exec.cuh"
#include "tiling.hpp"

namespace repshift {
namespace cuda_detail {

constexpr int kScanThreads = 128;
static_assert(SelectiveScanParams::kMaxState == 64, "scan_state_bucket's largest bucket holds kMaxState");
constexpr int kScanChunk = 32;

__device__ inline float softplus_device(float x) { return x > 20.0f ? x : log1pf(expf(x)); }
__device__ inline float silu_device(float x) { return x / (1.0f + expf(-x)); }

template <ScanDirection Dir, bool Accumulate, int Slots, bool Exact>
__global__ void __launch_bounds__(kScanThreads) selective_scan_kernel(SelectiveScanParams p) {
  __shared__ float bc[kScanChunk][2 * Slots];
  const int S = Exact ? Slots : int(p.state);  // <= Slots
  const std::int64_t b = blockIdx.y;
  const std::int64_t d = std::int64_t(blockIdx.x) * kScanThreads + threadIdx.x;
  const bool active = d < p.channels;

  // Indexed only by unrolled constants, so both stay in registers.
  float A[Slots], h[Slots];
#pragma unroll
  for (int n = 0; n < Slots; ++n) {
    A[n] = active && (Exact || n < S) ? -expf(p.A_log[d * S + n]) : 0.0f;
    h[n] = 0.0f;
  }
  const float bias = active && p.dt_bias ? p.dt_bias[d] : 0.0f;
  const float skip = active && p.D ? p.D[d] : 0.0f;

  for (std::int64_t i0 = 0; i0 < p.length; i0 += kScanChunk) {
    const int rows = int(p.length - i0 < kScanChunk ? p.length - i0 : kScanChunk);
    __syncthreads();  // the previous chunk is consumed
    for (int e = threadIdx.x; e < rows * 2 * S; e += kScanThreads) {
      const int r = e / (2 * S), j = e % (2 * S);
      const std::int64_t t = Dir == ScanDirection::Forward ? i0 + r : p.length - 1 - (i0 + r);
      const float* src = (j < S ? p.B : p.C) + (b * p.length + t) * p.bc_stride;
      bc[r][j] = src[j < S ? j : j - S];
    }
    __syncthreads();
    if (!active) continue;
    for (int r = 0; r < rows; ++r) {
      const std::int64_t t = Dir == ScanDirection::Forward ? i0 + r : p.length - 1 - (i0 + r);
      const std::int64_t row = b * p.length + t;
      const float delta = softplus_device(p.dt[row * p.dt_stride + d] + bias);
      const float u = p.u[row * p.u_stride + d];
      const float du = delta * u;
      float y = skip * u;
#pragma unroll
      for (int n = 0; n < Slots; ++n) {
        if (Exact || n < S) {
          // expf, not __expf: the approximate one's error grows with
          // |delta A| and compounds along the sequence, and Vim's kept
          // tokens are ranked by these outputs (the CPU's exp is ~1 ulp).
          h[n] = expf(delta * A[n]) * h[n] + du * bc[r][n];
          y += h[n] * bc[r][S + n];
        }
      }
      if (p.z) y *= silu_device(p.z[row * p.z_stride + d]);
      y *= p.out_scale;
      float* o = p.out + row * p.out_stride + d;
      *o = Accumulate ? *o + y : y;
    }
  }
}

// A state equal to its bucket needs no per-slot guard.
template <ScanDirection Dir, bool Accumulate, int Slots>
void launch_selective_scan(const Cuda& exec, const SelectiveScanParams& p, dim3 grid) {
  if (p.state == Slots) {
    selective_scan_kernel<Dir, Accumulate, Slots, true><<<grid, kScanThreads, 0, exec.stream>>>(p);
  } else {
    selective_scan_kernel<Dir, Accumulate, Slots, false><<<grid, kScanThreads, 0, exec.stream>>>(p);
  }
}

template <ScanDirection Dir>
__global__ void causal_conv1d_silu_kernel(CausalConvParams p) {
  const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= p.batch * p.length * p.channels) return;
  const std::int64_t d = i % p.channels, row = i / p.channels, t = row % p.length, b = row / p.length;
  float acc = p.bias ? p.bias[d] : 0.0f;
  for (std::int64_t k = 0; k < p.kernel; ++k) {
    const std::int64_t src = Dir == ScanDirection::Forward ? t + k - (p.kernel - 1) : t - k + (p.kernel - 1);
    if (src >= 0 && src < p.length) acc += p.weight[d * p.kernel + k] * p.x[(b * p.length + src) * p.x_stride + d];
  }
  p.out[row * p.out_stride + d] = silu_device(acc);
}

}  // namespace cuda_detail

namespace cuda {

// Writes (Accumulate = false) or adds out_scale * y, enqueued on exec.stream.
template <ScanDirection Dir, bool Accumulate = false>
void selective_scan(const Cuda& exec, const SelectiveScanParams& p) {
  p.check("selective_scan");
  if (p.batch > 65535) detail::fail("selective_scan", "batch = {} exceeds 65535 (grid.y)", p.batch);
  const dim3 grid(unsigned((p.channels + cuda_detail::kScanThreads - 1) / cuda_detail::kScanThreads), unsigned(p.batch));
  // The one runtime -> compile-time switch: the state's register bucket.
  switch (cuda_detail::scan_state_bucket(p.state)) {
    case 8: cuda_detail::launch_selective_scan<Dir, Accumulate, 8>(exec, p, grid); break;
    case 16: cuda_detail::launch_selective_scan<Dir, Accumulate, 16>(exec, p, grid); break;
    case 32: cuda_detail::launch_selective_scan<Dir, Accumulate, 32>(exec, p, grid); break;
    case 64: cuda_detail::launch_selective_scan<Dir, Accumulate, 64>(exec, p, grid); break;
    default: detail::fail("selective_scan", "state = {} has no register bucket (1..64)", p.state);
  }
  cuda_detail::check_launch("selective_scan_kernel");
}

template <ScanDirection Dir>
void causal_conv1d_silu(const Cuda& exec, const CausalConvParams& p) {
  p.check("causal_conv1d_silu");
  constexpr int kThreads = 256;
  const unsigned grid =
      cuda_detail::grid_blocks("causal_conv1d_silu", "batch * length * channels", p.batch * p.length * p.channels, kThreads);
  cuda_detail::causal_conv1d_silu_kernel<Dir><<<grid, kThreads, 0, exec.stream>>>(p);
  cuda_detail::check_launch("causal_conv1d_silu_kernel");
}

}  // namespace cuda
}  // namespace repshift
