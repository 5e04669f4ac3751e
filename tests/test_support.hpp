#pragma once
// Typed-test plumbing: the (Metric, dtype) product, conversions between
// the storage types and float, and the CPU kernels' vector targets.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <initializer_list>
#include <string>
#include <type_traits>
#include <vector>

#include <repshift/repshift.hpp>

#include "reference.hpp"

namespace rs = repshift;

// Each distinct vector copy (cpu/cpu_isa.hpp) a kernel called with a CpuIsa
// can run here: one in a native build, up to three (baseline, AVX2,
// AVX-512) in the baseline build of the kernel tests (tests/CMakeLists.txt).
inline std::vector<rs::cpu::CpuIsa> cpu_targets() {
  std::vector<rs::cpu::CpuIsa> targets;
  for (auto isa : {rs::cpu::CpuIsa::Baseline, rs::cpu::CpuIsa::Avx2, rs::cpu::CpuIsa::Avx512}) {
    const auto runs = rs::cpu::runnable_cpu_isa(isa);
    if (targets.empty() || targets.back() != runs) targets.push_back(runs);
  }
  return targets;
}

template <class M>
constexpr ref::Metric ref_metric() {
  if constexpr (std::is_same_v<M, rs::policies::L1>) return ref::Metric::L1;
  else if constexpr (std::is_same_v<M, rs::policies::L2>) return ref::Metric::L2;
  else if constexpr (std::is_same_v<M, rs::policies::TokenNorm>) return ref::Metric::Norm;
  else return ref::Metric::Cosine;
}

// Rounds floats to storage type T; returns both the T data and the floats
// it holds exactly, so the reference sees the very same inputs.
template <class T>
struct Stored {
  std::vector<T> data;
  std::vector<float> values;
};

template <class T>
Stored<T> store(const std::vector<float>& v) {
  Stored<T> s;
  s.data.reserve(v.size());
  s.values.reserve(v.size());
  for (float x : v) {
    s.data.push_back(T(x));
    s.values.push_back(rs::to_float(s.data.back()));
  }
  return s;
}

template <class M, class T>
struct MetricDtype {
  using Metric = M;
  using Type = T;
};

using MetricDtypes = ::testing::Types<
    MetricDtype<rs::policies::L1, float>, MetricDtype<rs::policies::L2, float>,
    MetricDtype<rs::policies::Cosine, float>, MetricDtype<rs::policies::L1, rs::bf16>,
    MetricDtype<rs::policies::L2, rs::bf16>, MetricDtype<rs::policies::Cosine, rs::bf16>,
    MetricDtype<rs::policies::L2, rs::half>, MetricDtype<rs::policies::Cosine, rs::half>>;

struct MetricDtypeNames {
  template <class P>
  static std::string GetName(int) {
    return std::string(P::Metric::name) + "_" + rs::dtype_name<typename P::Type>();
  }
};

// Absolute tolerance for a float-accumulated score against the double
// reference: a few ulps of the sum's magnitude, growing with sqrt(C).
inline double score_tolerance(double reference, int channels) {
  return 2e-6 * (1.0 + std::abs(reference)) * (1.0 + std::sqrt(double(channels)) / 8.0);
}

// Every element of got within tol * max(1, max |want|) of want: a
// scale-aware bound that does not blow up on entries near zero (device
// results against the CPU path, whose own accuracy the reference tests).
inline void expect_close(const std::vector<float>& got, const std::vector<float>& want, double tol,
                         const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double scale = 1.0;
  for (float x : want) scale = std::max(scale, double(std::abs(x)));
  for (std::size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[i], tol * scale) << what << " at " << i;
}

// Whether kept (`keep` distinct indices into [0, n)) is the top of score
// [n] up to float noise: its lowest score at least the highest dropped one,
// less 1e-4 relative. `skip` (a protected token, or -1) is judged by
// neither side. The kernels rank float scores, the reference doubles.
inline ::testing::AssertionResult kept_is_top(const int* kept, int keep, const double* score, int n, int skip = -1) {
  std::vector<bool> is_kept(std::size_t(n), false);
  for (int k = 0; k < keep; ++k) {
    if (kept[k] < 0 || kept[k] >= n || is_kept[std::size_t(kept[k])]) {
      return ::testing::AssertionFailure() << "kept[" << k << "] = " << kept[k] << " is out of [0, " << n
                                           << ") or repeated";
    }
    is_kept[std::size_t(kept[k])] = true;
  }
  double min_kept = INFINITY, max_dropped = -INFINITY;
  for (int t = 0; t < n; ++t) {
    if (t == skip) continue;
    if (is_kept[std::size_t(t)]) min_kept = std::min(min_kept, score[t]);
    else max_dropped = std::max(max_dropped, score[t]);
  }
  if (min_kept >= max_dropped - 1e-4 * (1 + std::abs(max_dropped))) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "lowest kept score " << min_kept << " < highest dropped " << max_dropped;
}

// Runs f, expects InvalidArgument, and checks each fragment is in what().
template <class F>
inline void expect_refused(F&& f, std::initializer_list<const char*> fragments) {
  try {
    f();
    ADD_FAILURE() << "no exception; expected one mentioning " << *fragments.begin();
  } catch (const rs::InvalidArgument& e) {
    const std::string what = e.what();
    for (const char* frag : fragments) {
      EXPECT_NE(what.find(frag), std::string::npos) << "'" << frag << "' missing from: " << what;
    }
    const std::exception& base = e;  // catchable as std::exception
    EXPECT_STREQ(base.what(), e.what());
  }
}
