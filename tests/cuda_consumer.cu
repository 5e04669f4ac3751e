// A consumer's translation unit: every kernel that uses dynamic shared
// memory, instantiated together, compiled with a plain -I for repshift and
// warnings as errors (ctest consumer.cuda_plain_include). Two kernels that
// declared their own `extern __shared__` windows with different alignments
// would fail here (nvcc #1886-D) even where the project's own build hides it.

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <repshift/cuda.hpp>
#include <repshift/cuda/attention.cuh>
#include <repshift/cuda/merge_tokens.cuh>
#include <repshift/cuda/token_scores.cuh>

template void repshift::cuda::flash_attention<__half>(const repshift::Cuda&, const repshift::BasicAttentionParams<__half>&);
template void repshift::cuda::flash_attention<__nv_bfloat16>(const repshift::Cuda&, const repshift::BasicAttentionParams<__nv_bfloat16>&);
template void repshift::cuda::flash_attention<float>(const repshift::Cuda&, const repshift::BasicAttentionParams<float>&);
template void repshift::cuda::merge_tokens<float>(const repshift::Cuda&, const repshift::BasicMergeParams<float>&);
template void repshift::cuda_detail::fuse_dropped<float>(const repshift::Cuda&, const repshift::FuseParams<float>&);

int main() { return 0; }
