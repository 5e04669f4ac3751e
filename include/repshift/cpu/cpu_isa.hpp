#pragma once
// Which x86 vector ISA the hand-vectorised CPU kernels run (flash
// attention, the selective scan and its convolution), chosen at run time as
// oneDNN and OpenBLAS choose theirs.
//
// The kernels are compiled once for the translation unit's own target
// (its -march: the floor) and, on x86-64 with GCC or clang, once more for
// each of AVX2+FMA and AVX-512 above it (simd_targets.hpp). A consumer
// built with plain -O3 then still runs AVX-512 kernels on an AVX-512 CPU:
// without this they ran 4-lane SSE code, and such a build ran DeiT-S 1.3x,
// UMT-B 2x and Vim 4x slower than a -march=native one
// (docs/performance.md, ISA dispatch).
//
// REPSHIFT_MAX_CPU_ISA=baseline|avx2|avx512 caps the choice, as
// ONEDNN_MAX_CPU_ISA caps oneDNN's: to measure or test a lower target on a
// higher CPU. It cannot go below the compiled floor (that code is all
// the translation unit has).

#include <cctype>
#include <cstdlib>

#include "../core/error.hpp"

namespace repshift {
namespace cpu {

enum class CpuIsa { Baseline = 0, Avx2 = 1, Avx512 = 2 };

inline const char* to_string(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::Avx512: return "avx512";
    case CpuIsa::Avx2: return "avx2";
    default: return "baseline";
  }
}

// What this translation unit's flags target: the kernels in namespace cpu.
constexpr CpuIsa compiled_cpu_isa() {
#if defined(__AVX512F__)
  return CpuIsa::Avx512;
#elif defined(__AVX2__) && defined(__FMA__)
  return CpuIsa::Avx2;
#else
  return CpuIsa::Baseline;
#endif
}

// The extra targets exist where GCC/clang can compile a function for an ISA
// above the translation unit's (x86-64 only).
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define REPSHIFT_CPU_TARGETS 1
#else
#define REPSHIFT_CPU_TARGETS 0
#endif

// What this CPU and its OS can run (libgcc checks the OS saves the vector state).
inline CpuIsa detected_cpu_isa() {
#if REPSHIFT_CPU_TARGETS
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    return CpuIsa::Avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return CpuIsa::Avx2;
#endif
  return CpuIsa::Baseline;
}

// Whether `name` spells `lower` (lower case) in any case: the environment
// variables' values and OpenBLAS's core names.
inline bool same_name(const char* name, const char* lower) {
  while (*name && std::tolower(static_cast<unsigned char>(*name)) == *lower) ++name, ++lower;
  return !*name && !*lower;
}

// REPSHIFT_MAX_CPU_ISA, read at each call (a test may set it between runs);
// unset: no cap.
inline CpuIsa cpu_isa_limit() {
  const char* value = std::getenv("REPSHIFT_MAX_CPU_ISA");
  if (!value || !*value) return CpuIsa::Avx512;
  for (CpuIsa isa : {CpuIsa::Baseline, CpuIsa::Avx2, CpuIsa::Avx512}) {
    if (same_name(value, to_string(isa))) return isa;
  }
  repshift::detail::fail("REPSHIFT_MAX_CPU_ISA", "'{}' is not baseline, avx2 or avx512", value);
}

// The best target at most `wanted` that this CPU runs, never below the
// compiled floor.
inline CpuIsa runnable_cpu_isa(CpuIsa wanted) {
  static const CpuIsa detected = detected_cpu_isa();
  const CpuIsa best = detected < wanted ? detected : wanted;
  return best > compiled_cpu_isa() ? best : compiled_cpu_isa();
}

// The ISA the dispatched kernels run: the best this CPU has, capped by
// REPSHIFT_MAX_CPU_ISA.
inline CpuIsa active_cpu_isa() { return runnable_cpu_isa(cpu_isa_limit()); }

}  // namespace cpu
}  // namespace repshift
