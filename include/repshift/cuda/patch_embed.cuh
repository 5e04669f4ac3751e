#pragma once
// ViT / Vim input stage on the GPU: im2col of non-overlapping patches (the
// stride-p convolution becomes one GEMM) and the token assembly with the
// class token at position `cls_index` (ViT: 0; Vim: the middle):
// x[b, cls_index] = cls + pos[cls_index], the patches around it in order,
// each + its pos row.

#include <cstdint>

#include "../params/patch_embed.hpp"
#include "dtype.cuh"
#include "error.cuh"
#include "exec.cuh"
#include "elementwise.cuh"

namespace repshift {
namespace cuda_detail {

using repshift::PatchGeometry;

// cols[b * P + p, ((c * tubelet + dt) * ps + ky) * ps + kx]
//   = images[b, c, tube * tubelet + dt, py * ps + ky, px * ps + kx]
template <class T>
__global__ void patchify_kernel(const T* images, std::int64_t batch, PatchGeometry g, T* cols) {
  const std::int64_t K = g.patch_dim(), P = g.patches(), area = std::int64_t(g.grid()) * g.grid();
  const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= batch * P * K) return;
  const std::int64_t k = i % K, bp = i / K, p = bp % P, b = bp / P;
  const int ps = g.patch_size, kx = int(k % ps), ky = int(k / ps % ps), dt = int(k / (ps * ps) % g.tubelet),
            c = int(k / (std::int64_t(ps) * ps * g.tubelet));
  const std::int64_t frame = p / area * g.tubelet + dt, y = p % area / g.grid() * ps + ky, x = p % g.grid() * ps + kx;
  cols[i] = images[(((b * g.in_chans + c) * g.frames + frame) * g.image_size + y) * g.image_size + x];
}

template <class T>
void patchify(const Cuda& exec, const T* images, std::int64_t batch, const PatchGeometry& g, T* cols) {
  const std::int64_t n = batch * g.patches() * g.patch_dim();
  launch_elementwise("patchify", patchify_kernel<T>, elementwise_grid("patchify", n), exec.stream, images, batch, g,
                     cols);
}

// cls null: no class token, every row a patch.
template <class T>
__global__ void assemble_tokens_kernel(const T* proj, const T* cls, const T* pos, std::int64_t batch,
                                       std::int64_t tokens, std::int64_t dim, std::int64_t cls_index, T* x) {
  const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= batch * tokens * dim) return;
  const std::int64_t c = i % dim, n = i / dim % tokens, b = i / (dim * tokens);
  if (!cls) cls_index = tokens;
  const std::int64_t patch = n < cls_index ? n : n - 1, patches = cls ? tokens - 1 : tokens;
  const float v = n == cls_index ? to_float(cls[c]) : to_float(proj[(b * patches + patch) * dim + c]);
  x[i] = from_float<T>(v + to_float(pos[n * dim + c]));
}

template <class T>
void assemble_tokens(const Cuda& exec, const T* proj, const T* cls, const T* pos, std::int64_t batch,
                     std::int64_t tokens, std::int64_t dim, std::int64_t cls_index, T* x) {
  launch_elementwise("assemble_tokens", assemble_tokens_kernel<T>,
                     elementwise_grid("assemble_tokens", batch * tokens * dim), exec.stream, proj, cls, pos, batch,
                     tokens, dim, cls_index, x);
}

template <int Threads>
__global__ void __launch_bounds__(Threads)
    fill_ints_kernel(int* dst, std::int64_t n, int value) {
  const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) dst[i] = value;
}

// dst[0, n) = value, enqueued (a host-to-device copy from pageable memory
// would synchronise).
inline void fill_ints(const Cuda& exec, int* dst, std::int64_t n, int value) {
  launch_elementwise("fill_ints", fill_ints_kernel<kElementwiseThreads>, elementwise_grid("fill_ints", n),
                     exec.stream, dst, n, value);
}

}  // namespace cuda_detail
}  // namespace repshift
