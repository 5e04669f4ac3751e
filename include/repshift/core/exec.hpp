#pragma once
// Execution targets, passed by value as the first argument of every entry
// point: rs::Host{} runs on the CPU with OpenMP, rs::Cuda{stream}
// (repshift/cuda.hpp) enqueues on a CUDA stream.

#include <type_traits>

namespace repshift {

// How the CPU's dense layers multiply. F32: in float. Bf16: weights and
// activations rounded to bfloat16, products accumulated and written in
// float (oneDNN, on CPUs with AVX512-BF16 or AMX; refused by name
// elsewhere). Attention, norms, epilogues and the shift score stay float.
enum class DenseMath { F32, Bf16 };

// CPU execution on num_threads OpenMP threads (<= 0: OpenMP's current
// count), the regions oneDNN and OpenBLAS open for a call included.
struct Host {
  int num_threads = 0;
  DenseMath dense_math = DenseMath::F32;
};

template <class E>
inline constexpr bool is_host_v = std::is_same_v<E, Host>;

}  // namespace repshift
