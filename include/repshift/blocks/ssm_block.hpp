#pragma once
// Block<SsmScan, BlockOutput, Importance, Prune, PreNorm>: one Vim / Mamba block, one
// forward for every executor, written against Backend<Exec> and run with a
// Workspace<Exec, float>. f32 throughout: the scan's state recurrence stays
// in f32, as Mamba's reference kernel keeps it.
//   y = x + out_proj(mix(RMSNorm x)),
//   mix(h): [x_in, z] = in_proj h; per direction
//           u = SiLU(causal depthwise conv(x_in)); [dt, B, C] = x_proj u;
//           y_dir = selective_scan(u, dt_proj dt, A, B, C, D, gate z)
//           and mix = y_fwd (Mamba) or (y_fwd + y_bwd) / 2 (Vim, bidirectional).
// The shift is D(y, x) (Site = BlockOutput: the mixer has no attention or MLP
// sub-layer to measure), computed in the residual epilogue that forms y.
// Pruning keeps token order (the next scan depends on it): CompressOp<Prune>
// selects ascending indices, then gathers. A per-sample `keep_token` (Vim's
// class token, in the middle of the sequence) is ranked +inf on a copy of
// the scores, so it is always kept, and its new position is written back.

#include <climits>
#include <cstdint>
#include <type_traits>

#include "../core/backend.hpp"
#include "../cpu/backend.hpp"  // the CPU executor is always there; CUDA: repshift/cuda.hpp
#include "../params/residual_rows.hpp"
#include "../policies/backbone.hpp"
#include "../policies/combination.hpp"
#include "../policies/importance.hpp"
#include "../policies/metric.hpp"
#include "../policies/site.hpp"
#include "../params/selective_scan.hpp"
#include "block.hpp"
#include "compress_op.hpp"
#include "importance_op.hpp"
#include "ssm_weights.hpp"
#include "workspace.hpp"

namespace repshift {

// One call of an SSM block. On CUDA every pointer is a device pointer.
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

template <class Site, class Importance, class Compress, class Norm>
struct Block<policies::SsmScan, Site, Importance, Compress, Norm> {
  // What the block can do, asked of the policies' own traits: the one score
  // pair it forms is D(y, x); the scan needs the survivors alone (no fused
  // or merged rows) and in order; Vim / Mamba normalise before the mixer.
  using Rule = policies::CombinationRule<policies::SsmScan, Site, Importance, Compress>;
  static_assert(Rule::site_ok,
                "Block<SsmScan>: Site must be BlockOutput (a Mamba mixer has no attention or MLP sub-layer to measure)");
  static_assert(Rule::compress_ok, "Block<SsmScan>: Compress must be Prune (the scan needs the surviving tokens in order)");
  static_assert(!Norm::post_norm, "Block<SsmScan>: Norm must be PreNorm (Vim / Mamba)");
  static_assert(policies::is_importance_v<Importance> && Rule::importance_ok,
                "Block<SsmScan>: Importance must be a shift metric, TokenNorm or Random (there is no attention map)");

  using site = Site;
  using importance = Importance;
  using norm = Norm;
  using ScoreOp = ImportanceOp<Importance>;
  using Compression = CompressOp<Compress>;
  static constexpr int output_tokens(int tokens, int keep) { return keep < tokens ? keep : tokens; }

  // The workspace of a forward over `rows` = batch * tokens token rows.
  static WorkspaceExtent workspace_extent(const SsmBlockWeights& w, std::int64_t rows) {
    // norm, branch, full: dim; xz: 2 inner; u, dt, mix: inner; proj: dt_rank + 2 state
    const std::int64_t per_row = 3 * w.dim + 5 * w.inner + w.proj_width();
    return {detail::checked_extent("Block<SsmScan>::workspace_extent", "activations", 1, rows, per_row,
                                   sizeof(float)),
            2 * rows /*scores, ranked*/, rows /*keep_idx*/};
  }
  // Room for `rows` token rows: after this, a forward of that size
  // allocates nothing (and on CUDA is allowed to run).
  template <class Exec>
  static void reserve(Workspace<Exec, float>& ws, const SsmBlockWeights& w, std::int64_t rows) {
    detail::require_positive("Block<SsmScan>::reserve", "rows", rows);
    ws.reserve(workspace_extent(w, rows));
  }

  static void check(const SsmBlockWeights& w, const SsmBlockArgs& a) {
    constexpr const char* where = "Block<SsmScan>::forward";
    w.check(where);
    detail::check_token_block_args(where, a.x, a.y, a.batch, a.tokens, a.keep, a.protect);
    // The kept token needs a slot beside the protected ones, where any are dropped.
    if (a.keep_token && a.keep < a.tokens) {
      detail::require_at_most(where, "protect + 1 (keep_token)", std::int64_t(a.protect) + 1, "keep", a.keep);
    }
    detail::checked_extent(where, "activations", a.batch, a.tokens, 2 * w.inner, sizeof(float));
    detail::require_at_most(where, "batch * tokens", std::int64_t(a.batch) * a.tokens, "INT_MAX", INT_MAX);
    const std::int64_t row_bytes = w.dim * std::int64_t(sizeof(float));
    detail::require_y_apart_from_x(where, a.x, row_bytes * a.batch * a.tokens, a.y,
                                   row_bytes * a.batch * output_tokens(a.tokens, a.keep));
  }

  // x -> y on Exec: rs::Host{} or rs::Cuda{stream} (after including
  // repshift/cuda.hpp). CUDA only enqueues: it neither allocates nor
  // synchronises; a bad keep_token is reported through exec.status there
  // (the CPU throws).
  template <class Exec>
  static void forward(const Exec& exec, const SsmBlockWeights& w, const SsmBlockArgs& a, Workspace<Exec, float>& ws) {
    using B = Backend<Exec>;
    constexpr const char* where = "Block<SsmScan>::forward";
    check(w, a);
    if (a.keep_token) B::check_kept_token(exec, a.keep_token, a.batch, a.tokens);
    const std::int64_t rows = std::int64_t(a.batch) * a.tokens, dim = w.dim, inner = w.inner;
    ws.require(where, workspace_extent(w, rows), "{} rows of dim {} / inner {}", rows, dim, inner);
    const Scratch s = Scratch::carve(ws, w, rows);
    const bool prune = a.keep < a.tokens;
    const bool score = prune || a.scores != nullptr;
    float* scores = a.scores ? a.scores : s.scores;

    B::rms_norm_rows(exec, a.x, s.norm, rows, dim, w.norm());
    B::linear(exec, ws.context(), cf(s.norm), rows, dim, w.in_proj_weight, kNoBias, 2 * inner, s.xz);
    const float scale = w.bidirectional() ? 0.5f : 1.0f;  // Vim averages the two directions
    scan_branch<ScanDirection::Forward, false>(exec, ws.context(), w, w.forward, a, scale, s);
    if (w.bidirectional()) scan_branch<ScanDirection::Backward, true>(exec, ws.context(), w, w.backward, a, scale, s);
    B::linear(exec, ws.context(), cf(s.mix), rows, inner, w.out_proj_weight, kNoBias, dim, s.branch);

    ResidualRows<float> e;
    e.branch = s.branch;
    e.residual = a.x;
    e.block_input = a.x;
    e.out = prune ? s.full : a.y;
    e.rows = rows;
    e.channels = dim;
    e.scores = scores;
    residual_with_score<Importance, Site::operands, false>(exec, e, score);
    if (score) {
      ImportanceInputs in;
      in.batch = a.batch;
      in.tokens = a.tokens;
      in.seed = a.seed;
      ScoreOp::score(exec, in, scores);
    }
    if (!prune) return;

    int* keep_idx = a.keep_idx ? a.keep_idx : s.keep_idx;
    const float* ranked = scores;
    if (a.keep_token) {
      // The caller's scores stay as computed: the kept token ranks on a copy.
      B::rank_kept_token(exec, scores, a.keep_token, a.batch, a.tokens, s.ranked);
      ranked = s.ranked;
    }
    CompressInputs<float> c;
    c.src = s.full;
    c.dst = a.y;
    c.scores = ranked;
    c.keep_idx = keep_idx;
    c.batch = a.batch;
    c.tokens = a.tokens;
    c.keep = a.keep;
    c.channels = dim;
    c.protect = a.protect;
    Compression::run(exec, c);
    if (a.keep_token) B::relocate_kept_token(exec, keep_idx, a.batch, a.keep, a.keep_token);
  }

 private:
  // A GEMM without bias (the typed null lets the CUDA op deduce T).
  static constexpr const float* kNoBias = nullptr;
  static const float* cf(const float* p) { return p; }

  // The forward's buffers, carved from a workspace for `rows` rows.
  struct Scratch {
    float *norm, *xz, *u, *dt, *mix, *proj, *branch, *full;
    float *scores, *ranked;
    int* keep_idx;

    template <class Exec>
    static Scratch carve(const Workspace<Exec, float>& ws, const SsmBlockWeights& w, std::int64_t rows) {
      Scratch s;
      s.norm = ws.values();
      s.xz = s.norm + rows * w.dim;
      s.u = s.xz + rows * 2 * w.inner;
      s.dt = s.u + rows * w.inner;
      s.mix = s.dt + rows * w.inner;
      s.proj = s.mix + rows * w.inner;
      s.branch = s.proj + rows * w.proj_width();
      s.full = s.branch + rows * w.dim;
      s.scores = ws.floats();
      s.ranked = s.scores + rows;
      s.keep_idx = ws.ints();
      return s;
    }
  };

  // conv -> x_proj -> dt_proj -> scan for one direction, into s.mix
  // (written by the first direction, added by the second).
  template <ScanDirection Dir, bool Accumulate, class Exec>
  static void scan_branch(const Exec& exec, typename Backend<Exec>::Context ctx, const SsmBlockWeights& w,
                          const ScanBranchWeights& b, const SsmBlockArgs& a, float scale, const Scratch& s) {
    using B = Backend<Exec>;
    const std::int64_t rows = std::int64_t(a.batch) * a.tokens, inner = w.inner, width = w.proj_width();
    const std::int64_t dt_rank = w.dt_rank;

    CausalConvParams conv;
    conv.x = s.xz;
    conv.x_stride = 2 * inner;
    conv.weight = b.conv_weight;
    conv.bias = b.conv_bias;
    conv.out = s.u;
    conv.out_stride = inner;
    conv.batch = a.batch;
    conv.length = a.tokens;
    conv.channels = inner;
    conv.kernel = w.conv_kernel;
    B::template causal_conv1d_silu<Dir>(exec, conv);

    B::linear(exec, ctx, cf(s.u), rows, inner, b.x_proj_weight, kNoBias, width, s.proj);
    B::linear_strided(exec, ctx, cf(s.proj), width, rows, dt_rank, b.dt_proj_weight, kNoBias, inner, s.dt);

    SelectiveScanParams scan;
    scan.u = s.u;
    scan.u_stride = inner;
    scan.dt = s.dt;
    scan.dt_stride = inner;
    scan.dt_bias = b.dt_proj_bias;
    scan.A_log = b.A_log;
    scan.B = s.proj + dt_rank;
    scan.C = s.proj + dt_rank + w.state;
    scan.bc_stride = width;
    scan.D = b.D;
    scan.z = s.xz + inner;
    scan.z_stride = 2 * inner;
    scan.out = s.mix;
    scan.out_stride = inner;
    scan.out_scale = scale;
    scan.batch = a.batch;
    scan.length = a.tokens;
    scan.channels = inner;
    scan.state = w.state;
    B::template selective_scan<Dir, Accumulate>(exec, scan);
  }
};

}  // namespace repshift
