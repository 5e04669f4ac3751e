#pragma once
// The CPU kernels' float GEMM, and the dense layers built on it (where no
// oneDNN matmul serves them): y[M, N] = x[M, K] . W[N, K]^T, W stored
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
//
// Which kernels OpenBLAS runs is its own run-time pick, and a CPU newer
// than the release falls to its generic SSE3 core: Debian's 0.3.21 calls
// an Emerald Rapids Xeon (family 6, model 207) "Prescott" and multiplies
// the map attention's products at 48-61 GFLOP/s on 2 cores, where oneDNN's
// sgemm runs 270-343 (docs/performance.md). So every float GEMM of the CPU kernels goes
// through sgemm() below, which takes oneDNN's (builds with oneDNN) when
// OpenBLAS's core has no AVX2 kernels on a CPU that has AVX2 + FMA.
// REPSHIFT_SGEMM=blas|onednn overrides that choice (tests, benchmarks).

#include <cblas.h>

#if defined(REPSHIFT_HAS_ONEDNN)
#include <oneapi/dnnl/dnnl.h>
#endif

#include <climits>
#include <cstdint>
#include <cstdlib>
#include <mutex>

#include "../core/error.hpp"
#include "../core/exec.hpp"
#include "cpu_isa.hpp"
#include "parallel.hpp"

// OpenBLAS's own queries, weak so that any other CBLAS links too (they are
// then null and the BLAS is taken to be sequential or OpenMP-shared, with
// kernels for this CPU).
extern "C" int openblas_get_parallel(void) __attribute__((weak));
extern "C" void openblas_set_num_threads(int) __attribute__((weak));
extern "C" char* openblas_get_corename(void) __attribute__((weak));

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

// OpenBLAS's kernel family ("Haswell", "SkylakeX", "Prescott", ...); empty
// for another CBLAS.
inline const char* blas_core() { return openblas_get_corename ? openblas_get_corename() : ""; }

// Whether `core` (an OpenBLAS core name, empty for another CBLAS or a
// static OpenBLAS, whose corename this cannot see) lacks the AVX2 + FMA
// kernels that a CPU of `cpu`'s ISA runs: OpenBLAS's generic fallback
// ("Prescott", "Nehalem", "Sandybridge", "Unknown", ...) on a CPU it does
// not know. Excavator's kernels are 128-bit FMA, not generic.
inline bool blas_core_is_generic(const char* core, CpuIsa cpu) {
  if (!core || !*core || cpu == CpuIsa::Baseline) return false;
  for (const char* tuned : {"haswell", "zen", "skylakex", "cooperlake", "sapphirerapids", "excavator"}) {
    if (same_name(core, tuned)) return false;
  }
  return true;
}

enum class SgemmLibrary { Blas, OneDnn };

// Whether this build has oneDNN (REPSHIFT_HAS_ONEDNN: libdnnl-dev found).
inline constexpr bool kHaveOneDnn =
#if defined(REPSHIFT_HAS_ONEDNN)
    true;
#else
    false;
#endif

inline const char* name(SgemmLibrary l) { return l == SgemmLibrary::OneDnn ? "onednn" : "blas"; }

// Whose sgemm the CPU kernels call: REPSHIFT_SGEMM (read at each call, so a
// test may set it between runs), else oneDNN's where OpenBLAS's core is
// generic for this CPU and the build has oneDNN, else the BLAS.
inline SgemmLibrary sgemm_library() {
  const char* value = std::getenv("REPSHIFT_SGEMM");
  if (value && *value) {
    if (same_name(value, "blas")) return SgemmLibrary::Blas;
    if (!same_name(value, "onednn")) repshift::detail::fail("REPSHIFT_SGEMM", "'{}' is not blas or onednn", value);
    if (!kHaveOneDnn) {
      repshift::detail::fail("REPSHIFT_SGEMM", "'onednn' needs a build with oneDNN (REPSHIFT_HAS_ONEDNN is off)");
    }
    return SgemmLibrary::OneDnn;
  }
  static const bool generic = blas_core_is_generic(blas_core(), detected_cpu_isa());
  return kHaveOneDnn && generic ? SgemmLibrary::OneDnn : SgemmLibrary::Blas;
}

// C[M, N] = alpha A[M, K] . op(B) + beta C, row-major; op(B) = B[N, K]^T
// when trans_b, else B[K, N]. The one float GEMM of the CPU kernels, which
// call it through sgemm_on (below): each library threads it on the calling
// thread's OpenMP thread count (LibraryThreads), or sgemm_on splits its
// rows. Callers read sgemm_library() once per operation and pass it.
inline void sgemm(SgemmLibrary library, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
                  const float* B, int ldb, float beta, float* C, int ldc) {
  if (M == 0 || N == 0) return;  // oneDNN refuses the null pointers of empty operands; nothing to do
  if (K == 0) {                  // C = beta C, as BLAS defines it (beta 0: C is not read)
    for (int m = 0; m < M; ++m) {
      float* row = C + std::int64_t(m) * ldc;
      for (int n = 0; n < N; ++n) row[n] = beta == 0.0f ? 0.0f : beta * row[n];
    }
    return;
  }
#if defined(REPSHIFT_HAS_ONEDNN)
  if (library == SgemmLibrary::OneDnn) {
    const dnnl_status_t status = dnnl_sgemm('N', trans_b ? 'T' : 'N', M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    if (status != dnnl_success) {
      repshift::detail::fail("cpu::sgemm", "dnnl_sgemm({} x {} x {}) failed with dnnl_status_t {}", M, N, K,
                             int(status));
    }
    return;
  }
#else
  (void)library;
#endif
  cblas_sgemm(CblasRowMajor, CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B, ldb, beta,
              C, ldc);
}

// sgemm on host's threads, for every caller: with the OpenMP build (or
// oneDNN) one call that threads itself; under a pthread OpenBLAS, whose
// own pool is held at one thread from the first call on (it would fight
// our OpenMP threads for the cores), the rows of A and C split over host's
// threads, each slice one single-threaded call. An omp for over the
// slices: every slice runs even where OpenMP grants fewer threads than
// asked (a thread limit, a call from inside the caller's own region).
inline void sgemm_on(const Host& host, SgemmLibrary library, bool trans_b, int M, int N, int K, float alpha,
                     const float* A, int lda, const float* B, int ldb, float beta, float* C, int ldc) {
  const LibraryThreads scope(host);  // the OpenMP build's (and oneDNN's) own threads
  const int threads = scope.count();
  const bool pthread_blas = library == SgemmLibrary::Blas && blas_threading() == BlasThreading::Pthreads;
  if (pthread_blas) {
    static std::once_flag single;  // the pthread pool stays idle from now on
    std::call_once(single, [] {
      if (openblas_set_num_threads) openblas_set_num_threads(1);
    });
  }
  if (!pthread_blas || threads == 1 || M < 2 * threads) {
    return sgemm(library, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  }
  const std::int64_t per = (std::int64_t(M) + threads - 1) / threads;
#pragma omp parallel for schedule(static, 1) num_threads(threads)
  for (int t = 0; t < threads; ++t) {
    const std::int64_t r0 = t * per, r1 = r0 + per < M ? r0 + per : M;
    if (r0 < r1) {
      sgemm(library, trans_b, int(r1 - r0), N, K, alpha, A + r0 * lda, lda, B, ldb, beta, C + r0 * ldc, ldc);
    }
  }
}

inline void linear(const Host& host, const float* x, std::int64_t rows, std::int64_t in_features, const float* weight,
                   std::int64_t out_features, float* y, std::int64_t ldx, std::int64_t ldy) {
  // CBLAS takes int extents: the feature counts and strides are a layer's
  // widths, the rows (batch x tokens) the one extent a caller can push past.
  repshift::detail::require_at_most("cpu::linear", "rows", rows, "INT_MAX (CBLAS's extent type)", INT_MAX);
  sgemm_on(host, sgemm_library(), true, int(rows), int(out_features), int(in_features), 1.0f, x, int(ldx), weight,
           int(in_features), 0.0f, y, int(ldy));
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
