#pragma once
// Build-wide switches. The only macro the library defines for code is
// REPSHIFT_HD: one spelling of __host__ __device__ that a plain C++17
// compiler reads as nothing, so policies compile with and without nvcc.

#if defined(__CUDACC__) || defined(__HIPCC__)
#define REPSHIFT_HD __host__ __device__ __forceinline__
#else
#define REPSHIFT_HD inline
#endif

// REPSHIFT_RESTRICT: the CPU kernels promise the compiler that inputs and
// outputs do not alias, which is what lets the channel loops vectorise.
#if defined(__GNUC__) || defined(__clang__) || defined(_MSC_VER)
#define REPSHIFT_RESTRICT __restrict
#else
#define REPSHIFT_RESTRICT
#endif
