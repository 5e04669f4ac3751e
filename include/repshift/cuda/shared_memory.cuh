#pragma once
// Dynamic shared memory, declared once for the whole library.
//
// dynamic_smem(): every kernel's window. nvcc requires all `extern
// __shared__` arrays of one name in a translation unit to agree on their
// alignment (warning #1886-D, an error under --Werror all-warnings), so
// kernels never declare their own: they take this 128-byte-aligned one
// (stricter than any kernel needs: cp.async and ldmatrix want 16 bytes).
//
// allow_dynamic_smem(kernel, bytes): raises a kernel's opt-in limit past
// 48 KiB, or refuses, naming both sizes, where the device has less (the
// f32 attention at head_dim 128 needs 149 KiB: A100 and H100 have it,
// sm_86 / sm_89 cards 99 KiB). cudaFuncSetAttribute costs a driver call,
// so it runs only when a launch needs more than the kernel was last
// granted on this device.

#include <cuda_runtime.h>

#include <map>
#include <mutex>
#include <utility>

#include "../core/error.hpp"
#include "device_bound.cuh"
#include "error.cuh"

namespace repshift {
namespace cuda_detail {

__device__ __forceinline__ unsigned char* dynamic_smem() {
  extern __shared__ __align__(128) unsigned char repshift_dynamic_smem[];
  return repshift_dynamic_smem;
}

template <class Kernel>
void allow_dynamic_smem(Kernel* kernel, int bytes, const char* call) {
  static std::mutex lock;
  static std::map<std::pair<const void*, int>, int> granted;  // (kernel, device) -> bytes
  const int device = current_device();
  const std::lock_guard<std::mutex> hold(lock);
  int& have = granted[{reinterpret_cast<const void*>(kernel), device}];
  if (bytes <= have) return;
  int limit = 0;
  check(cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device),
        "cudaDeviceGetAttribute(MaxSharedMemoryPerBlockOptin)");
  if (bytes > limit) {
    detail::fail(call, "the kernel needs {} bytes of shared memory per block; device {} allows at most {}", bytes,
                 device, limit);
  }
  check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes), call);
  have = bytes;
}

}  // namespace cuda_detail
}  // namespace repshift
