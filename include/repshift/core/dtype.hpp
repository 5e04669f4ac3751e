#pragma once
// 16-bit storage types for the CPU path. Kernels read them, widen to float
// and accumulate in float; they never do arithmetic in 16 bits. On CUDA the
// toolkit's __half / __nv_bfloat16 play the same role (cuda/dtype.cuh).

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "config.hpp"

namespace repshift {

// bfloat16: the top 16 bits of an IEEE binary32. Conversion from float
// rounds to nearest even and keeps NaN a NaN.
struct bf16 {
  std::uint16_t bits;

  bf16() = default;
  static constexpr bf16 from_bits(std::uint16_t b) { bf16 h{}; h.bits = b; return h; }
  explicit bf16(float f) : bits(round_from_float(f)) {}
  explicit operator float() const { return to_float(bits); }

  static float to_float(std::uint16_t b) {
    const std::uint32_t u = std::uint32_t(b) << 16;
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
  }
  static std::uint16_t round_from_float(float f) {
    std::uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return std::uint16_t((u >> 16) | 0x0040u);  // quiet NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    return std::uint16_t(u >> 16);
  }
};

// IEEE binary16. Conversions are exact (to float) and round to nearest even
// (from float), subnormals, infinities and NaN included.
struct half {
  std::uint16_t bits;

  half() = default;
  static constexpr half from_bits(std::uint16_t b) { half h{}; h.bits = b; return h; }
  explicit half(float f) : bits(round_from_float(f)) {}
  explicit operator float() const { return to_float(bits); }

  static float to_float(std::uint16_t h) {
    const std::uint32_t sign = std::uint32_t(h & 0x8000u) << 16;
    const std::uint32_t exp = (h >> 10) & 0x1fu;
    const std::uint32_t man = h & 0x3ffu;
    std::uint32_t u;
    if (exp == 0x1fu) {
      u = sign | 0x7f800000u | (man << 13);  // Inf / NaN
    } else if (exp != 0) {
      u = sign | ((exp + 112u) << 23) | (man << 13);  // normal: rebias 15 -> 127
    } else if (man == 0) {
      u = sign;  // +-0
    } else {
      // Subnormal: value = man * 2^-24, exact in float.
      float f = float(man) * 5.9604644775390625e-8f;
      std::memcpy(&u, &f, sizeof u);
      u |= sign;
    }
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
  }

  static std::uint16_t round_from_float(float f) {
    std::uint32_t u;
    std::memcpy(&u, &f, sizeof u);
    const std::uint16_t sign = std::uint16_t((u >> 16) & 0x8000u);
    const std::uint32_t abs = u & 0x7fffffffu;
    if (abs > 0x7f800000u) return std::uint16_t(sign | 0x7e00u);  // NaN
    if (abs >= 0x477ff000u) return std::uint16_t(sign | 0x7c00u);  // rounds to >= 65520: Inf
    if (abs < 0x38800000u) {
      // Result is subnormal or zero: round abs * 2^24 to an integer, ties to even.
      float a;
      std::memcpy(&a, &abs, sizeof a);
      const float scaled = a * 16777216.0f;  // exact: power of two
      auto m = std::uint32_t(scaled);
      const float frac = scaled - float(m);
      if (frac > 0.5f || (frac == 0.5f && (m & 1u))) ++m;
      return std::uint16_t(sign | m);  // m == 0x400 becomes the smallest normal
    }
    // Normal: rebias and round the 13 dropped mantissa bits to nearest even.
    std::uint32_t r = abs - 0x38000000u;  // exponent 127 -> 15
    r += 0xfffu + ((r >> 13) & 1u);
    return std::uint16_t(sign | (r >> 13));
  }
};

// Widen any supported storage type to float. The single conversion point
// for every CPU kernel.
REPSHIFT_HD float to_float(float x) { return x; }
inline float to_float(bf16 x) { return bf16::to_float(x.bits); }
inline float to_float(half x) { return half::to_float(x.bits); }

template <class T>
inline constexpr bool is_host_storage_v =
    std::is_same_v<T, float> || std::is_same_v<T, bf16> || std::is_same_v<T, half>;

template <class T>
constexpr const char* dtype_name() {
  if constexpr (std::is_same_v<T, float>) return "f32";
  else if constexpr (std::is_same_v<T, bf16>) return "bf16";
  else if constexpr (std::is_same_v<T, half>) return "f16";
  else return "unknown";
}

}  // namespace repshift
