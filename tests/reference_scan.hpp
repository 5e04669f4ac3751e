#pragma once
// Naive double-precision selective scan and causal conv: std::exp /
// std::log1p softplus, a sequential scan over an explicit state array. No
// library includes, so CUDA tests can use it too.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <vector>

namespace ref {

using Mat = std::vector<double>;  // row-major [rows, cols]

inline double softplus(double x) { return x > 20 ? x : std::log1p(std::exp(x)); }
inline double silu(double x) { return x / (1.0 + std::exp(-x)); }

// Reverses the token order of each sample of [batch, length, c].
inline Mat flip(const Mat& x, int batch, int length, int c) {
  Mat y(x.size());
  for (int b = 0; b < batch; ++b)
    for (int t = 0; t < length; ++t)
      for (int i = 0; i < c; ++i)
        y[(std::size_t(b) * length + t) * c + i] = x[(std::size_t(b) * length + (length - 1 - t)) * c + i];
  return y;
}

// SiLU(causal depthwise conv1d(x) + bias); x: [batch, length, d]; weight [d, k].
inline Mat conv_silu(const Mat& x, int batch, int length, int d, const float* w, const float* bias, int k) {
  Mat y(x.size());
  for (int b = 0; b < batch; ++b)
    for (int t = 0; t < length; ++t)
      for (int i = 0; i < d; ++i) {
        double acc = bias ? bias[i] : 0.0;
        for (int j = 0; j < k; ++j) {
          const int src = t + j - (k - 1);
          if (src >= 0) acc += double(w[std::size_t(i) * k + j]) * x[(std::size_t(b) * length + src) * d + i];
        }
        y[(std::size_t(b) * length + t) * d + i] = silu(acc);
      }
  return y;
}

// Forward selective scan; every input [batch, length, width] dense.
inline Mat scan(const Mat& u, const Mat& dt, const float* dt_bias, const float* A_log, const Mat& B, const Mat& C,
                const float* D, const Mat* z, int batch, int length, int d, int n) {
  Mat y(u.size());
  std::vector<double> h(static_cast<std::size_t>(n));
  for (int b = 0; b < batch; ++b)
    for (int i = 0; i < d; ++i) {
      std::fill(h.begin(), h.end(), 0.0);
      for (int t = 0; t < length; ++t) {
        const std::size_t row = std::size_t(b) * length + t;
        const double delta = softplus(dt[row * d + i] + (dt_bias ? dt_bias[i] : 0.0));
        const double x = u[row * d + i];
        double out = (D ? D[i] : 0.0) * x;
        for (int s = 0; s < n; ++s) {
          const double A = -std::exp(double(A_log[std::size_t(i) * n + s]));
          h[std::size_t(s)] = std::exp(delta * A) * h[std::size_t(s)] + delta * B[row * n + s] * x;
          out += C[row * n + s] * h[std::size_t(s)];
        }
        if (z) out *= silu((*z)[row * d + i]);
        y[row * d + i] = out;
      }
    }
  return y;
}

}  // namespace ref
