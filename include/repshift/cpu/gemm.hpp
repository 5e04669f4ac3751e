#pragma once
// Dense layers through BLAS: y[M, N] = x[M, K] . W[N, K]^T, W stored
// [out, in] as in PyTorch / timm checkpoints. The GEMM writes the raw
// product; bias, GELU, residual, LayerNorm and the shift score are applied
// by the epilogues (cpu/epilogue.hpp) in one pass over the result.
//
// Which BLAS runs is decided at load time, not at link time: the binary
// names the soname libopenblas.so.0, and on a machine that has both of
// Debian's OpenBLAS builds the pthread one may win. With the OpenMP build
// (or any sequential BLAS) the GEMM is one BLAS call that threads through
// libgomp, the pool our kernels share. With the pthread build, its own
// worker pool would fight our OpenMP threads for the cores (measured 0.52x
// at batch 1 on 2 cores), so the GEMM adapts: BLAS set to one thread, the
// rows split over our OpenMP threads, each slice one single-threaded call.
// blas_threading() says which model is running.

#include <cblas.h>

#include <climits>
#include <cstdint>
#include <mutex>

#include "../core/error.hpp"
#include "../core/exec.hpp"
#include "parallel.hpp"

// OpenBLAS's own queries, weak so that any other CBLAS links too (they are
// then null and the BLAS is taken to be sequential or OpenMP-shared).
extern "C" int openblas_get_parallel(void) __attribute__((weak));
extern "C" void openblas_set_num_threads(int) __attribute__((weak));

namespace repshift {
namespace cpu {

enum class BlasThreading { Sequential, Pthreads, OpenMP, Unknown };

inline const char* name(BlasThreading t) {
  switch (t) {
    case BlasThreading::Sequential: return "sequential";
    case BlasThreading::Pthreads: return "pthreads";
    case BlasThreading::OpenMP: return "openmp";
    default: return "unknown";
  }
}

// The threading model of the BLAS loaded in this process (OpenBLAS's
// openblas_get_parallel(): 0 sequential, 1 pthreads, 2 OpenMP).
inline BlasThreading blas_threading() {
  static const BlasThreading model = [] {
    if (!openblas_get_parallel) return BlasThreading::Unknown;
    switch (openblas_get_parallel()) {
      case 0: return BlasThreading::Sequential;
      case 1: return BlasThreading::Pthreads;
      case 2: return BlasThreading::OpenMP;
      default: return BlasThreading::Unknown;
    }
  }();
  return model;
}

inline void linear(const Host& host, const float* x, std::int64_t rows, std::int64_t in_features, const float* weight,
                   std::int64_t out_features, float* y, std::int64_t ldx, std::int64_t ldy) {
  // CBLAS takes int extents: the feature counts and strides are a layer's
  // widths, the rows (batch x tokens) the one extent a caller can push past.
  repshift::detail::require_at_most("cpu::linear", "rows", rows, "INT_MAX (CBLAS's extent type)", INT_MAX);
  auto gemm = [&](std::int64_t r0, std::int64_t r1) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(r1 - r0), int(out_features), int(in_features), 1.0f,
                x + r0 * ldx, int(ldx), weight, int(in_features), 0.0f, y + r0 * ldy, int(ldy));
  };
  const LibraryThreads scope(host);  // the OpenMP build's own threads
  const int threads = scope.count();
  if (blas_threading() != BlasThreading::Pthreads || threads == 1 || rows < 2 * threads) return gemm(0, rows);
  static std::once_flag single;  // the pthread pool stays idle from now on
  std::call_once(single, [] {
    if (openblas_set_num_threads) openblas_set_num_threads(1);
  });
#pragma omp parallel num_threads(threads)
  {
    const std::int64_t t = thread_index(), per = (rows + threads - 1) / threads;
    const std::int64_t r0 = t * per, r1 = r0 + per < rows ? r0 + per : rows;
    if (r0 < r1) gemm(r0, r1);
  }
}

// y = x . W^T (+ bias when not null), x's rows ldx apart, for dense layers
// that need no fused epilogue (classification heads, the scan's
// projections).
inline void linear_bias(const Host& host, const float* x, std::int64_t ldx, std::int64_t rows,
                        std::int64_t in_features, const float* weight, const float* bias, std::int64_t out_features,
                        float* y) {
  linear(host, x, rows, in_features, weight, out_features, y, ldx, out_features);
  if (!bias) return;
#pragma omp parallel for schedule(static) num_threads(thread_count(host))
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t o = 0; o < out_features; ++o) y[r * out_features + o] += bias[o];
}

}  // namespace cpu
}  // namespace repshift
