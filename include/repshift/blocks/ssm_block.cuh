#pragma once
// Block<SsmScan, Block, Metric, Prune, PreNorm>::forward on the GPU and its
// workspace: the CPU block's stages (blocks/ssm_block.hpp) with device
// kernels, f32 throughout (the scan's state recurrence is kept in f32, as
// Mamba's reference kernel does):
//   RMSNorm -> in_proj GEMM -> per direction: causal conv + SiLU, x_proj
//   GEMM, dt_proj GEMM (on the dt_rank columns, no copy), selective scan
//   (the second direction accumulates) -> out_proj GEMM -> residual
//   epilogue with the fused score D(y, x) -> order-preserving prune.
// The always-kept token (Vim's class token) is ranked +inf on a copy of
// the scores and its new position written back, all on the device.

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "../cuda/backend.cuh"
#include "../cuda/blas.cuh"
#include "../cuda/epilogue.cuh"
#include "../cuda/layer_norm.cuh"
#include "../cuda/selective_scan.cuh"
#include "../cuda/token_compress.cuh"
#include "../entry_points.hpp"
#include "ssm_block.hpp"

namespace repshift {
namespace cuda {

// Device scratch of an SSM block forward; reserve() allocates, forward()
// refuses a workspace that is too small.
class SsmWorkspace {
 public:
  explicit SsmWorkspace(Blas& blas) : blas_(&blas) {}
  ~SsmWorkspace() { release(); }
  SsmWorkspace(const SsmWorkspace&) = delete;
  SsmWorkspace& operator=(const SsmWorkspace&) = delete;

  void reserve(std::int64_t rows, const SsmBlockWeights& w) {
    constexpr const char* where = "cuda::SsmWorkspace::reserve";
    detail::require_positive(where, "rows", rows);
    if (fits(rows, w)) return;
    // Never shrinks: each extent is the larger of what is held and what is asked.
    rows = std::max(rows, rows_);
    const std::int64_t dim = std::max(w.dim, dim_), inner = std::max(w.inner, inner_);
    const std::int64_t proj = std::max(w.proj_width(), proj_);
    const std::int64_t per_row = dim /*norm*/ + 2 * inner /*xz*/ + 3 * inner /*u, dt, mix*/ + proj +
                                 2 * dim /*branch, full*/ + 2 /*scores, ranked*/;
    const std::int64_t floats = detail::checked_extent(where, "workspace", rows, per_row, 1, sizeof(float));
    release();
    cuda_detail::check(cudaMalloc(reinterpret_cast<void**>(&floats_), std::size_t(floats) * sizeof(float)),
                       "cudaMalloc(SsmWorkspace)");
    cuda_detail::check(cudaMalloc(reinterpret_cast<void**>(&ints_), std::size_t(rows) * sizeof(int)),
                       "cudaMalloc(SsmWorkspace)");
    rows_ = rows;
    dim_ = dim;
    inner_ = inner;
    proj_ = proj;
  }
  bool fits(std::int64_t rows, const SsmBlockWeights& w) const {
    return rows <= rows_ && w.dim <= dim_ && w.inner <= inner_ && w.proj_width() <= proj_;
  }

  Blas& blas() const { return *blas_; }
  float* norm() const { return floats_; }
  float* xz() const { return norm() + rows_ * dim_; }
  float* u() const { return xz() + rows_ * 2 * inner_; }
  float* dt() const { return u() + rows_ * inner_; }
  float* mix() const { return dt() + rows_ * inner_; }
  float* proj() const { return mix() + rows_ * inner_; }
  float* branch() const { return proj() + rows_ * proj_; }
  float* full() const { return branch() + rows_ * dim_; }
  float* scores() const { return full() + rows_ * dim_; }
  float* ranked() const { return scores() + rows_; }
  int* keep_idx() const { return ints_; }

 private:
  void release() {
    cudaFree(floats_);
    cudaFree(ints_);
    floats_ = nullptr;
    ints_ = nullptr;
    rows_ = dim_ = inner_ = proj_ = 0;
  }
  Blas* blas_;
  float* floats_ = nullptr;
  int* ints_ = nullptr;
  std::int64_t rows_ = 0, dim_ = 0, inner_ = 0, proj_ = 0;
};

}  // namespace cuda

template <class Site, class Metric, class Compress, class Norm>
void Block<policies::SsmScan, Site, Metric, Compress, Norm>::forward(const Cuda& exec, const SsmBlockWeights& w,
                                                                    const SsmBlockArgs& a, cuda::SsmWorkspace& ws) {
  constexpr const char* where = "Block<SsmScan>::forward(Cuda)";
  check(w, a);
  const std::int64_t rows = std::int64_t(a.batch) * a.tokens, dim = w.dim, inner = w.inner;
  if (!ws.fits(rows, w)) {
    detail::fail(where, "the workspace is smaller than batch * tokens = " + std::to_string(rows) +
                            " rows of this block: call reserve() first");
  }
  const bool prune = a.keep < a.tokens;
  const bool score = prune || a.scores != nullptr;
  float* scores = a.scores ? a.scores : ws.scores();

  cuda_detail::rms_norm_rows(exec, a.x, ws.norm(), rows, dim, w.norm_weight, w.norm_eps);
  cuda_detail::dense(exec, ws.blas(), static_cast<const float*>(ws.norm()), rows, dim, w.in_proj_weight, nullptr,
                     2 * inner, ws.xz());
  const float scale = w.bidirectional() ? 0.5f : 1.0f;  // Vim averages the two directions
  // conv -> x_proj -> dt_proj -> scan per direction, into ws.mix() (the
  // second direction accumulates).
  auto branch = [&](auto direction, auto accumulate, const ScanBranchWeights& s) {
    constexpr ScanDirection kDir = decltype(direction)::value;
    const ScanBranchParams bp = scan_branch_params(w, s, a, scale, ws);
    cuda::causal_conv1d_silu<kDir>(exec, bp.conv);
    cuda_detail::dense(exec, ws.blas(), static_cast<const float*>(ws.u()), rows, inner, s.x_proj_weight, nullptr,
                       w.proj_width(), ws.proj());
    ws.blas().linear(exec, cuda::LinearShape{rows, w.dt_rank, inner, w.proj_width(), inner},
                     static_cast<const float*>(ws.proj()), s.dt_proj_weight, static_cast<const float*>(nullptr),
                     ws.dt());
    cuda::selective_scan<kDir, decltype(accumulate)::value>(exec, bp.scan);
  };
  branch(std::integral_constant<ScanDirection, ScanDirection::Forward>{}, std::false_type{}, w.forward);
  if (w.bidirectional()) {
    branch(std::integral_constant<ScanDirection, ScanDirection::Backward>{}, std::true_type{}, w.backward);
  }
  cuda_detail::dense(exec, ws.blas(), static_cast<const float*>(ws.mix()), rows, inner, w.out_proj_weight, nullptr, dim,
                     ws.branch());

  cuda_detail::ResidualRows<float> e;
  e.branch = ws.branch();
  e.residual = a.x;
  e.block_input = a.x;
  e.out = prune ? ws.full() : a.y;
  e.rows = rows;
  e.channels = dim;
  e.scores = scores;
  using Fused = std::conditional_t<kFusedScore, Metric, policies::L2>;
  if (kFusedScore && score) {
    cuda_detail::residual_epilogue<Fused, ScoreOperands::OutputVsBlockInput, false>(exec, e);
  } else {
    cuda_detail::residual_epilogue<Fused, ScoreOperands::None, false>(exec, e);
  }
  if constexpr (std::is_same_v<Metric, policies::Random>) {
    if (score) cuda_detail::random_scores(exec, a.seed, a.batch, a.tokens, scores);
  }
  if (!prune) return;

  int* keep_idx = a.keep_idx ? a.keep_idx : ws.keep_idx();
  const float* ranked = scores;
  if (a.keep_token) {
    cuda_detail::rank_kept_token(exec, scores, a.keep_token, a.batch, a.tokens, ws.ranked());
    ranked = ws.ranked();
  }
  select_top(exec, ranked, keep_idx, a.batch, a.tokens, a.keep, a.protect);
  gather_tokens(exec, static_cast<const float*>(ws.full()), static_cast<const int*>(keep_idx), a.y, a.batch, a.tokens,
                a.keep, int(dim));
  if (a.keep_token) cuda_detail::relocate_kept_token(exec, keep_idx, a.batch, a.keep, a.keep_token);
}

}  // namespace repshift
