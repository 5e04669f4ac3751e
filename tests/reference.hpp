#pragma once
// Independent naive references in double precision. They share nothing
// with the library but the documented conventions (zero-vector cosine,
// NaN ranks lowest, ties to the lower index), written out again here the
// obvious way.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <string>
#include <vector>

namespace ref {

enum class Metric { L1, L2, Cosine, Norm };

template <class E>
double score(Metric m, const E* after, const E* before, std::int64_t channels) {
  double l1 = 0, sq = 0, dot = 0, aa = 0, bb = 0;
  for (std::int64_t c = 0; c < channels; ++c) {
    const double a = after[c], b = before[c];
    l1 += std::abs(a - b);
    sq += (a - b) * (a - b);
    dot += a * b;
    aa += a * a;
    bb += b * b;
  }
  switch (m) {
    case Metric::L1: return l1;
    case Metric::L2: return std::sqrt(sq);
    case Metric::Cosine:
      if (aa == 0 && bb == 0) return 0.0;
      if (aa == 0 || bb == 0) return 1.0;
      return std::clamp(1.0 - dot / std::sqrt(aa * bb), 0.0, 2.0);
    case Metric::Norm: return std::sqrt(aa);
  }
  return NAN;
}

// The larger of two errors, NaN the largest of all: std::max(worst, NaN)
// keeps worst, so an element left unwritten (outputs start as NaN) or a
// NaN result would pass any bound.
inline double worse(double worst, double error) { return (error > worst || error != error) ? error : worst; }

// max_i |got_i - want_i| / (1 + |want_i|): the relative error every
// float-vs-double comparison in the suite uses. NaN where only one side is
// NaN (an element both leave NaN agrees); infinity for sizes that differ.
template <class G, class W>
double max_rel_error(const G& got, const W& want) {
  if (got.size() != want.size()) return INFINITY;
  double worst = 0;
  for (std::size_t i = 0; i < got.size(); ++i) {
    const double g = double(got[i]), w = double(want[i]);
    if (g == w || (g != g && w != w)) continue;  // equal (infinities too), or both NaN
    worst = worse(worst, std::abs(g - w) / (1.0 + std::abs(w)));
  }
  return worst;
}

// scores: [B, N, C] before/after contiguous, already widened to float.
inline std::vector<double> scores(Metric m, const std::vector<float>& before,
                                  const std::vector<float>& after, int batch, int tokens,
                                  int channels) {
  std::vector<double> s(std::size_t(batch) * tokens);
  for (std::size_t row = 0; row < s.size(); ++row) {
    s[row] = score(m, after.data() + row * channels, before.data() + row * channels, channels);
  }
  return s;
}

// Full stable sort by (not NaN, score desc), index asc; keep the first
// keep - protect of the unprotected tokens, then list ascending.
inline std::vector<int> select(const std::vector<float>& scores, int batch, int tokens, int keep,
                               int protect) {
  std::vector<int> out;
  for (int b = 0; b < batch; ++b) {
    const float* s = scores.data() + std::size_t(b) * tokens;
    std::vector<int> order(tokens - protect);
    std::iota(order.begin(), order.end(), protect);
    std::stable_sort(order.begin(), order.end(), [&](int i, int j) {
      const bool ni = std::isnan(s[i]), nj = std::isnan(s[j]);
      if (ni != nj) return nj;  // a number before NaN
      if (ni) return false;     // both NaN: keep index order (stable)
      return s[i] > s[j];       // -0 == +0 compare equal: stable keeps index order
    });
    std::vector<int> kept(order.begin(), order.begin() + (keep - protect));
    for (int p = 0; p < protect; ++p) kept.push_back(p);
    std::sort(kept.begin(), kept.end());
    out.insert(out.end(), kept.begin(), kept.end());
  }
  return out;
}

template <class T>
std::vector<T> gather(const std::vector<T>& x, const std::vector<int>& keep_idx, int batch,
                      int tokens, int keep, int channels) {
  std::vector<T> out(std::size_t(batch) * keep * channels);
  for (int b = 0; b < batch; ++b)
    for (int k = 0; k < keep; ++k)
      for (int c = 0; c < channels; ++c)
        out[(std::size_t(b) * keep + k) * channels + c] =
            x[(std::size_t(b) * tokens + keep_idx[std::size_t(b) * keep + k]) * channels + c];
  return out;
}

inline std::vector<float> random_floats(std::size_t n, std::uint32_t seed, float lo = -2.0f,
                                        float hi = 2.0f) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(gen);
  return v;
}

}  // namespace ref
