#pragma once
// LayerNorm weights of one norm, in the activations' storage type T:
// out = (x - mean) / sqrt(var + eps) * gamma + beta (torch.nn.LayerNorm).
// One struct for every executor's row kernels and residual epilogues.

namespace repshift {

template <class T>
struct LayerNormParams {
  const T* gamma = nullptr;  // [channels]
  const T* beta = nullptr;   // [channels]
  float eps = 1e-6f;
};

}  // namespace repshift
