#pragma once
// RMSNorm weights of one norm (Mamba / Vim), in the activations' storage
// type T: out = x / sqrt(mean(x^2) + eps) * weight, no centring, no bias.
// One struct for every executor's row kernels.

#include <cstdint>

#include "../core/config.hpp"

namespace repshift {

template <class T>
struct RmsNormParams {
  const T* weight = nullptr;  // [channels]
  float eps = 1e-5f;
};

// The source row of output row r, shared by the CPU and CUDA kernels: r
// itself or, when tokens > 0, one row per sample, row token[r] (0 without
// token) of sample r's `tokens` rows (Vim's class token, wherever pruning
// has moved it).
REPSHIFT_HD std::int64_t rms_norm_source_row(std::int64_t r, const int* token, std::int64_t tokens) {
  return tokens > 0 ? r * tokens + (token ? token[r] : 0) : r;
}

}  // namespace repshift
