#pragma once
// Build-wide switches, and the one build flag the library refuses.

// The CPU code needs infinities and NaN: -inf marks masked keys and rows
// with no key yet, and a NaN score must rank last (policies/select.hpp);
// a non-finite input propagates (check_finite is the opt-in guard).
// -ffinite-math-only (part of -ffast-math) lets the compiler assume
// neither exists and compile both away. The rest of -ffast-math is
// supported on x86-64 and AArch64 (-ffast-math -fno-finite-math-only:
// test_cpu_attention_fast_math), and so is nvcc's --use_fast_math, which
// touches device code only.
#if defined(__FINITE_MATH_ONLY__) && __FINITE_MATH_ONLY__
#error "repshift needs IEEE infinities and NaN: compile the files that include it without -ffinite-math-only (add -fno-finite-math-only after -ffast-math)"
#endif

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
