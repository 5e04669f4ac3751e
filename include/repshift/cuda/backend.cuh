#pragma once
// Backend<Cuda>: the entry points' CUDA targets. Pointers are device
// pointers; every call only enqueues on exec.stream.

#include "../backend.hpp"
#include "dtype.cuh"
#include "exec.cuh"
#include "gather_tokens.cuh"
#include "select_top.cuh"
#include "shift_score.cuh"

namespace repshift {

template <>
struct Backend<Cuda> {
  template <class T>
  static constexpr bool supports_v = cuda_detail::is_device_storage_v<T>;

  template <class Metric, class T>
  static void shift_score(const Cuda& exec, const ShiftParams<T>& p) {
    cuda_detail::shift_score<Metric>(exec, p);
  }
  // Padded or packed (cu_seqlens and kept_cu_seqlens in device memory;
  // their contents are the caller's contract there, as on FlashAttention's
  // varlen path: only the CPU path can read and check them).
  static void select_top(const Cuda& exec, const SelectParams& p) { cuda_detail::select_top(exec, p); }
  template <class T>
  static void gather_tokens(const Cuda& exec, const GatherParams<T>& p) {
    cuda_detail::gather_tokens(exec, p);
  }
};

}  // namespace repshift
