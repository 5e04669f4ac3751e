#pragma once
// reduce_channels<Metric>(a, b, C): the metric over one token's channels.
// KLanes independent partial Accums, combined pairwise at the end: the
// fixed-width inner loop is what the compiler turns into SIMD (no
// -ffast-math needed), and the pairwise combine keeps float error at
// O(log C). This is the CPU twin of the CUDA warp reduction.

#include <cstdint>

#include "../config.hpp"
#include "../dtype.hpp"

namespace repshift {
namespace cpu {

template <class Metric, int Lanes = 16, class T>
inline float reduce_channels(const T* REPSHIFT_RESTRICT a, const T* REPSHIFT_RESTRICT b,
                             std::int64_t channels) {
  static_assert((Lanes & (Lanes - 1)) == 0, "Lanes must be a power of two");
  using Accum = typename Metric::Accum;
  Accum acc[Lanes];
  for (int l = 0; l < Lanes; ++l) acc[l] = Metric::init();

  std::int64_t c = 0;
  for (; c + Lanes <= channels; c += Lanes) {
    for (int l = 0; l < Lanes; ++l) Metric::accumulate(acc[l], to_float(a[c + l]), to_float(b[c + l]));
  }
  for (int l = 0; c < channels; ++c, ++l) Metric::accumulate(acc[l], to_float(a[c]), to_float(b[c]));

  for (int width = Lanes / 2; width > 0; width /= 2) {
    for (int l = 0; l < width; ++l) acc[l] = Metric::combine(acc[l], acc[l + width]);
  }
  return Metric::finalize(acc[0]);
}

}  // namespace cpu
}  // namespace repshift
