#pragma once
// Execution targets, passed by value as the first argument of every entry
// point: rs::Host{} runs on the CPU with OpenMP, rs::Cuda{stream}
// (repshift/cuda.hpp) enqueues on a CUDA stream.

#include <type_traits>

namespace repshift {

// How the CPU's dense layers multiply. F32: in float. Bf16: weights and
// activations rounded to bfloat16, products accumulated and written in
// float (oneDNN, on CPUs with AVX512-BF16 or AMX; refused by name
// elsewhere). On a CPU with AMX (Linux, REPSHIFT_MAX_CPU_ISA at least
// avx512), flash attention's Q K^T and P V also run in bfloat16 on AMX
// tiles for head dims that are multiples of 16 up to 128, its softmax in
// float (cpu/flash_attention_amx.hpp). Norms, epilogues and the shift
// score stay float.
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
