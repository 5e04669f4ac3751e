#pragma once
// Block<SsmScan, Block, Metric, Prune, PreNorm> on the CPU: one Vim /
// Mamba block,
//   y = x + out_proj(mix(RMSNorm x)),
//   mix(h): [x_in, z] = in_proj h; per direction
//           u = SiLU(causal depthwise conv(x_in)); [dt, B, C] = x_proj u;
//           y_dir = selective_scan(u, dt_proj dt, A, B, C, D, gate z)
//           and mix = y_fwd (Mamba) or (y_fwd + y_bwd) / 2 (Vim, bidirectional).
// The shift is D(y, x) (Site = Block: the mixer has no attention or MLP
// sub-layer to measure), computed in the residual epilogue that forms y.
// Pruning keeps token order (the next scan depends on it): select_top's
// ascending indices, then gather. A per-sample `keep_token` (Vim's class
// token, in the middle of the sequence) is always kept and its new
// position written back.

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "../cpu/backend.hpp"
#include "../cpu/epilogue.hpp"
#include "../cpu/gemm.hpp"
#include "../cpu/rms_norm.hpp"
#include "../cpu/selective_scan.hpp"
#include "../entry_points.hpp"
#include "../policies/backbone.hpp"
#include "../policies/importance.hpp"
#include "../policies/site.hpp"
#include "block.hpp"
#include "ssm_weights.hpp"

namespace repshift {

struct Cuda;  // repshift/cuda/exec.cuh
namespace cuda {
class SsmWorkspace;  // blocks/ssm_block.cuh
}

struct SsmBlockArgs {
  const float* x = nullptr;  // [batch, tokens, dim]
  float* y = nullptr;        // [batch, keep, dim]
  int batch = 0, tokens = 0;
  int keep = 0;              // == tokens: no pruning
  int protect = 0;           // leading tokens always kept
  int* keep_token = nullptr; // optional [batch]: a token always kept (Vim's CLS); updated to its new position
  float* scores = nullptr;   // optional [batch, tokens]: the block's shift, written when set
  int* keep_idx = nullptr;   // optional [batch, keep]
  std::uint64_t seed = 0;    // for policies::Random importance

  static SsmBlockArgs dense(const float* x, float* y, int batch, int tokens) {
    SsmBlockArgs a;
    a.x = x;
    a.y = y;
    a.batch = batch;
    a.tokens = tokens;
    a.keep = tokens;
    return a;
  }
};

class SsmWorkspace {
 public:
  void reserve(std::int64_t rows, const SsmBlockWeights& w) {
    const std::int64_t floats =
        rows * (w.dim /*norm*/ + 2 * w.inner /*xz*/ + 3 * w.inner /*u, dt, mix*/ + w.proj_width() + 2 * w.dim /*branch, full*/ + 2);
    if (std::int64_t(floats_.size()) < floats) floats_.resize(std::size_t(floats));
    if (std::int64_t(ints_.size()) < rows) ints_.resize(std::size_t(rows));
    rows_ = rows;
    dim_ = w.dim;
    inner_ = w.inner;
    proj_ = w.proj_width();
  }
  float* norm() { return floats_.data(); }
  float* xz() { return norm() + rows_ * dim_; }
  float* u() { return xz() + rows_ * 2 * inner_; }
  float* dt() { return u() + rows_ * inner_; }
  float* mix() { return dt() + rows_ * inner_; }
  float* proj() { return mix() + rows_ * inner_; }
  float* branch() { return proj() + rows_ * proj_; }
  float* full() { return branch() + rows_ * dim_; }
  float* scores() { return full() + rows_ * dim_; }
  float* select_scores() { return scores() + rows_; }
  int* keep_idx() { return ints_.data(); }

 private:
  std::vector<float> floats_;
  std::vector<int> ints_;
  std::int64_t rows_ = 0, dim_ = 0, inner_ = 0, proj_ = 0;
};

template <class Site, class Metric, class Compress, class Norm>
struct Block<policies::SsmScan, Site, Metric, Compress, Norm> {
  static_assert(std::is_same_v<Site, policies::Block>,
                "Block<SsmScan>: Site must be Block (a Mamba mixer has no attention or MLP sub-layer to measure)");
  static_assert(std::is_same_v<Compress, policies::Prune>,
                "Block<SsmScan>: Compress must be Prune (the scan needs the surviving tokens in order)");
  static_assert(std::is_same_v<Norm, policies::PreNorm>, "Block<SsmScan>: Norm must be PreNorm (Vim / Mamba)");
  static_assert(policies::is_importance_v<Metric> && !policies::needs_attention_map_v<Metric>,
                "Block<SsmScan>: Metric must be a shift metric, Norm or Random (there is no attention map)");

  static constexpr bool kFusedScore = policies::is_metric_v<Metric>;
  static constexpr int output_tokens(int tokens, int keep) { return keep < tokens ? keep : tokens; }

  static void check(const SsmBlockWeights& w, const SsmBlockArgs& a) {
    constexpr const char* where = "Block<SsmScan>::forward";
    w.check(where);
    detail::check_token_block_args(where, a.x, a.y, a.batch, a.tokens, a.keep, a.protect);
    if (a.keep_token) detail::require_at_most(where, "protect + 1 (keep_token)", a.protect + 1, "keep", a.keep);
    if (static_cast<const void*>(a.x) == static_cast<const void*>(a.y)) {
      detail::fail(where, "y must not alias x (the score reads x after y is written)");
    }
    detail::checked_extent(where, "activations", a.batch, a.tokens, 2 * w.inner, sizeof(float));
    detail::require_at_most(where, "batch * tokens", std::int64_t(a.batch) * a.tokens, "INT_MAX", INT_MAX);
  }

  // On the GPU: defined in blocks/ssm_block.cuh; every pointer (weights,
  // x, y, keep_token, scores, keep_idx) is a device pointer, f32.
  static void forward(const Cuda& exec, const SsmBlockWeights& w, const SsmBlockArgs& a, cuda::SsmWorkspace& ws);

  static void forward(const Host& host, const SsmBlockWeights& w, const SsmBlockArgs& a, SsmWorkspace& ws) {
    check(w, a);
    if (a.keep_token) {
      for (int b = 0; b < a.batch; ++b) {
        if (a.keep_token[b] < 0 || a.keep_token[b] >= a.tokens) {
          detail::fail("Block<SsmScan>::forward", "keep_token[" + std::to_string(b) + "] = " +
                                                      std::to_string(a.keep_token[b]) + " is outside [0, tokens = " +
                                                      std::to_string(a.tokens) + ")");
        }
      }
    }
    const std::int64_t rows = std::int64_t(a.batch) * a.tokens, dim = w.dim, inner = w.inner;
    ws.reserve(rows, w);
    const bool prune = a.keep < a.tokens;
    const bool score = prune || a.scores != nullptr;
    float* scores = a.scores ? a.scores : ws.scores();

    cpu::rms_norm_rows(host, a.x, ws.norm(), rows, dim, w.norm());
    cpu::linear(ws.norm(), rows, dim, w.in_proj_weight, 2 * inner, ws.xz(), dim, 2 * inner);
    const float scale = w.bidirectional() ? 0.5f : 1.0f;  // Vim averages the two directions
    scan_branch<ScanDirection::Forward, false>(host, w, w.forward, a, scale, ws);
    if (w.bidirectional()) scan_branch<ScanDirection::Backward, true>(host, w, w.backward, a, scale, ws);
    cpu::linear(ws.mix(), rows, inner, w.out_proj_weight, dim, ws.branch(), inner, dim);

    cpu::ResidualRows e;
    e.branch = ws.branch();
    e.residual = a.x;
    e.block_input = a.x;
    e.out = prune ? ws.full() : a.y;
    e.rows = rows;
    e.channels = dim;
    e.scores = scores;
    using Fused = std::conditional_t<kFusedScore, Metric, policies::L2>;
    if (kFusedScore && score) {
      cpu::residual_epilogue<Fused, cpu::ScoreOperands::OutputVsBlockInput, false>(host, e);
    } else {
      cpu::residual_epilogue<Fused, cpu::ScoreOperands::None, false>(host, e);
    }
    if constexpr (std::is_same_v<Metric, policies::Random>) {
      if (score) {
        for (int b = 0; b < a.batch; ++b) policies::Random::fill(a.seed, a.tokens, scores + std::int64_t(b) * a.tokens);
      }
    }
    if (prune) prune_tokens(host, a, scores, dim, ws);
  }

 private:
  // conv -> x_proj -> dt_proj -> scan for one direction, into ws.mix()
  // (written by the first direction, added by the second).
  template <ScanDirection Dir, bool Accumulate>
  static void scan_branch(const Host& host, const SsmBlockWeights& w, const ScanBranchWeights& s,
                          const SsmBlockArgs& a, float scale, SsmWorkspace& ws) {
    const std::int64_t rows = std::int64_t(a.batch) * a.tokens, inner = w.inner, width = w.proj_width();
    const ScanBranchParams p = scan_branch_params(w, s, a, scale, ws);
    cpu::causal_conv1d_silu<Dir>(host, p.conv);
    cpu::linear(ws.u(), rows, inner, s.x_proj_weight, width, ws.proj(), inner, width);
    cpu::linear(ws.proj(), rows, w.dt_rank, s.dt_proj_weight, inner, ws.dt(), width, inner);
    cpu::selective_scan<Dir, Accumulate>(host, p.scan);
  }

  // The conv and scan arguments of one direction over a workspace's
  // buffers (the CPU and CUDA workspaces name them alike).
  struct ScanBranchParams {
    CausalConvParams conv;
    SelectiveScanParams scan;
  };
  template <class Workspace>
  static ScanBranchParams scan_branch_params(const SsmBlockWeights& w, const ScanBranchWeights& s,
                                             const SsmBlockArgs& a, float scale, Workspace& ws) {
    const std::int64_t inner = w.inner;
    ScanBranchParams p;
    CausalConvParams& conv = p.conv;
    conv.x = ws.xz();
    conv.x_stride = 2 * inner;
    conv.weight = s.conv_weight;
    conv.bias = s.conv_bias;
    conv.out = ws.u();
    conv.out_stride = inner;
    conv.batch = a.batch;
    conv.length = a.tokens;
    conv.channels = inner;
    conv.kernel = w.conv_kernel;
    SelectiveScanParams& scan = p.scan;
    scan.u = ws.u();
    scan.u_stride = inner;
    scan.dt = ws.dt();
    scan.dt_stride = inner;
    scan.dt_bias = s.dt_proj_bias;
    scan.A_log = s.A_log;
    scan.B = ws.proj() + w.dt_rank;
    scan.C = ws.proj() + w.dt_rank + w.state;
    scan.bc_stride = w.proj_width();
    scan.D = s.D;
    scan.z = ws.xz() + inner;
    scan.z_stride = 2 * inner;
    scan.out = ws.mix();
    scan.out_stride = inner;
    scan.out_scale = scale;
    scan.batch = a.batch;
    scan.length = a.tokens;
    scan.channels = inner;
    scan.state = w.state;
    return p;
  }

  static void prune_tokens(const Host& host, const SsmBlockArgs& a, const float* scores, std::int64_t dim,
                           SsmWorkspace& ws) {
    const std::int64_t n = a.tokens;
    int* keep_idx = a.keep_idx ? a.keep_idx : ws.keep_idx();
    const float* ranked = scores;
    if (a.keep_token) {
      // The kept token ranks above everything; the caller's scores stay as computed.
      float* s = ws.select_scores();
      std::copy(scores, scores + std::int64_t(a.batch) * n, s);
      for (int b = 0; b < a.batch; ++b) s[b * n + a.keep_token[b]] = INFINITY;
      ranked = s;
    }
    select_top(host, ranked, keep_idx, a.batch, a.tokens, a.keep, a.protect);
    gather_tokens(host, ws.full(), keep_idx, a.y, a.batch, a.tokens, a.keep, int(dim));
    if (a.keep_token) {
      for (int b = 0; b < a.batch; ++b) {
        const int* idx = keep_idx + std::int64_t(b) * a.keep;
        a.keep_token[b] = int(std::lower_bound(idx, idx + a.keep, a.keep_token[b]) - idx);
      }
    }
  }
};

}  // namespace repshift
