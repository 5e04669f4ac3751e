#pragma once
// Backend<Host>: every op a Block, a model or an entry point runs, on the
// CPU (OpenMP threads; dense layers on oneDNN with prepacked weights where
// the build has it, else OpenBLAS). The blocks and models are written
// once against this vocabulary (cuda/backend.cuh is the GPU's).
//
// Where the executors differ, a trait says so:
//   gemm_adds_bias = false: the GEMM writes raw products and the bias rides
//     in the next row epilogue (the attention kernel, the residual
//     epilogue), one pass fewer over the activations; linear_gelu takes its
//     bias itself (oneDNN fuses bias and GELU into the matmul);
//   grows_on_demand = true: a workspace that is too small grows (host
//     allocation is cheap and never synchronises anything).

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "../core/backend.hpp"
#include "../core/dtype.hpp"
#include "../params/merge_tokens.hpp"
#include "../params/fuse_tokens.hpp"
#include "attention.hpp"
#include "conv2d.hpp"
#include "embed_tokens.hpp"
#include "epilogue.hpp"
#include "fuse_tokens.hpp"
#include "gather_tokens.hpp"
#include "gemm.hpp"
#include "host_buffer.hpp"
#include "kept_token.hpp"
#include "layer_norm.hpp"
#include "line_prune.hpp"
#if defined(REPSHIFT_HAS_ONEDNN)
#include "onednn_linear.hpp"
#endif
#include "merge_tokens.hpp"
#include "parallel.hpp"
#include "patch_embed.hpp"
#include "pool_tokens.hpp"
#include "residual_map.hpp"
#include "rms_norm.hpp"
#include "select_top.hpp"
#include "selective_scan.hpp"
#include "shift_score.hpp"
#include "token_scores.hpp"

namespace repshift {

template <>
inline constexpr bool is_backend_v<Host> = true;

template <>
struct Backend<Host> {
  template <class T>
  static constexpr bool supports_v = is_host_storage_v<T>;
  template <class T>
  using Buffer = cpu::HostBuffer<T>;
  // The dense layers' packed weights and primitives (oneDNN builds), kept
  // by the workspace; null (or no oneDNN): OpenBLAS, which keeps its own.
  struct Context {
#if defined(REPSHIFT_HAS_ONEDNN)
    cpu::DenseLayers* dense = nullptr;
#endif
  };
  // Without oneDNN's state (no oneDNN, or a default Context) the dense
  // layers are OpenBLAS's, float only.
  static void require_f32_dense(const Host& host) {
    if (cpu::dense_math(host, "Backend<Host>::linear") != DenseMath::F32) {
      repshift::detail::fail("Backend<Host>::linear",
                             "dense_math = bf16 runs on oneDNN: this build has no libdnnl-dev (REPSHIFT_HAS_ONEDNN "
                             "is off) or the call has no workspace context");
    }
  }
  template <class Ws>
  static Context context(Context, Ws& ws) {
#if defined(REPSHIFT_HAS_ONEDNN)
    return Context{&ws.template kept<cpu::DenseLayers>()};
#else
    (void)ws;
    return {};
#endif
  }

  static constexpr bool gemm_adds_bias = false;
  static constexpr bool grows_on_demand = true;

  // ---- dense layers and row epilogues --------------------------------------
  // y [rows, n] = x [rows, k] . W^T (+ bias when not null).
  static void linear(const Host& host, Context ctx, const float* x, std::int64_t rows, std::int64_t k, const float* w,
                     const float* bias, std::int64_t n, float* y) {
    linear_strided(host, ctx, x, k, rows, k, w, bias, n, y);
  }
  // y = GELU(x . W^T + bias): an MLP's first layer. oneDNN fuses both into
  // the matmul; OpenBLAS is followed by one bias + GELU pass.
  static void linear_gelu(const Host& host, Context ctx, const float* x, std::int64_t rows, std::int64_t k,
                          const float* w, const float* bias, std::int64_t n, float* y) {
#if defined(REPSHIFT_HAS_ONEDNN)
    if (ctx.dense) return ctx.dense->linear(host, x, k, rows, k, w, bias, n, y, /*gelu=*/true);
#endif
    linear(host, ctx, x, rows, k, w, nullptr, n, y);
    cpu::bias_gelu(host, y, rows, n, bias);
  }
  static void layer_norm_rows(const Host& host, const float* src, std::int64_t src_stride, float* dst,
                              std::int64_t dst_stride, std::int64_t rows, std::int64_t channels,
                              const LayerNormParams<float>& norm) {
    cpu::layer_norm_rows(host, src, src_stride, dst, dst_stride, rows, channels, norm);
  }
  template <class Metric, ScoreOperands Operands, bool PostLN>
  static void residual_epilogue(const Host& host, const ResidualRows<float>& e) {
    cpu::residual_epilogue<Metric, Operands, PostLN>(host, e);
  }

  // ---- attention -----------------------------------------------------------
  static void flash_attention(const Host& host, const AttentionParams& p) { cpu::flash_attention(host, p); }
  static void attention_with_map(const Host& host, const AttentionParams& p, float* map) {
    cpu::attention_with_map(host, p, map);
  }

  // ---- scores ---------------------------------------------------------------
  template <class Metric, class T>
  static void shift_score(const Host& host, const ShiftParams<T>& p) {
    cpu::shift_score<Metric>(host, p);
  }
  static void random_scores(const Host& host, std::uint64_t seed, std::int64_t batch, std::int64_t tokens,
                            float* scores, const int* cu_seqlens) {
    cpu::random_scores(host, seed, batch, tokens, scores, cu_seqlens);
  }
  // The map importances' scores: column means of the attention map over
  // heads and the class token's row (AllQueries = false) or every query.
  template <bool AllQueries>
  static void attention_column_means(const Host& host, const float* map, std::int64_t batch, std::int64_t heads,
                                     std::int64_t tokens, float* scores, const int* cu_seqlens) {
    cpu::attention_column_means<AllQueries>(host, map, batch, heads, tokens, scores, cu_seqlens);
  }
  static void log_sizes(const Host& host, const float* sizes, std::int64_t n, float* out) {
    cpu::log_sizes(host, sizes, n, out);
  }

  // ---- token compression ---------------------------------------------------
  static void select_top(const Host& host, const SelectParams& p) { cpu::select_top(host, p); }
  template <class T>
  static void gather_tokens(const Host& host, const GatherParams<T>& p) {
    cpu::gather_tokens(host, p);
  }
  static void fuse_dropped(const Host& host, const FuseParams<float>& p) { cpu::fuse_dropped(host, p); }
  static void merge_tokens(const Host& host, const MergeParams& p) { cpu::merge_tokens(host, p); }

  // ---- token assembly and pooling --------------------------------------------
  static void patchify(const Host& host, const float* images, std::int64_t batch, const PatchGeometry& g,
                       float* cols) {
    cpu::patchify(host, images, batch, g, cols);
  }
  static void assemble_tokens(const Host& host, const float* proj, const float* cls, const float* pos,
                              std::int64_t batch, std::int64_t tokens, std::int64_t dim, std::int64_t cls_index,
                              float* x) {
    cpu::assemble_tokens(host, proj, cls, pos, batch, tokens, dim, cls_index, x);
  }
  // Text models' input and the mean-pooled heads.
  static void embed_tokens(const Host& host, const EmbedParams<float>& p) { cpu::embed_tokens(host, p); }
  static void pool_tokens(const Host& host, const PoolParams<float>& p) { cpu::pool_tokens(host, p); }

  // ---- state-space scan (SsmScan: Mamba / Vim) ------------------------------
  // y [rows, n] = x [rows, k] . W^T (+ bias), x's rows ldx apart: dt_proj
  // reads the leading dt_rank columns of x_proj's wider rows, no copy.
  static void linear_strided(const Host& host, Context ctx, const float* x, std::int64_t ldx, std::int64_t rows,
                             std::int64_t k, const float* w, const float* bias, std::int64_t n, float* y) {
#if defined(REPSHIFT_HAS_ONEDNN)
    if (ctx.dense) return ctx.dense->linear(host, x, ldx, rows, k, w, bias, n, y);
#else
    (void)ctx;
#endif
    require_f32_dense(host);
    cpu::linear_bias(host, x, ldx, rows, k, w, bias, n, y);
  }
  // tokens > 0: one row per sample, its token[r] (cpu/rms_norm.hpp).
  static void rms_norm_rows(const Host& host, const float* src, float* dst, std::int64_t rows, std::int64_t channels,
                            const RmsNormParams<float>& norm, const int* token = nullptr, std::int64_t tokens = 0) {
    cpu::rms_norm_rows(host, src, dst, rows, channels, norm, token, tokens);
  }
  template <ScanDirection Dir>
  static void causal_conv1d_silu(const Host& host, const CausalConvParams& p) {
    cpu::causal_conv1d_silu<Dir>(host, p);
  }
  template <ScanDirection Dir, bool Accumulate>
  static void selective_scan(const Host& host, const SelectiveScanParams& p) {
    cpu::selective_scan<Dir, Accumulate>(host, p);
  }
  // The always-kept token (cpu/kept_token.hpp). Host indices are checked
  // before the forward runs; CUDA's are device memory, reported through
  // exec.status when ranked.
  static void check_kept_token(const Host&, const int* keep_token, std::int64_t batch, std::int64_t tokens) {
    cpu::check_kept_token(keep_token, batch, tokens);
  }
  static void rank_kept_token(const Host& host, const float* scores, const int* keep_token, std::int64_t batch,
                              std::int64_t tokens, float* ranked) {
    cpu::rank_kept_token(host, scores, keep_token, batch, tokens, ranked);
  }
  static void relocate_kept_token(const Host& host, const int* keep_idx, std::int64_t batch, std::int64_t keep,
                                  int* keep_token) {
    cpu::relocate_kept_token(host, keep_idx, batch, keep, keep_token);
  }
  static void fill_ints(const Host&, int* dst, std::int64_t n, int value) { std::fill(dst, dst + n, value); }

  // ---- CNN: conv and line ops ------------------------------------------------
  // Feature maps in a MapLayout: [B, C, H, W] (Nchw) or [B, H, W, C] (Nhwc).
  // The convolutions themselves are ConvOps<Host> (cpu/conv_ops.hpp).
  template <class Metric, bool Score>
  static void residual_map(const Host& host, const ResidualMap& r) {
    cpu::residual_map<Metric, Score>(host, r);
  }
  // Floats of ResidualMap::scratch: none, the pixel sums stay on the stack.
  template <class Metric>
  static std::int64_t residual_map_scratch(std::int64_t, std::int64_t, std::int64_t) {
    return 0;
  }
  static void line_means(const Host& host, const LineScoreParams& p) { cpu::line_means(host, p); }
  static void remove_lines(const Host& host, MapLayout layout, const RemoveLinesParams& p) {
    if (layout == MapLayout::Nhwc) return cpu::remove_lines_nhwc(host, p);
    cpu::remove_lines(host, p);
  }
  static void max_pool_3x3s2(const Host& host, MapLayout layout, const float* x, std::int64_t batch,
                             std::int64_t channels, std::int64_t H, std::int64_t W, float* out) {
    if (layout == MapLayout::Nhwc) return cpu::max_pool_3x3s2_nhwc(host, x, batch, H, W, channels, out);
    cpu::max_pool_3x3s2(host, x, batch * channels, H, W, out);
  }
  // out [batch, channels] = each channel's mean over hw pixels.
  static void global_avg_pool(const Host& host, MapLayout layout, const float* x, std::int64_t batch,
                              std::int64_t channels, std::int64_t hw, float* out) {
    if (layout == MapLayout::Nhwc) return cpu::global_avg_pool_nhwc(host, x, batch, hw, channels, out);
    cpu::global_avg_pool(host, x, batch * channels, hw, out);
  }
  // NCHW images in `layout`: x itself, or transposed into scratch.
  static const float* from_nchw(const Host& host, MapLayout layout, const float* x, std::int64_t batch,
                                std::int64_t channels, std::int64_t hw, float* scratch) {
    if (layout == MapLayout::Nchw) return x;
    cpu::nchw_to_nhwc(host, x, batch, channels, hw, scratch);
    return scratch;
  }

  // ---- memory ----------------------------------------------------------------
  // Host offsets are read where they lie: nothing to copy.
  static const int* stage_ints(const Host&, const std::vector<int>& host, Buffer<int>&) { return host.data(); }
  // n ints of executor memory into host memory.
  static void copy_to_host(const Host&, const int* src, std::int64_t n, int* dst) { std::copy(src, src + n, dst); }
  // A model's tensor where the kernels read it: the host weights themselves
  // (which the model then keeps alive: aliases_host_tensors).
  static constexpr bool aliases_host_tensors = true;
  static const float* adopt_tensor(const std::string& /*name*/, const std::vector<float>& host, Buffer<float>&) {
    return host.empty() ? nullptr : host.data();
  }
};

}  // namespace repshift
