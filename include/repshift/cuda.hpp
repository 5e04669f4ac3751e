#pragma once
// Umbrella header for the CUDA primitives (needs nvcc; target
// repshift::cuda): everything of repshift.hpp plus rs::Cuda{stream} for the
// entry points, and the SsmScan kernels (rs::cuda::selective_scan,
// rs::cuda::causal_conv1d_silu) and the CnnRows ones (rs::cuda::line_scores,
// rs::cuda::remove_lines).
//
//   rs::shift_score<rs::policies::L2>(rs::Cuda{stream}, d_before, d_after, d_scores, B, N, C);
//
// The rest of the CUDA path has its own headers: cuda/attention.cuh (flash
// and map attention), cuda/merge_tokens.cuh, cuda/blas.cuh (cuBLASLt),
// cuda/cudnn_conv.cuh (cuDNN; target repshift::cudnn), the Blocks'
// forward(rs::Cuda, ...) in blocks/{transformer,ssm,cnn}_block.cuh and the
// models in models/{vit,vim,resnet}.cuh (these also need repshift::models).

#include "repshift.hpp"
#include "cuda/backend.cuh"
#include "cuda/line_prune.cuh"
#include "cuda/selective_scan.cuh"
