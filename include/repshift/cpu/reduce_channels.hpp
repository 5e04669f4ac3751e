#pragma once
// reduce_channels<Metric>(a, b, C): the metric over one token's channels.
// Lanes independent partial Accums, combined pairwise at the end: the
// fixed-width inner loop is what the compiler turns into SIMD (no
// -ffast-math needed), and the pairwise combine keeps float error at
// O(log C). This is the CPU twin of the CUDA warp reduction.
//
// An Accum made only of floats (all built-in metrics) is kept as structure
// of arrays, lanes[field][lane], so every field is one unit-stride vector;
// as an array of structs, Cosine's three fields would be stride-3 and the
// loop would stay scalar. Any other Accum is kept as given.

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "../core/config.hpp"
#include "../core/dtype.hpp"

namespace repshift {
namespace cpu {

template <class Accum>
inline constexpr bool is_float_record_v =
    std::is_trivially_copyable_v<Accum> && sizeof(Accum) % sizeof(float) == 0 &&
    alignof(Accum) == alignof(float);

template <class Metric, int Lanes = 16, class T>
inline float reduce_channels(const T* REPSHIFT_RESTRICT a, const T* REPSHIFT_RESTRICT b,
                             std::int64_t channels) {
  static_assert((Lanes & (Lanes - 1)) == 0, "Lanes must be a power of two");
  using Accum = typename Metric::Accum;
  Accum acc[Lanes];
  std::int64_t c = 0;

  if constexpr (is_float_record_v<Accum>) {
    constexpr int kFields = int(sizeof(Accum) / sizeof(float));
    alignas(64) float lanes[kFields][Lanes];
    const Accum zero = Metric::init();
    float zero_fields[kFields];
    std::memcpy(zero_fields, &zero, sizeof zero);
    for (int f = 0; f < kFields; ++f)
      for (int l = 0; l < Lanes; ++l) lanes[f][l] = zero_fields[f];

    for (; c + Lanes <= channels; c += Lanes) {
      for (int l = 0; l < Lanes; ++l) {
        float fields[kFields];
        for (int f = 0; f < kFields; ++f) fields[f] = lanes[f][l];
        Accum x;
        std::memcpy(&x, fields, sizeof x);
        Metric::accumulate(x, to_float(a[c + l]), to_float(b[c + l]));
        std::memcpy(fields, &x, sizeof x);
        for (int f = 0; f < kFields; ++f) lanes[f][l] = fields[f];
      }
    }
    for (int l = 0; l < Lanes; ++l) {
      float fields[kFields];
      for (int f = 0; f < kFields; ++f) fields[f] = lanes[f][l];
      std::memcpy(&acc[l], fields, sizeof(Accum));
    }
  } else {
    for (int l = 0; l < Lanes; ++l) acc[l] = Metric::init();
    for (; c + Lanes <= channels; c += Lanes) {
      for (int l = 0; l < Lanes; ++l) Metric::accumulate(acc[l], to_float(a[c + l]), to_float(b[c + l]));
    }
  }

  for (int l = 0; c < channels; ++c, ++l) Metric::accumulate(acc[l], to_float(a[c]), to_float(b[c]));
  for (int width = Lanes / 2; width > 0; width /= 2) {
    for (int l = 0; l < width; ++l) acc[l] = Metric::combine(acc[l], acc[l + width]);
  }
  return Metric::finalize(acc[0]);
}

}  // namespace cpu
}  // namespace repshift
