#pragma once
// The token-assembly kernels of the patch models on the CPU (the CUDA
// ones are cuda/patch_embed.cuh): im2col of the patches (and tubelets), the
// token rows (class token + patch projections + position embedding).

#include <algorithm>
#include <cstdint>

#include "../core/exec.hpp"
#include "../params/patch_embed.hpp"
#include "parallel.hpp"

namespace repshift {
namespace cpu {

// cols [batch * P, patch_dim] from images [batch, in_chans, frames, image, image].
inline void patchify(const Host& host, const float* images, std::int64_t batch, const PatchGeometry& g, float* cols) {
  const std::int64_t P = g.patches(), K = g.patch_dim(), area = std::int64_t(g.grid()) * g.grid();
  const int grid = g.grid(), ps = g.patch_size, img = g.image_size, tub = g.tubelet;
#pragma omp parallel for schedule(static) num_threads(thread_count(host))
  for (std::int64_t bp = 0; bp < batch * P; ++bp) {
    const std::int64_t b = bp / P, p = bp % P, tube = p / area, py = p % area / grid, px = p % grid;
    float* dst = cols + bp * K;
    for (int c = 0; c < g.in_chans; ++c)
      for (int dt = 0; dt < tub; ++dt) {
        const float* frame = images + ((b * g.in_chans + c) * g.frames + tube * tub + dt) * img * img;
        for (int ky = 0; ky < ps; ++ky) {
          const float* src = frame + (py * ps + ky) * img + px * ps;
          std::copy(src, src + ps, dst + ((c * tub + dt) * ps + ky) * ps);
        }
      }
  }
}

// x[b, n] = (n == cls_index ? cls : proj[b, patch n]) + pos[n], the patch
// rows in order around the class token; proj [batch, tokens - 1, dim]. cls
// null: no class token, x[b, n] = proj[b, n] + pos[n].
inline void assemble_tokens(const Host& host, const float* proj, const float* cls, const float* pos,
                            std::int64_t batch, std::int64_t tokens, std::int64_t dim, std::int64_t cls_index,
                            float* x) {
  if (!cls) cls_index = tokens;  // every row a patch
  const std::int64_t patches = cls ? tokens - 1 : tokens;
#pragma omp parallel for schedule(static) num_threads(thread_count(host))
  for (std::int64_t bn = 0; bn < batch * tokens; ++bn) {
    const std::int64_t b = bn / tokens, n = bn % tokens;
    const std::int64_t patch = n < cls_index ? n : n - 1;
    const float* src = n == cls_index ? cls : proj + (b * patches + patch) * dim;
    const float* p = pos + n * dim;
    float* dst = x + bn * dim;
    for (std::int64_t c = 0; c < dim; ++c) dst[c] = src[c] + p[c];
  }
}

}  // namespace cpu
}  // namespace repshift
