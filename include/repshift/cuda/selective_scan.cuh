#pragma once
// CUDA selective scan (Mamba S6, forward) and causal depthwise conv + SiLU,
// the same contract as cpu/selective_scan.hpp (params/selective_scan.hpp).
//
// Scan: one thread per (sample, channel) runs the recurrence with its
// states in registers; a CTA holds kScanThreads channels of one sample, so
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
constexpr int kScanChunk = 32;

__device__ inline float softplus_device(float x) { return x > 20.0f ? x : log1pf(expf(x)); }
__device__ inline float silu_device(float x) { return x / (1.0f + expf(-x)); }

template <ScanDirection Dir, bool Accumulate, int State>
__global__ void __launch_bounds__(kScanThreads) selective_scan_kernel(SelectiveScanParams p) {
  constexpr int kSlots = State > 0 ? State : SelectiveScanParams::kMaxState;
  __shared__ float bc[kScanChunk][2 * kSlots];
  const int S = State > 0 ? State : int(p.state);
  const std::int64_t b = blockIdx.y;
  const std::int64_t d = std::int64_t(blockIdx.x) * kScanThreads + threadIdx.x;
  const bool active = d < p.channels;

  float A[kSlots], h[kSlots];
  for (int n = 0; n < S; ++n) {
    A[n] = active ? -expf(p.A_log[d * p.state + n]) : 0.0f;
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
      for (int n = 0; n < kSlots; ++n) {
        if (State == 0 && n >= S) break;
        h[n] = __expf(delta * A[n]) * h[n] + du * bc[r][n];
        y += h[n] * bc[r][S + n];
      }
      if (p.z) y *= silu_device(p.z[row * p.z_stride + d]);
      y *= p.out_scale;
      float* o = p.out + row * p.out_stride + d;
      *o = Accumulate ? *o + y : y;
    }
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
  // The one runtime -> compile-time switch: Mamba's state 16 keeps h and A in registers.
  if (p.state == 16) {
    cuda_detail::selective_scan_kernel<Dir, Accumulate, 16><<<grid, cuda_detail::kScanThreads, 0, exec.stream>>>(p);
  } else {
    cuda_detail::selective_scan_kernel<Dir, Accumulate, 0><<<grid, cuda_detail::kScanThreads, 0, exec.stream>>>(p);
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
