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
// arithmetic, not a pass over memory. The extra passes of LayerNorm re-read
// a row the warp just touched, from L1.

#include <cstdint>

#include "../params/residual_rows.hpp"
#include "dtype.cuh"
#include "error.cuh"
#include "exec.cuh"
#include "layer_norm.cuh"
#include "tiling.hpp"
#include "warp_reduce.cuh"

namespace repshift {
namespace cuda_detail {

template <class T>
__global__ void bias_gelu_kernel(T* h, std::int64_t n, const T* bias, std::int64_t cols) {
  const std::int64_t stride = std::int64_t(gridDim.x) * blockDim.x;
  for (std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const float x = to_float(h[i]) + (bias ? to_float(bias[i % cols]) : 0.0f);
    h[i] = from_float<T>(0.5f * x * (1.0f + erff(x * 0.70710678118654752f)));
  }
}

// h [rows, cols] = GELU(h + bias); bias may be null.
template <class T>
void bias_gelu(const Cuda& exec, T* h, std::int64_t rows, std::int64_t cols, const T* bias) {
  const std::int64_t n = rows * cols;
  if (n == 0) return;
  constexpr int kThreads = 256;
  const std::int64_t blocks = (n + kThreads - 1) / kThreads;
  const unsigned grid = unsigned(blocks < 65536 ? blocks : 65536);  // grid-stride beyond that
  bias_gelu_kernel<T><<<grid, kThreads, 0, exec.stream>>>(h, n, bias, cols);
  check_launch("bias_gelu_kernel");
}

using repshift::ResidualRows;

template <class Metric, ScoreOperands Score, bool PostLN, class T>
__global__ void __launch_bounds__(cuda_detail::ScoreTiling::kThreads) residual_kernel(ResidualRows<T> e) {
  const std::int64_t row = std::int64_t(blockIdx.x) * cuda_detail::ScoreTiling::kWarps + threadIdx.x / cuda_detail::kWarp;
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
void residual_epilogue(const Cuda& exec, const ResidualRows<T>& e) {
  if (e.rows == 0) return;
  residual_kernel<Metric, Score, PostLN, T>
      <<<cuda_detail::row_grid("residual_epilogue", e.rows), cuda_detail::ScoreTiling::kThreads, 0, exec.stream>>>(e);
  check_launch("residual_kernel");
}

}  // namespace cuda_detail
}  // namespace repshift
