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
  static void select_top(const Cuda& exec, const SelectParams& p) {
    refuse_packed("select_top", p);
    cuda_detail::select_top(exec, p);
  }
  template <class T>
  static void gather_tokens(const Cuda& exec, const GatherParams<T>& p) {
    refuse_packed("gather_tokens", p);
    cuda_detail::gather_tokens(exec, p);
  }

  // The packed (varlen) forms of select and gather run on the CPU only so far.
  static void refuse_packed(const char* where, const PackedRows& p) {
    if (p.packed()) detail::fail(where, "packed batches (cu_seqlens) are CPU-only for now");
  }
};

}  // namespace repshift
