#pragma once
// ResidualRows<T>: the rows a residual epilogue combines, one descriptor
// for every executor (cpu/epilogue.hpp, cuda/epilogue.cuh):
//   branch (+ bias) + residual -> out, LayerNorm'ed after (post-norm) or
//   also into ln_out for the next sub-layer (pre-norm), and the Site's shift
//   score of each row (ScoreOperands picks the pair at compile time).

#include <cstdint>

#include "../policies/site.hpp"
#include "layer_norm.hpp"

namespace repshift {

template <class T>
struct ResidualRows {
  T* branch = nullptr;             // [rows, C] GEMM output; the CPU adds bias in place
  const T* bias = nullptr;         // [C] or null (the CUDA GEMMs add theirs)
  const T* residual = nullptr;     // [rows, C]
  T* out = nullptr;                // [rows, C]; may alias residual, not block_input
  const T* block_input = nullptr;  // [rows, C], for OutputVsBlockInput
  T* ln_out = nullptr;             // [rows, C] LN(out) for the next sub-layer, or null (pre-norm only)
  LayerNormParams<T> ln_next;      // used when ln_out is set
  LayerNormParams<T> ln_post;      // used when the epilogue is post-norm
  float* scores = nullptr;         // [rows]
  std::int64_t rows = 0, channels = 0;
};

}  // namespace repshift
