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
// sm_86 / sm_89 cards 99 KiB). The kernel's current limit is read each
// time (cudaFuncGetAttributes: a query that waits for nothing; an error an
// earlier launch left behind surfaces here, as this call's), and
// cudaFuncSetAttribute, which can wait on in-flight copies, runs only when
// a launch needs more. Read, not remembered: cudaDeviceReset drops every
// raised limit, and a limit cached per process would then fail the launch.

#include <cuda_runtime.h>

#include <mutex>

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
  // Read and raise under one lock, so two threads raising to different
  // sizes cannot leave the smaller one in place.
  static std::mutex lock;
  const std::lock_guard<std::mutex> hold(lock);
  cudaFuncAttributes attributes{};
  check(cudaFuncGetAttributes(&attributes, kernel), "cudaFuncGetAttributes");
  if (bytes <= attributes.maxDynamicSharedSizeBytes) return;
  const int device = current_device();
  int limit = 0;
  check(cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device),
        "cudaDeviceGetAttribute(MaxSharedMemoryPerBlockOptin)");
  if (bytes > limit) {
    detail::fail(call, "the kernel needs {} bytes of shared memory per block; device {} allows at most {}", bytes,
                 device, limit);
  }
  check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes), call);
}

}  // namespace cuda_detail
}  // namespace repshift
