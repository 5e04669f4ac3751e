// The vector vocabulary of one target (simd.hpp): included in namespace
// repshift::cpu for the translation unit's own target, and again in
// cpu::avx2 / cpu::avx512 by simd_targets.hpp with REPSHIFT_TARGET_LANES
// set. No include guard and no #include: the includer provides <cstdint>.

#if defined(REPSHIFT_TARGET_LANES)
constexpr int kVec = REPSHIFT_TARGET_LANES, kVecRegisters = kVec == 16 ? 32 : 16;
#elif defined(__AVX512F__)
constexpr int kVec = 16, kVecRegisters = 32;
#elif defined(__AVX__)
constexpr int kVec = 8, kVecRegisters = 16;
#else
constexpr int kVec = 4, kVecRegisters = 16;
#endif
using vfloat = float __attribute__((vector_size(kVec * sizeof(float))));
// This copy's tag: with_cpu_target (simd_targets.hpp) passes it to a
// kernel's dispatch lambda, and argument-dependent lookup on it finds the
// entries (flash_task, scan_block, ...) of this copy's namespace.
struct SimdTarget {
  static constexpr int kLanes = kVec;
};
using vint = std::int32_t __attribute__((vector_size(kVec * sizeof(std::int32_t))));

inline vfloat loadv(const float* p) {
  vfloat v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}
inline void storev(float* p, vfloat v) { __builtin_memcpy(p, &v, sizeof v); }
// c in every lane of a V (vfloat), or c itself (V = float). c - 0 folds
// to c (V{} + c would not: -0 + 0 is +0), so this is one broadcast, which
// the register tiles (gemm_tile.hpp) take straight from memory.
template <class V>
inline V broadcast(float c) { return c - V{}; }

// 2^n for integral-valued n in [-126, 127], per lane.
inline vfloat pow2i(vfloat n) {
  const vint bits = (__builtin_convertvector(n, vint) + 127) << 23;
  vfloat scale;
  __builtin_memcpy(&scale, &bits, sizeof scale);
  return scale;
}
inline vfloat maxv(vfloat a, vfloat b) { return a > b ? a : b; }

// Hides v's value from the optimiser: an empty asm that claims to change
// it, no instruction of its own (though GCC does not auto-vectorise a loop
// that holds one). The register tiles (gemm_tile.hpp) keep a row of B in
// registers with it.
template <class V>
inline void make_opaque(V& v) {
#if defined(__GNUC__) && defined(__SSE__) && (defined(__x86_64__) || defined(__i386__))
  asm("" : "+v"(v));
#elif defined(__GNUC__) && defined(__aarch64__)
  asm("" : "+w"(v));
#else
  (void)v;
#endif
}

// Whether the compiler may reassociate float arithmetic (-fassociative-math,
// part of -ffast-math): GCC says so by a macro; clang does not, so there it
// is assumed.
#if defined(__ASSOCIATIVE_MATH__) || defined(__clang__)
inline constexpr bool kMayReassociate = true;
#else
inline constexpr bool kMayReassociate = false;
#endif

// For a step that is only right as written (a rounding trick, a
// cancellation): v made opaque where the compiler may reassociate, so
// that it cannot fold the step away; elsewhere nothing, which keeps
// scalar loops around it auto-vectorisable.
template <class V>
inline void keep_as_written(V& v) {
  if constexpr (kMayReassociate) make_opaque(v);
}

// x rounded to the nearest integer (ties to even), |x| <= 2^22, per lane
// or scalar: adding and subtracting 1.5 * 2^23 rounds in plain
// arithmetic, where a floor() call would keep GCC from vectorising the
// caller's loop. Reassociation folded (x + c) - c to x and x - round(x)
// to 0 (flash attention came out up to 63% off under -ffast-math).
template <class V>
inline V round_to_integer(V x) {
  constexpr float kRoundShifter = 12582912.0f;
  V shifted = x + kRoundShifter;
  keep_as_written(shifted);
  V rounded = shifted - kRoundShifter;
  keep_as_written(rounded);
  return rounded;
}

// x = m 2^e with m in [1, 2) for positive normal x, per lane: returns e
// (as a float) and stores m.
inline float split_exponent(float x, float& m) {
  std::int32_t bits;
  __builtin_memcpy(&bits, &x, sizeof bits);
  const std::int32_t mbits = (bits & 0x007fffff) | 0x3f800000;
  __builtin_memcpy(&m, &mbits, sizeof m);
  return float(((bits >> 23) & 0xff) - 127);
}
inline vfloat split_exponent(vfloat x, vfloat& m) {
  vint bits;
  __builtin_memcpy(&bits, &x, sizeof bits);
  const vint mbits = (bits & 0x007fffff) | 0x3f800000;
  __builtin_memcpy(&m, &mbits, sizeof m);
  return __builtin_convertvector(((bits >> 23) & 0xff) - 127, vfloat);
}

namespace detail {
template <int W>
struct FloatLanes {
  typedef float type __attribute__((vector_size(W * sizeof(float))));
};
// Folds the upper half of v onto the lower half, log2(W) times: a short
// tree instead of a W-long chain of dependent scalar ops.
template <int W, class Op>
inline float fold_lanes(typename FloatLanes<W>::type v, Op op) {
  if constexpr (W == 1) {
    return v[0];
  } else {
    typename FloatLanes<W / 2>::type lo, hi;
    __builtin_memcpy(&lo, &v, sizeof lo);
    __builtin_memcpy(&hi, reinterpret_cast<const char*>(&v) + sizeof lo, sizeof hi);
    return fold_lanes<W / 2>(op(lo, hi), op);
  }
}
}  // namespace detail

inline float hmax(vfloat v) {
  return detail::fold_lanes<kVec>(v, [](auto a, auto b) { return a > b ? a : b; });
}
inline float hsum(vfloat v) {
  return detail::fold_lanes<kVec>(v, [](auto a, auto b) { return a + b; });
}

// Lane i holds first + i.
inline vfloat iotav(float first) {
  vfloat v;
  for (int i = 0; i < kVec; ++i) v[i] = first + float(i);
  return v;
}
