#pragma once
// Dense layers through BLAS: y[M, N] = x[M, K] . W[N, K]^T, W stored
// [out, in] as in PyTorch / timm checkpoints. The GEMM writes the raw
// product; bias, GELU, residual, LayerNorm and the shift score are applied
// by the epilogues (cpu/epilogue.hpp) in one pass over the result.
// Called outside OpenMP regions, so BLAS uses its own threads.

#include <cblas.h>

#include <cstdint>

#include "../exec.hpp"
#include "parallel.hpp"

namespace repshift {
namespace cpu {

inline void linear(const float* x, std::int64_t rows, std::int64_t in_features, const float* weight,
                   std::int64_t out_features, float* y, std::int64_t ldx, std::int64_t ldy) {
  // CBLAS takes int extents; the model layer checks they fit
  // (models/vit.hpp: check_gemm_extents).
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(rows), int(out_features), int(in_features),
              1.0f, x, int(ldx), weight, int(in_features), 0.0f, y, int(ldy));
}

// y = x . W^T + bias in one call, for small dense layers that need no
// fused epilogue (classification heads).
inline void linear_bias(const Host& host, const float* x, std::int64_t rows, std::int64_t in_features,
                        const float* weight, const float* bias, std::int64_t out_features, float* y) {
  linear(x, rows, in_features, weight, out_features, y, in_features, out_features);
#pragma omp parallel for schedule(static) num_threads(thread_count(host))
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t o = 0; o < out_features; ++o) y[r * out_features + o] += bias[o];
}

}  // namespace cpu
}  // namespace repshift
