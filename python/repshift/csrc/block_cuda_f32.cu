// cuda_block_forward for float storage (block_cuda.cuh); one storage type per
// translation unit, so the three compile in parallel.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "block_cuda.cuh"

namespace repshift_ops {
REPSHIFT_OPS_INSTANTIATE_CUDA_BLOCK(float)
}  // namespace repshift_ops
