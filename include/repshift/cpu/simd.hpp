#pragma once
// vfloat: the target's native float vector (GCC/clang vector extension):
// 16 lanes with AVX-512, 8 with AVX, 4 otherwise. Native width keeps every
// vfloat argument in registers under the platform ABI, and lets the
// register-blocked kernels (flash attention) stay plain C++ with no
// intrinsics per instruction set. Loops whose body has a select (exp's
// range clamp, math.hpp) are written with it too: GCC if-converts such
// selects only when AVX-512 masks exist, so a scalar loop would stay
// scalar on AVX2. "The target" is the translation unit's; simd_targets.hpp
// compiles the same vocabulary again for AVX2 and AVX-512.

#include <cstdint>

#include "../core/config.hpp"

// Unrolls a loop over a register tile's fixed extent completely. GCC
// unrolls such loops by itself only at -O3: at -O2 (CMake's
// RelWithDebInfo) a tile's accumulators stayed in memory and flash
// attention ran at a quarter of its speed. (A loop with a run-time count
// is unrolled by 16 too: code size only.) Clang reads the same pragma;
// nvcc's front end warns on it (and the host compiler on a bare
// "unroll"), so a .cu file's host code goes without.
#if defined(__GNUC__) && !defined(__CUDACC__)
#define REPSHIFT_UNROLL _Pragma("GCC unroll 16")
#else
#define REPSHIFT_UNROLL
#endif

namespace repshift {
namespace cpu {

#include "target/simd.inl"

}  // namespace cpu
}  // namespace repshift
