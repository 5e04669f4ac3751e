#pragma once
// Row epilogues applied to a GEMM's raw output in one pass, each row while
// it sits in L1:
//   bias_gelu:  h = GELU(h + bias)                               (MLP fc1)
//   residual:   branch += bias;  sum = residual + branch;
//               out = LN(sum) (post-norm) or sum (pre-norm);
//               ln_out = LN(out) for the next sub-layer (pre-norm);
//               score = Metric(after, before) on the same row.
// Scoring rides on data the pass reads anyway: it adds arithmetic, not
// memory traffic. What the score compares is a compile-time choice
// (ScoreOperands), never a branch in the row loop.

#include <cstdint>

#include "../core/exec.hpp"
#include "../params/residual_rows.hpp"
#include "layer_norm.hpp"
#include "math.hpp"
#include "parallel.hpp"
#include "reduce_channels.hpp"

namespace repshift {
namespace cpu {

inline void bias_gelu(const Host& host, float* h, std::int64_t rows, std::int64_t cols,
                      const float* bias) {
#pragma omp parallel for schedule(static) num_threads(thread_count(host))
  for (std::int64_t r = 0; r < rows; ++r) {
    float* row = h + r * cols;
    std::int64_t c = 0;
    for (; c + kVec <= cols; c += kVec) storev(row + c, gelu(loadv(row + c) + loadv(bias + c)));
    for (; c < cols; ++c) row[c] = gelu(row[c] + bias[c]);
  }
}

using repshift::ScoreOperands;

using ResidualRows = repshift::ResidualRows<float>;

template <class Metric, ScoreOperands Score, bool PostLN>
void residual_epilogue(const Host& host, const ResidualRows& e) {
  const std::int64_t C = e.channels;
#pragma omp parallel for schedule(static) num_threads(thread_count(host))
  for (std::int64_t r = 0; r < e.rows; ++r) {
    float* branch = e.branch + r * C;
    const float* res = e.residual + r * C;
    float* out = e.out + r * C;
    // omp simd on the row loops: vectorised at -O2 too (see layer_norm_row).
    if (e.bias) {
#pragma omp simd
      for (std::int64_t c = 0; c < C; ++c) branch[c] += e.bias[c];
    }
    // Score the branch before `out` is written: out may alias residual.
    if constexpr (Score == ScoreOperands::BranchVsResidual) {
      e.scores[r] = reduce_channels<Metric>(branch, res, C);
    }
    if constexpr (Score == ScoreOperands::SumVsResidual) {
      // The branch row is scratch: it takes the sum, scored against the
      // residual before out (which may alias it) is written.
#pragma omp simd
      for (std::int64_t c = 0; c < C; ++c) branch[c] += res[c];
      e.scores[r] = reduce_channels<Metric>(branch, res, C);
#pragma omp simd
      for (std::int64_t c = 0; c < C; ++c) out[c] = branch[c];
    } else {
#pragma omp simd
      for (std::int64_t c = 0; c < C; ++c) out[c] = res[c] + branch[c];
    }
    if constexpr (PostLN) layer_norm_row(out, out, C, e.ln_post);
    if constexpr (Score == ScoreOperands::OutputVsBlockInput) {
      e.scores[r] = reduce_channels<Metric>(out, e.block_input + r * C, C);
    }
    if (e.ln_out) layer_norm_row(out, e.ln_out + r * C, C, e.ln_next);
  }
}

}  // namespace cpu
}  // namespace repshift
