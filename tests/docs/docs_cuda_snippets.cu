// The C++ block of docs/cuda.md, verbatim between [snippet] markers
// (tests/docs/check_snippets.py checks it): compiled into
// test_cuda_transformer wherever nvcc exists. Never called.

#include <repshift/cuda.hpp>
#include <repshift/cuda/models.cuh>

namespace rs = repshift;

[[maybe_unused]] static void docs_cuda(cudaStream_t stream, const float* d_before, const float* d_after,
                                       float* d_scores, int* d_keep_idx, const float* d_x, float* d_out, int B,
                                       int N, int C, int keep, const __half* d_images, __half* d_logits) {
// [snippet]
rs::Cuda exec{stream};                        // device pointers, enqueue only
rs::shift_score<rs::policies::L2>(exec, d_before, d_after, d_scores, B, N, C);   // float, __half, __nv_bfloat16
rs::select_top(exec, d_scores, d_keep_idx, B, N, keep, 1);
rs::gather_tokens(exec, d_x, d_keep_idx, d_out, B, N, keep, C);

rs::cuda::Blas blas;                          // cuBLASLt handle, workspace, plan cache: create once
rs::cuda::VisionTransformer<__half, rs::policies::Mlp, rs::policies::L2> deit(
    rs::ViTWeights::random(rs::ViTConfig::deit_small(), 0), blas);
deit.reserve(64);                             // every allocation happens here
deit.forward(exec, d_images, 64, d_logits, rs::PruneSchedule::paper());
// [/snippet]
}
