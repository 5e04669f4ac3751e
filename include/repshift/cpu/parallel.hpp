#pragma once
// The one place the CPU kernels meet OpenMP: how many threads a Host asks
// for, and which thread this is. Builds without OpenMP run serially.

#if defined(_OPENMP)
#include <omp.h>
#endif

#include "../core/exec.hpp"

namespace repshift {
namespace cpu {

inline int thread_count(const Host& host) {
#if defined(_OPENMP)
  return host.num_threads > 0 ? host.num_threads : omp_get_max_threads();
#else
  (void)host;
  return 1;
#endif
}

inline int thread_index() {
#if defined(_OPENMP)
  return omp_get_thread_num();
#else
  return 0;
#endif
}

}  // namespace cpu
}  // namespace repshift
