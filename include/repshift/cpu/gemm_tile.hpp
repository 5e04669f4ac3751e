#pragma once
// A register-blocked GEMM micro-kernel for the small products inside a
// fused kernel (flash attention's Q K^T and P V), where a BLAS call per
// tile would cost more in packing and dispatch than the product itself.
//
//   C[rows][vecs * kVec] = row_scale (x) C + A[rows][k] B[k][vecs * kVec]
//
// row_scale null: C is overwritten. A is read by broadcasting one element
// at a time, B one vector row at a time; a kTileRows x kTileVecs block of C
// lives in vector registers for the whole k loop (6 x 4 zmm with AVX-512,
// 6 x 2 ymm with AVX2: every B vector loaded feeds 6 FMAs). The driver
// walks B's columns outermost so a B panel stays in L1 while every row
// block of A streams past it.

#include <cstdint>

#include "simd.hpp"

namespace repshift {
namespace cpu {
namespace detail {

// n padded to whole multiples (of a vector, a tile, a key block).
inline std::int64_t round_up(std::int64_t n, std::int64_t multiple) { return (n + multiple - 1) / multiple * multiple; }

}  // namespace detail

#include "target/gemm_tile.inl"

}  // namespace cpu
}  // namespace repshift
