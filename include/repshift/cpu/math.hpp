#pragma once
// Vectorisable exp, log, erf, GELU, SiLU and softplus, each one template for a float or a
// vfloat (simd.hpp): the scalar tails and the vector bodies of a loop run
// the very same arithmetic. std::exp / std::erf are calls the compiler
// cannot turn into SIMD without -ffast-math; these are plain arithmetic.
// exp_approx: Cody-Waite range reduction + degree-6 polynomial, max rel
// error ~2 ulp over the float range; exp2_nonpositive: 2^x for x <= 0,
// max rel error ~2e-7; erf_approx: max abs error ~1.2e-7;
// log_approx: max rel error ~2e-7 for positive normal inputs.

#include <cstdint>
#include <cstring>

#include "simd.hpp"

namespace repshift {
namespace cpu {

// 2^r on [-1/2, 1/2], highest power first: exp2_nonpositive's polynomial,
// also alpha's in the AMX attention's softmax (flash_attention_amx.hpp).
inline constexpr float kExp2Poly[] = {1.535336188319500e-4f, 1.339887440266574e-3f, 9.618437357674640e-3f,
                                      5.550332471162809e-2f, 2.402264791363012e-1f, 6.931472028550421e-1f, 1.0f};

#include "target/math.inl"

}  // namespace cpu
}  // namespace repshift
