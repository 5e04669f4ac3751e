// cuda_block_forward for __nv_bfloat16 storage (block_cuda.cuh); one storage type per
// translation unit, so the three compile in parallel.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "block_cuda.cuh"

namespace repshift_ops {
REPSHIFT_OPS_INSTANTIATE_CUDA_BLOCK(__nv_bfloat16)
}  // namespace repshift_ops
