#pragma once
// The vector kernels compiled again for each x86 ISA above the translation
// unit's own (cpu_isa.hpp): target/kernels.inl included in namespace
// cpu::avx2 and cpu::avx512, each inside a region where every function is
// compiled for that ISA (GCC's target pragma, clang's attribute pragma). Every
// function of a copy, templates included, carries its target, so its 32-
// or 64-byte vectors never pass through a function compiled without them.
// What the copies use is included here first, outside the regions: a
// standard header first seen inside one would be compiled for AVX-512 and
// run from baseline callers.
//
// with_cpu_target is the one runtime-to-type switch: it calls a kernel's
// lambda with the SimdTarget tag of the copy to run.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "../params/selective_scan.hpp"
#include "cpu_isa.hpp"
#include "flash_head.hpp"

#if REPSHIFT_CPU_TARGETS && !defined(__AVX512F__) && !(defined(__AVX2__) && defined(__FMA__))
#define REPSHIFT_AVX2_TARGET 1
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif
#define REPSHIFT_TARGET_LANES 8
namespace repshift {
namespace cpu {
namespace avx2 {
#include "target/kernels.inl"
}  // namespace avx2
}  // namespace cpu
}  // namespace repshift
#undef REPSHIFT_TARGET_LANES
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif

#if REPSHIFT_CPU_TARGETS && !defined(__AVX512F__)
#define REPSHIFT_AVX512_TARGET 1
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx2,fma")
#endif
#define REPSHIFT_TARGET_LANES 16
namespace repshift {
namespace cpu {
namespace avx512 {
#include "target/kernels.inl"
}  // namespace avx512
}  // namespace cpu
}  // namespace repshift
#undef REPSHIFT_TARGET_LANES
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif

namespace repshift {
namespace cpu {

// f(tag) for the best copy at most `wanted` that this CPU runs and this
// translation unit has (the compiled one at least).
template <class F>
decltype(auto) with_cpu_target(CpuIsa wanted, F&& f) {
  const CpuIsa isa = runnable_cpu_isa(wanted);
#if defined(REPSHIFT_AVX512_TARGET)
  if (isa >= CpuIsa::Avx512) return f(avx512::SimdTarget{});
#endif
#if defined(REPSHIFT_AVX2_TARGET)
  if (isa >= CpuIsa::Avx2) return f(avx2::SimdTarget{});
#endif
  (void)isa;
  return f(SimdTarget{});
}

}  // namespace cpu
}  // namespace repshift
