#pragma once
// Random initialisation shared by the models' random() constructors.

#include <cmath>
#include <random>
#include <string>
#include <vector>

namespace repshift {
namespace init {

// timm's trunc_normal_(std = 0.02): normal(0, std) redrawn outside its
// default bounds a = -2, b = 2, which are absolute: at std 0.02 they are
// 100 std away, so the draw is in effect a plain normal(0, 0.02).
inline void trunc_normal(std::vector<float>& v, std::mt19937& gen, float std = 0.02f) {
  std::normal_distribution<float> normal(0.0f, std);
  for (auto& x : v) {
    float r;
    do r = normal(gen); while (std::abs(r) > 2.0f);
    x = r;
  }
}

// U(-bound, bound), PyTorch's default for Linear / Conv weights.
inline void uniform(std::vector<float>& v, std::mt19937& gen, float bound) {
  std::uniform_real_distribution<float> u(-bound, bound);
  for (auto& x : v) x = u(gen);
}

// VideoMAE's fixed position table (get_sinusoid_encoding_table), [tokens,
// dim]: angle = n / 10000^(2 floor(j / 2) / dim), sin on even j, cos on odd,
// computed in double like NumPy's.
inline std::vector<float> sinusoid_table(int tokens, int dim) {
  std::vector<float> t(std::size_t(tokens) * std::size_t(dim));
  for (int n = 0; n < tokens; ++n)
    for (int j = 0; j < dim; ++j) {
      const double angle = n / std::pow(10000.0, 2.0 * (j / 2) / dim);
      t[std::size_t(n) * std::size_t(dim) + std::size_t(j)] = float(j % 2 == 0 ? std::sin(angle) : std::cos(angle));
    }
  return t;
}

inline bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

}  // namespace init
}  // namespace repshift
