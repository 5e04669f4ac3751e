#pragma once
// Random initialisation shared by the models' random() constructors.

#include <cmath>
#include <random>
#include <string>
#include <vector>

namespace repshift {
namespace init {

// timm's trunc_normal_(std): normal(0, std) redrawn outside +-2 std.
inline void trunc_normal(std::vector<float>& v, std::mt19937& gen, float std = 0.02f) {
  std::normal_distribution<float> normal(0.0f, std);
  for (auto& x : v) {
    float r;
    do r = normal(gen); while (std::abs(r) > 2.0f * std);
    x = r;
  }
}

// U(-bound, bound), PyTorch's default for Linear / Conv weights.
inline void uniform(std::vector<float>& v, std::mt19937& gen, float bound) {
  std::uniform_real_distribution<float> u(-bound, bound);
  for (auto& x : v) x = u(gen);
}

inline bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

}  // namespace init
}  // namespace repshift
