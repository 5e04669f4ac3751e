#pragma once
// rs::Cuda{stream}: enqueue on a CUDA stream. Nothing on the forward path
// allocates or synchronises; the kernels need no global workspace (their
// scratch is shared memory or a caller-owned buffer). `status`, when set,
// is a caller-owned device array of 4 ints (zeroed by the caller) where
// kernels record the first bad value their input held that only the
// device can see (gather_tokens / remove_lines: an index out of range;
// Merge: a token size; SsmScan: the kept token's index; embed_tokens: a
// token id);
// rs::cuda::throw_if_status(exec) reads it (that one call synchronises)
// and throws naming the value.

#include <cuda_runtime.h>

namespace repshift {

struct Cuda {
  cudaStream_t stream = nullptr;
  int* status = nullptr;
};

}  // namespace repshift
