#pragma once
// rs::Cuda{stream}: enqueue on a CUDA stream. Nothing on the forward path
// allocates or synchronises; the kernels need no global workspace (their
// scratch is shared memory or a caller-owned buffer). `status`, when set,
// is a caller-owned device array of 4 ints (zeroed by the caller) where
// kernels record the first bad value of an input that only the device
// can see (indices, token ids and sizes, packed samples' counts: the codes
// are in cuda/status.cuh); rs::cuda::throw_if_status(exec) reads it (that
// one call synchronises), zeroes it and throws naming the value.

#include <cuda_runtime.h>

namespace repshift {

struct Cuda {
  cudaStream_t stream = nullptr;
  int* status = nullptr;
};

}  // namespace repshift
