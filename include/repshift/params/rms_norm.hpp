#pragma once
// RMSNorm weights of one norm (Mamba / Vim), in the activations' storage
// type T: out = x / sqrt(mean(x^2) + eps) * weight, no centring, no bias.
// One struct for every executor's row kernels.

namespace repshift {

template <class T>
struct RmsNormParams {
  const T* weight = nullptr;  // [channels]
  float eps = 1e-5f;
};

}  // namespace repshift
