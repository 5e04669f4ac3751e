#pragma once
// vfloat: the target's native float vector (GCC/clang vector extension):
// 16 lanes with AVX-512, 8 with AVX, 4 otherwise. Native width keeps every
// vfloat argument in registers under the platform ABI, and lets the
// register-blocked kernels (flash attention) stay plain C++ with no
// intrinsics per instruction set. Loops whose body has a select (exp's
// range clamp) are written with it too: GCC if-converts such selects only
// when AVX-512 masks exist, so a scalar loop would stay scalar on AVX2.

#include <cstdint>

#include "math.hpp"

namespace repshift {
namespace cpu {

#if defined(__AVX512F__)
constexpr int kVec = 16, kVecRegisters = 32;
#elif defined(__AVX__)
constexpr int kVec = 8, kVecRegisters = 16;
#else
constexpr int kVec = 4, kVecRegisters = 16;
#endif
using vfloat = float __attribute__((vector_size(kVec * sizeof(float))));
using vint = std::int32_t __attribute__((vector_size(kVec * sizeof(std::int32_t))));

inline vfloat loadv(const float* p) {
  vfloat v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}
inline void storev(float* p, vfloat v) { __builtin_memcpy(p, &v, sizeof v); }
inline vfloat splatv(float x) { return vfloat{} + x; }
inline vfloat maxv(vfloat a, vfloat b) { return a > b ? a : b; }

inline float hmax(vfloat v) {
  float m = v[0];
  for (int i = 1; i < kVec; ++i) m = m > v[i] ? m : v[i];
  return m;
}
inline float hsum(vfloat v) {
  float s = 0.0f;
  for (int i = 0; i < kVec; ++i) s += v[i];
  return s;
}

// Lane i holds first + i.
inline vfloat iotav(float first) {
  vfloat v;
  for (int i = 0; i < kVec; ++i) v[i] = first + float(i);
  return v;
}

// exp_approx (math.hpp) on all lanes: same constants, same error.
inline vfloat expv(vfloat x) {
  x = x < -87.3f ? splatv(-87.3f) : x;
  x = x > 88.0f ? splatv(88.0f) : x;
  constexpr float kRoundShifter = 12582912.0f;
  const vfloat n = (x * 1.44269504088896341f + kRoundShifter) - kRoundShifter;
  vfloat r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  vfloat p = splatv(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const vint bits = (__builtin_convertvector(n, vint) + 127) << 23;
  vfloat scale;
  __builtin_memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

// erf_approx and gelu (math.hpp) on all lanes.
inline vfloat erfv(vfloat x) {
  const vfloat ax = x < 0.0f ? -x : x;
  const vfloat t = 1.0f / (1.0f + 0.3275911f * ax);
  vfloat y = splatv(1.061405429f);
  y = y * t - 1.453152027f;
  y = y * t + 1.421413741f;
  y = y * t - 0.284496736f;
  y = y * t + 0.254829592f;
  y = 1.0f - y * t * expv(-ax * ax);
  return x < 0.0f ? -y : y;
}
inline vfloat geluv(vfloat x) { return 0.5f * x * (1.0f + erfv(x * 0.70710678118654752f)); }

}  // namespace cpu
}  // namespace repshift
