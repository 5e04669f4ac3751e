#pragma once
// Dense layers through BLAS: y[M, N] = x[M, K] . W[N, K]^T, W stored
// [out, in] as in PyTorch / timm checkpoints. The GEMM writes the raw
// product; bias, GELU, residual, LayerNorm and the shift score are applied
// by the epilogues (cpu/epilogue.hpp) in one pass over the result.
// Called outside OpenMP regions, so BLAS uses its own threads.

#include <cblas.h>

#include <cstdint>

namespace repshift {
namespace cpu {

inline void linear(const float* x, std::int64_t rows, std::int64_t in_features, const float* weight,
                   std::int64_t out_features, float* y, std::int64_t ldx, std::int64_t ldy) {
  // CBLAS takes int extents; the model layer checks they fit
  // (models/vit.hpp: check_gemm_extents).
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(rows), int(out_features), int(in_features),
              1.0f, x, int(ldx), weight, int(in_features), 0.0f, y, int(ldy));
}

}  // namespace cpu
}  // namespace repshift
