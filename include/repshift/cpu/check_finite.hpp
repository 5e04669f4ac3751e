#pragma once
// check_finite: an opt-in scan for NaN/Inf at an API edge (model inputs,
// loaded weights), on the CPU's threads. The kernels themselves propagate
// non-finite values (policies/metric.hpp, policies/select.hpp document
// how) because a scan per call would double the memory traffic of the
// score kernel.

#include <cmath>
#include <cstdint>

#include "../core/dtype.hpp"
#include "../core/error.hpp"
#include "parallel.hpp"

namespace repshift {

// Throws InvalidArgument naming `name`, the first non-finite element's
// index and its value.
template <class T>
void check_finite(Host host, const T* data, std::int64_t count, const char* name) {
  detail::require_pointer("check_finite", name, data);
  detail::require_non_negative("check_finite", "count", count);
  std::int64_t first = count;
#pragma omp parallel for reduction(min : first) num_threads(cpu::thread_count(host))
  for (std::int64_t i = 0; i < count; ++i) {
    if (!std::isfinite(to_float(data[i])) && i < first) first = i;
  }
  if (first < count) {
    detail::fail("check_finite", "{}[{}] = {} is not finite", name, first, to_float(data[first]));
  }
}

}  // namespace repshift
