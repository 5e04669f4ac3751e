#pragma once
// Patch embedding shared by ViT and Vim: a stride-p convolution written as
// im2col + one GEMM. proj[b, p, :] = W . patch_p(images[b]) + bias, patches
// in row-major grid order.

#include <algorithm>
#include <cstdint>
#include <vector>

#include "../cpu/gemm.hpp"
#include "../cpu/parallel.hpp"
#include "../cpu/patch_embed.hpp"
#include "../core/exec.hpp"

namespace repshift {

struct PatchEmbedShape {
  int image_size = 224, patch_size = 16, in_chans = 3, dim = 384;
  int grid() const { return image_size / patch_size; }
  int patches() const { return grid() * grid(); }
  int patch_dim() const { return in_chans * patch_size * patch_size; }
};

// images: [batch, in_chans, image_size, image_size]; weight: [dim, in_chans,
// p, p] (PyTorch Conv2d); proj: [batch, patches, dim]; cols: scratch.
inline void patch_embed(const Host& host, const PatchEmbedShape& s, const float* images, int batch, const float* weight,
                        const float* bias, std::vector<float>& cols, float* proj) {
  const int P = s.patches(), K = s.patch_dim();
  cols.resize(std::size_t(batch) * P * K);
  cpu::patchify(host, images, batch, {s.image_size, s.patch_size, s.in_chans}, cols.data());
  cpu::linear(cols.data(), std::int64_t(batch) * P, K, weight, s.dim, proj, K, s.dim);
#pragma omp parallel for schedule(static) num_threads(cpu::thread_count(host))
  for (std::int64_t bp = 0; bp < std::int64_t(batch) * P; ++bp)
    for (int c = 0; c < s.dim; ++c) proj[bp * s.dim + c] += bias[c];
}

}  // namespace repshift
