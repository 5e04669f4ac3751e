#pragma once
// Row epilogues of the blocks on the GPU. The cuBLASLt GEMMs add their
// bias themselves, so the bias operands here are usually null:
//   bias_gelu:     h = GELU(h + bias), exact (erf) as timm's nn.GELU (MLP fc1)
//   residual:      sum = residual + branch (+ bias);
//                  out = LN(sum) (post-norm) or sum (pre-norm);
//                  ln_out = LN(out) for the next sub-layer (pre-norm);
//                  score = Metric(after, before) on the same row.
// One warp per row; the score rides on the loads the residual add makes
// anyway (ScoreOperands picks the pair at compile time), so scoring costs
// arithmetic, not a pass over memory. Aligned rows of up to 1024 channels
// stay in registers between the add, the LayerNorm statistics and the
// stores, moved 16 bytes at a time (cuda/warp_row.cuh); other rows take
// the scalar kernel, whose extra LayerNorm passes re-read the row from L1.
// bias_gelu moves 16 bytes per thread when h and bias allow.

#include <cstdint>

#include "../params/residual_rows.hpp"
#include "dtype.cuh"
#include "error.cuh"
#include "exec.cuh"
#include "layer_norm.cuh"
#include "tiling.hpp"
#include "warp_reduce.cuh"
#include "warp_row.cuh"

namespace repshift {
namespace cuda_detail {

__device__ __forceinline__ float gelu_erf(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }

template <class T>
__global__ void bias_gelu_kernel(T* h, std::int64_t n, const T* bias, std::int64_t cols) {
  const std::int64_t stride = std::int64_t(gridDim.x) * blockDim.x;
  for (std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    h[i] = from_float<T>(gelu_erf(to_float(h[i]) + (bias ? to_float(bias[i % cols]) : 0.0f)));
  }
}

// One 16-byte vector per thread and step: n and cols whole vectors.
template <class T>
__global__ void bias_gelu_vector_kernel(T* h, std::int64_t n, const T* bias, std::int64_t cols) {
  constexpr int kV = kVectorElems<T>;
  const std::int64_t stride = (std::int64_t(gridDim.x) * blockDim.x) * kV;
  for (std::int64_t i = (std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x) * kV; i < n; i += stride) {
    float x[kV], b[kV] = {};
    load_vector(h + i, x);
    if (bias) load_vector(bias + i % cols, b);
#pragma unroll
    for (int e = 0; e < kV; ++e) x[e] = gelu_erf(x[e] + b[e]);
    store_vector(h + i, x);
  }
}

// h [rows, cols] = GELU(h + bias); bias may be null.
template <class T>
void bias_gelu(const Cuda& exec, T* h, std::int64_t rows, std::int64_t cols, const T* bias) {
  const std::int64_t n = rows * cols;
  if (n == 0) return;
  constexpr int kThreads = 256;
  const bool vector = rows_vectorisable<T>(address_bits(h) | address_bits(bias), cols, 0, 0);
  const std::int64_t threads = vector ? n / kVectorElems<T> : n;
  const std::int64_t blocks = (threads + kThreads - 1) / kThreads;
  const unsigned grid = unsigned(blocks < 65536 ? blocks : 65536);  // grid-stride beyond that
  // The one runtime -> template switch: vector or scalar elements.
  auto* kernel = vector ? &bias_gelu_vector_kernel<T> : &bias_gelu_kernel<T>;
  kernel<<<grid, kThreads, 0, exec.stream>>>(h, n, bias, cols);
  check_launch("bias_gelu_kernel");
}

using repshift::ResidualRows;

template <class Metric, ScoreOperands Score, bool PostLN, class T>
__global__ void __launch_bounds__(cuda_detail::ScoreTiling::kThreads) residual_kernel(ResidualRows<T> e) {
  const std::int64_t row = cuda_detail::warp_row_index();
  if (row >= e.rows) return;
  const int lane = threadIdx.x % cuda_detail::kWarp;
  const std::int64_t C = e.channels;
  const T* branch_row = e.branch + row * C;
  const auto branch = [&](std::int64_t c) { return to_float(branch_row[c]) + (e.bias ? to_float(e.bias[c]) : 0.0f); };
  const T* res = e.residual + row * C;
  T* out = e.out + row * C;
  typename Metric::Accum acc = Metric::init();

  if constexpr (PostLN) {
    // out = LN(res + branch): out is written only in the last pass, so it
    // may alias res.
    const float2 stats = warp_row_stats([&](std::int64_t c) { return to_float(res[c]) + branch(c); }, C,
                                        e.ln_post.eps);
    for (std::int64_t c = lane; c < C; c += cuda_detail::kWarp) {
      const float b = branch(c), r = to_float(res[c]);
      if constexpr (Score == ScoreOperands::BranchVsResidual) Metric::accumulate(acc, b, r);
      if constexpr (Score == ScoreOperands::SumVsResidual) Metric::accumulate(acc, r + b, r);
      const T y = from_float<T>((r + b - stats.x) * stats.y * to_float(e.ln_post.gamma[c]) + to_float(e.ln_post.beta[c]));
      out[c] = y;
      if constexpr (Score == ScoreOperands::OutputVsBlockInput) {
        Metric::accumulate(acc, to_float(y), to_float(e.block_input[row * C + c]));
      }
    }
  } else {
    for (std::int64_t c = lane; c < C; c += cuda_detail::kWarp) {
      const float b = branch(c), r = to_float(res[c]);
      if constexpr (Score == ScoreOperands::BranchVsResidual) Metric::accumulate(acc, b, r);
      if constexpr (Score == ScoreOperands::SumVsResidual) Metric::accumulate(acc, r + b, r);
      const T y = from_float<T>(r + b);
      out[c] = y;
      if constexpr (Score == ScoreOperands::OutputVsBlockInput) {
        Metric::accumulate(acc, to_float(y), to_float(e.block_input[row * C + c]));
      }
    }
    if (e.ln_out) {
      // Each lane re-reads only the elements it wrote: no fence needed.
      const float2 stats = warp_row_stats([&](std::int64_t c) { return to_float(out[c]); }, C, e.ln_next.eps);
      T* ln = e.ln_out + row * C;
      for (std::int64_t c = lane; c < C; c += cuda_detail::kWarp) {
        ln[c] = from_float<T>((to_float(out[c]) - stats.x) * stats.y * to_float(e.ln_next.gamma[c]) +
                              to_float(e.ln_next.beta[c]));
      }
    }
  }
  if constexpr (Score != ScoreOperands::None) {
    acc = warp_combine<Metric>(acc);
    if (lane == 0) e.scores[row] = Metric::finalize(acc);
  }
}

template <class Metric, ScoreOperands Score, bool PostLN, class T>
__global__ void __launch_bounds__(cuda_detail::ScoreTiling::kThreads) residual_vector_kernel(ResidualRows<T> e) {
  const std::int64_t row = cuda_detail::warp_row_index();
  if (row >= e.rows) return;
  using Row = WarpRow<T>;
  constexpr int kW = Row::kWidth;
  const std::int64_t C = e.channels, at = row * C;
  const Row line(C);
  typename Metric::Accum acc = Metric::init();
  // Metric of (after, before) over this lane's channels of `other`'s row.
  auto score_against = [&](const T* other, const typename Row::Values& after) {
#pragma unroll
    for (int s = 0; s < Row::kSlots; ++s) {
      if (!line.holds(s)) continue;
      float before[kW];
      load_vector(other + at + line.channel(s), before);
#pragma unroll
      for (int i = 0; i < kW; ++i) Metric::accumulate(acc, after[s][i], before[i]);
    }
  };

  typename Row::Values sum;  // residual + branch (+ bias)
#pragma unroll
  for (int s = 0; s < Row::kSlots; ++s) {
    float b[kW] = {}, r[kW] = {}, bias[kW] = {};
    if (line.holds(s)) {
      load_vector(e.branch + at + line.channel(s), b);
      load_vector(e.residual + at + line.channel(s), r);
      if (e.bias) load_vector(e.bias + line.channel(s), bias);
    }
#pragma unroll
    for (int i = 0; i < kW; ++i) {
      b[i] += bias[i];
      sum[s][i] = r[i] + b[i];
      if (!line.holds(s)) continue;
      if constexpr (Score == ScoreOperands::BranchVsResidual) Metric::accumulate(acc, b[i], r[i]);
      if constexpr (Score == ScoreOperands::SumVsResidual) Metric::accumulate(acc, sum[s][i], r[i]);
    }
  }

  if constexpr (PostLN) {
    // out = LN(res + branch); the whole row is in registers, so out may
    // alias res.
    const float2 stats = line.layer_norm_stats(sum, C, e.ln_post.eps);
    line.store_layer_norm(e.out + at, sum, stats, e.ln_post.gamma, e.ln_post.beta);
    if constexpr (Score == ScoreOperands::OutputVsBlockInput) {
      typename Row::Values y;
      line.load(e.out + at, y);  // as stored; each lane reads back only what it wrote
      score_against(e.block_input, y);
    }
  } else {
    Row::round(sum);  // out as stored: the score and LN(out) read these values
    line.store(e.out + at, sum);
    if constexpr (Score == ScoreOperands::OutputVsBlockInput) score_against(e.block_input, sum);
    if (e.ln_out) {
      line.store_layer_norm(e.ln_out + at, sum, line.layer_norm_stats(sum, C, e.ln_next.eps), e.ln_next.gamma,
                            e.ln_next.beta);
    }
  }
  if constexpr (Score != ScoreOperands::None) {
    acc = warp_combine<Metric>(acc);
    if (line.lane == 0) e.scores[row] = Metric::finalize(acc);
  }
}

template <class Metric, ScoreOperands Score, bool PostLN, class T>
void residual_epilogue(const Cuda& exec, const ResidualRows<T>& e) {
  if (e.rows == 0) return;
  const unsigned grid = cuda_detail::row_grid("residual_epilogue", e.rows);
  const LayerNormParams<T>& ln = PostLN ? e.ln_post : e.ln_next;
  const bool ln_used = PostLN || e.ln_out;
  const std::uintptr_t addresses = address_bits(e.branch) | address_bits(e.bias) | address_bits(e.residual) |
                                   address_bits(e.out) | address_bits(e.block_input) | address_bits(e.ln_out) |
                                   (ln_used ? address_bits(ln.gamma) | address_bits(ln.beta) : 0);
  // The one runtime -> template switch: register rows or scalar rows.
  auto* kernel = warp_row_fits<T>(e.channels, addresses, e.channels) ? &residual_vector_kernel<Metric, Score, PostLN, T>
                                                                     : &residual_kernel<Metric, Score, PostLN, T>;
  kernel<<<grid, cuda_detail::ScoreTiling::kThreads, 0, exec.stream>>>(e);
  check_launch("residual_kernel");
}

}  // namespace cuda_detail
}  // namespace repshift
