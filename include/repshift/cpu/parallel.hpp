#pragma once
// The one place the CPU kernels meet OpenMP: how many threads a Host asks
// for, which thread this is, and the thread count the libraries we call
// (OpenBLAS, oneDNN) run their own OpenMP regions on. Builds without
// OpenMP run serially.

#if defined(_OPENMP)
#include <omp.h>
#endif

#include <algorithm>

#include "../core/error.hpp"
#include "../core/exec.hpp"

namespace repshift {
namespace cpu {

// Host{n} with n <= 0 takes OpenMP's count. More than 4 threads per core
// (at least 256) is refused: it cannot help, and a huge n makes the OpenMP
// runtime exhaust memory starting its team instead of throwing.
inline int thread_count(const Host& host) {
#if defined(_OPENMP)
  if (host.num_threads <= 0) return omp_get_max_threads();
  const int limit = std::max(256, 4 * omp_get_num_procs());
  if (host.num_threads > limit) {
    repshift::detail::fail("Host", "num_threads = {} exceeds {} (4 per core of {}, at least 256)", host.num_threads,
                           limit, omp_get_num_procs());
  }
  return host.num_threads;
#else
  (void)host;
  return 1;
#endif
}

// Host::dense_math, refused when a cast integer names no DenseMath.
inline DenseMath dense_math(const Host& host, const char* where) {
  if (host.dense_math != DenseMath::F32 && host.dense_math != DenseMath::Bf16) {
    repshift::detail::fail(where, "dense_math = {} is neither DenseMath::F32 nor DenseMath::Bf16",
                           static_cast<int>(host.dense_math));
  }
  return host.dense_math;
}

inline int thread_index() {
#if defined(_OPENMP)
  return omp_get_thread_num();
#else
  return 0;
#endif
}

// For its lifetime, the OpenMP regions that OpenBLAS and oneDNN open from
// this thread use Host's thread count: both read the calling thread's
// nthreads ICV (omp_get_max_threads), not our num_threads clauses, so
// without it rs::Host{1} ran every GEMM and convolution on all threads
// (two forwards on two threads each asking for 1 then used 2 x OMP's
// count). The ICV is per thread: other threads' calls are untouched.
class LibraryThreads {
 public:
  explicit LibraryThreads(const Host& host) : count_(thread_count(host)) {
#if defined(_OPENMP)
    saved_ = omp_get_max_threads();
    if (count_ != saved_) omp_set_num_threads(count_);
#endif
  }
  ~LibraryThreads() {
#if defined(_OPENMP)
    if (count_ != saved_) omp_set_num_threads(saved_);
#endif
  }
  LibraryThreads(const LibraryThreads&) = delete;
  LibraryThreads& operator=(const LibraryThreads&) = delete;
  int count() const { return count_; }

 private:
  int count_;
  int saved_ = 1;
};

}  // namespace cpu
}  // namespace repshift
