#pragma once
// Block<Transformer, Site, Importance, Compress, Norm>: one forward for every
// executor, written against Backend<Exec> (cpu/backend.hpp,
// cuda/backend.cuh) and run with a Workspace<Exec, T>.
//
// Pre-norm (ViT/DeiT):   x' = x + Attn(LN1 x);    y = x' + MLP(LN2 x')
// Post-norm (BERT):      x' = LN1(x + Attn x);    y = LN2(x' + MLP x')
//
// Dense layers are GEMMs (OpenBLAS, cuBLASLt); every GELU, residual add
// and LayerNorm is a row epilogue (and every bias where the GEMM does not
// add it: Backend::gemm_adds_bias), and the shift score for Site is
// computed inside the residual epilogue that already reads both of its
// operands (no extra pass). Attention is the flash kernel: no N x N buffer.
//
// Batches are padded [batch, tokens, dim] or packed [total, dim] with
// cu_seqlens (core/varlen.hpp); both run as one packed schedule (a padded batch
// is the packed one with equal lengths), so a sample's result does not
// depend on the batch it runs in, and padding costs nothing.
//
// Compression (a sample keeps fewer than it has): the importance's scores
// (ImportanceOp), then CompressOp<Compress>: Prune selects and gathers;
// Fuse appends the dropped tokens' importance-weighted mean; Merge averages
// the least important tokens into their most similar ones (size-weighted,
// cpu/merge_tokens.hpp) and the next layer biases attention by log(size).
// Site Attention prunes in the middle of the block, so the MLP runs on the
// kept tokens only; sites Mlp and BlockOutput prune the block's output. Since
// y = x' + MLP(.) row by row, gathering y equals the paper's "gather x' and
// the MLP output, then add".

#include <algorithm>
#include <climits>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "../params/attention.hpp"
#include "../core/backend.hpp"
#include "../cpu/backend.hpp"  // the CPU executor is always there; CUDA: repshift/cuda.hpp
#include "../params/residual_rows.hpp"
#include "../policies/backbone.hpp"
#include "../policies/combination.hpp"
#include "../policies/importance.hpp"
#include "../policies/metric.hpp"
#include "../policies/site.hpp"
#include "block.hpp"
#include "compress_op.hpp"
#include "importance_op.hpp"
#include "transformer_weights.hpp"
#include "workspace.hpp"

namespace repshift {

// One call of a transformer block. T is the activations' storage type
// (float on the CPU; on CUDA x, y, scores, keep_idx and the sizes are
// device pointers, the three cu_seqlens arrays host memory).
template <class T>
struct BasicTransformerBlockArgs {
  const T* x = nullptr;  // [batch, tokens, dim]
  T* y = nullptr;        // [batch, keep (+1 with Fuse when keep < tokens), dim]
  int batch = 0, tokens = 0;
  int keep = 0;              // == tokens: no pruning
  int protect = 1;           // leading tokens always kept (CLS)
  float* scores = nullptr;   // optional [batch, tokens]: the Site's shift, written when set
  int* keep_idx = nullptr;   // optional [batch, keep]: kept indices (per sample, ascending), written when pruning
  // Packed batches (FlashAttention's varlen layout): with cu_seqlens set, x
  // holds cu_seqlens[batch] rows, sample b's at [cu_seqlens[b],
  // cu_seqlens[b + 1]), and `tokens` / `keep` are unused. Sample b keeps
  // kept_cu_seqlens[b + 1] - kept_cu_seqlens[b] tokens (null: all of them;
  // PruneSchedule::keep_at gives the paper's count from its own length).
  // y's rows follow out_cu_seqlens, which the block writes (kept rows, plus
  // Fuse's token for a sample that dropped some). scores, keep_idx, sizes
  // and kept_sizes are packed the same way (by cu_seqlens, kept_cu_seqlens).
  // All three arrays are host memory.
  const int* cu_seqlens = nullptr;       // optional [batch + 1]
  const int* kept_cu_seqlens = nullptr;  // optional [batch + 1], packed only
  int* out_cu_seqlens = nullptr;         // [batch + 1], required when packed
  std::uint64_t seed = 0;        // for policies::Random importance (models pass the layer index)
  // Token sizes (Compress = Merge only): how many original tokens each row
  // stands for. They weight the merge and add log(size) to the attention
  // logits (proportional attention). Null: all 1.
  const float* sizes = nullptr;  // optional [batch, tokens]
  float* kept_sizes = nullptr;   // optional [batch, keep]: sizes after merging, for the next layer
  // y gets each sample's first token only ([batch, 1, dim]; packed:
  // out_cu_seqlens = 0, 1, ..., batch). Attention still runs over every
  // token; the projection, the residuals and the MLP run on the first rows
  // alone. For the last block before a class-token head, which reads
  // nothing else. Compresses nothing and writes no scores.
  bool first_token_only = false;

  // x -> y over all tokens, no pruning; set keep (and the optional
  // outputs) on the result to prune.
  static BasicTransformerBlockArgs dense(const T* x, T* y, int batch, int tokens) {
    BasicTransformerBlockArgs a;
    a.x = x;
    a.y = y;
    a.batch = batch;
    a.tokens = tokens;
    a.keep = tokens;
    return a;
  }
};

using TransformerBlockArgs = BasicTransformerBlockArgs<float>;

// Importance: a shift metric (fused into the residual epilogue) or a baseline
// importance (policies/importance.hpp), computed where the site scores.
template <class Site, class Importance, class Compress, class Norm>
struct Block<policies::Transformer, Site, Importance, Compress, Norm> {
  static_assert(policies::is_site_v<Site>, "Block: Site must be Attention, Mlp, BlockOutput or Update<Attention | Mlp>");
  static_assert(policies::is_importance_v<Importance>,
                "Block: Importance must meet the metric contract or be Random / ClsAttention / AttentionReceived");
  static_assert(policies::is_norm_v<Norm>, "Block: Norm must be PreNorm or PostNorm");
  static_assert(policies::is_compress_v<Compress>, "Block<Transformer>: Compress must be Prune, Fuse or Merge");
  static_assert(policies::CombinationRule<policies::Transformer, Site, Importance, Compress>::importance_ok,
                "Block: ClsAttention and AttentionReceived are read off the attention map, so they need Site = Attention");

  using site = Site;
  using importance = Importance;
  using norm = Norm;
  using ScoreOp = ImportanceOp<Importance>;
  using Compression = CompressOp<Compress>;
  static constexpr bool kPostNorm = Norm::post_norm;
  static constexpr int kExtra = Compression::extra_tokens;
  static constexpr bool kMerge = Compression::tracks_sizes;

  // Tokens the block outputs for `keep` of `tokens` (per sample).
  static constexpr int output_tokens(int tokens, int keep) { return keep < tokens ? keep + kExtra : tokens; }

  // The workspace of a forward over `rows` token rows whose longest sample
  // has `longest` tokens (the attention map's extent, ClsAttention only).
  template <class T>
  static WorkspaceExtent workspace_extent(const BasicTransformerBlockWeights<T>& w, std::int64_t batch,
                                          std::int64_t rows, std::int64_t longest) {
    constexpr const char* where = "Block<Transformer>::workspace_extent";
    w.check_sizes(where);
    const std::int64_t map =
        ScoreOp::needs_map ? detail::checked_extent(where, "attention map",
                                                    detail::checked_extent(where, "attention map", batch, w.heads, 1, 1),
                                                    longest, longest, sizeof(float))
                              : 0;
    return {detail::checked_extent(where, "activations", 1, rows, 7 * w.dim + w.mlp_hidden, sizeof(T)),
            2 * rows + map, rows, 3 * (batch + 1)};
  }
  // Room for `batch` samples of up to `tokens` tokens: after this, a
  // forward of that size allocates nothing (and on CUDA is allowed to run).
  template <class Exec, class T>
  static void reserve(Workspace<Exec, T>& ws, const BasicTransformerBlockWeights<T>& w, std::int64_t batch,
                      std::int64_t tokens) {
    constexpr const char* where = "Block<Transformer>::reserve";
    detail::require_positive(where, "batch", batch);
    detail::require_positive(where, "tokens", tokens);
    w.check_sizes(where);
    ws.reserve(workspace_extent(w, batch, detail::checked_extent(where, "batch x tokens", batch, tokens, 1, 1), tokens));
  }

  template <class T>
  static void check(const BasicTransformerBlockWeights<T>& w, const BasicTransformerBlockArgs<T>& a) {
    constexpr const char* where = "Block<Transformer>::forward";
    w.check(where);
    if (a.cu_seqlens) {
      detail::require_pointer(where, "x", a.x);
      detail::require_pointer(where, "y", a.y);
      detail::require_pointer(where, "out_cu_seqlens", a.out_cu_seqlens);
      detail::require_non_negative(where, "protect", a.protect);
      detail::check_cu_seqlens(where, "cu_seqlens", a.cu_seqlens, a.batch);
      detail::check_min_seqlen(where, "cu_seqlens", a.cu_seqlens, a.batch, std::max(1, a.protect), "max(1, protect)");
      if (a.kept_cu_seqlens) detail::check_kept_seqlens(where, a.cu_seqlens, a.kept_cu_seqlens, a.batch, a.protect);
    } else {
      detail::check_token_block_args(where, a.x, a.y, a.batch, a.tokens, a.keep, a.protect);
      if (a.kept_cu_seqlens) detail::fail(where, "kept_cu_seqlens belongs to packed batches: set cu_seqlens too");
    }
    if constexpr (policies::reads_class_token<Importance>()) {
      const bool drops = a.cu_seqlens ? a.kept_cu_seqlens != nullptr : a.keep < a.tokens;
      if (drops && a.protect < 1) {
        detail::fail(where,
                     "importance {} reads query row 0 as the class token: protect = {} would let a layer drop it "
                     "(set protect >= 1; without a class token, rank by attn_received)",
                     Importance::name, a.protect);
      }
    }
    std::int64_t out_rows = 0;
    for (int b = 0; b < a.batch; ++b) {
      const int n = a.cu_seqlens ? a.cu_seqlens[b + 1] - a.cu_seqlens[b] : a.tokens;
      const int k = a.cu_seqlens ? (a.kept_cu_seqlens ? a.kept_cu_seqlens[b + 1] - a.kept_cu_seqlens[b] : n) : a.keep;
      Compression::check_reachable(where, n, k, a.protect);
      out_rows += a.first_token_only ? 1 : output_tokens(n, k);
    }
    if (a.first_token_only) {
      if (a.kept_cu_seqlens) detail::fail(where, "first_token_only compresses nothing: kept_cu_seqlens must be null");
      if (!a.cu_seqlens && a.keep != a.tokens) {
        detail::fail(where, "first_token_only compresses nothing: keep = {} must equal tokens = {}", a.keep, a.tokens);
      }
      if (a.scores || a.keep_idx || a.kept_sizes) {
        detail::fail(where, "first_token_only computes no scores: scores, keep_idx and kept_sizes must be null");
      }
    }
    if (!kMerge && (a.sizes || a.kept_sizes)) {
      detail::fail(where, "sizes / kept_sizes belong to Compress = Merge, not {}", Compress::name);
    }
    // GEMM extents are int: rows and every leading dimension must fit.
    const std::int64_t rows = a.cu_seqlens ? std::int64_t(a.cu_seqlens[a.batch]) : std::int64_t(a.batch) * a.tokens;
    const std::int64_t widest = std::max<std::int64_t>(3 * w.dim, w.mlp_hidden);
    detail::checked_extent(where, "activations", 1, rows, widest, sizeof(T));
    detail::require_at_most(where, "batch * tokens", rows, "INT_MAX", INT_MAX);
    const std::int64_t row_bytes = w.dim * std::int64_t(sizeof(T));
    detail::require_y_apart_from_x(where, a.x, rows * row_bytes, a.y, out_rows * row_bytes);
  }

  // x -> y on Exec: rs::Host{} with T = float, or rs::Cuda{stream} (after
  // including repshift/cuda.hpp) with T = float, __half or __nv_bfloat16,
  // every tensor pointer a device pointer. CUDA only enqueues: it neither
  // allocates nor synchronises, except that a packed batch uploads the
  // layer's offsets (one small copy from pageable memory).
  template <class Exec, class T>
  static void forward(const Exec& exec, const BasicTransformerBlockWeights<T>& w,
                      const BasicTransformerBlockArgs<T>& a, Workspace<Exec, T>& ws) {
    static_assert(Backend<Exec>::template supports_v<T>, "Block<Transformer>::forward: T is not a storage type of Exec");
    using B = Backend<Exec>;
    check(w, a);
    const bool packed = a.cu_seqlens != nullptr;
    TokenPlan& plan = ws.plan();
    plan.plan(a.batch, a.tokens, a.keep, a.cu_seqlens, a.kept_cu_seqlens, kExtra);
    if (a.first_token_only) plan.first_token_only();
    const std::int64_t dim = w.dim, rows = plan.in_rows(), longest = plan.max_in;
    ws.require("Block<Transformer>::forward", workspace_extent(w, a.batch, rows, longest),
               "{} rows of dim {} / mlp_hidden {}{}", rows, dim, w.mlp_hidden,
               ScoreOp::needs_map ? " with the attention map" : "");
    const Scratch<T> s = Scratch<T>::carve(ws, rows, dim, w.mlp_hidden);
    const PlanOffsets offsets = ws.stage_plan(exec, packed);
    const bool prune = plan.drops;
    const bool score = prune || a.scores != nullptr;
    float* scores = a.scores ? a.scores : s.scores;
    int* keep_idx = a.keep_idx ? a.keep_idx : s.keep_idx;
    // Biases the GEMM leaves to the kernel after it.
    const auto deferred = [](const T* bias) { return B::gemm_adds_bias ? nullptr : bias; };
    const auto in_gemm = [](const T* bias) { return B::gemm_adds_bias ? bias : nullptr; };
    ImportanceInputs importance;
    importance.batch = a.batch;
    importance.tokens = longest;
    importance.heads = w.heads;
    importance.cu_seqlens = offsets.in;
    importance.seed = a.seed;
    importance.attention_map = s.map;

    // ---- attention sub-layer -------------------------------------------------
    const T* attn_in = a.x;
    if constexpr (!kPostNorm) {
      B::layer_norm_rows(exec, a.x, dim, s.ln, dim, rows, dim, w.norm1());
      attn_in = s.ln;
    }
    B::linear(exec, ws.context(), attn_in, rows, dim, w.qkv_weight, in_gemm(w.qkv_bias), 3 * dim, s.qkv);
    auto attention = BasicAttentionParams<T>::contiguous(s.qkv, deferred(w.qkv_bias), s.attn, a.batch, longest,
                                                         w.heads, w.head_dim());
    attention.cu_seqlens = offsets.in;
    if (kMerge && a.sizes) {
      B::log_sizes(exec, a.sizes, rows, s.log_sizes);
      attention.key_bias = s.log_sizes;  // proportional attention
    }
    if constexpr (ScoreOp::needs_map) {
      B::attention_with_map(exec, attention, s.map);
    } else {
      B::flash_attention(exec, attention);
    }
    // first_token_only: the rest of the block runs on each sample's first
    // row of attn and x, gathered into qkv (free once attention has read it).
    std::int64_t tail_rows = rows;
    const T* attn_out = s.attn;
    const T* x = a.x;
    if (a.first_token_only) {
      tail_rows = a.batch;
      T* first_rows = s.qkv;
      B::fill_ints(exec, keep_idx, a.batch, 0);
      for (const T* src : {attn_out, x}) {
        B::gather_tokens(exec, GatherParams<T>::contiguous(src, keep_idx, first_rows, a.batch, plan.max_in, 1, dim, 1,
                                                           PackedRows{offsets.in, offsets.kept}, offsets.out));
        first_rows += tail_rows * dim;
      }
      attn_out = s.qkv;
      x = s.qkv + tail_rows * dim;
    }
    B::linear(exec, ws.context(), attn_out, tail_rows, dim, w.proj_weight, in_gemm(w.proj_bias), dim, s.branch);

    constexpr bool kScoreAttention = Site::scores_attention;
    ResidualRows<T> e1;
    e1.branch = s.branch;
    e1.bias = deferred(w.proj_bias);
    e1.residual = x;
    e1.out = s.x1;
    e1.rows = tail_rows;
    e1.channels = dim;
    e1.scores = scores;
    if constexpr (kPostNorm) {
      e1.ln_post = w.norm1();
    } else {
      e1.ln_out = s.ln;  // LN2(x') feeds the MLP
      e1.ln_next = w.norm2();
    }
    residual_with_score<Importance, kScoreAttention ? Site::operands : ScoreOperands::None, kPostNorm>(
        exec, e1, kScoreAttention && score);
    if (kScoreAttention && score) ScoreOp::score(exec, importance, scores);

    // Compresses src (the plan's input rows) to dst (its output rows).
    // Merge matches on the layer's keys: qkv's K part, read before qkv is
    // reused, with the K bias where the GEMM has not added it.
    const auto compress = [&](const T* src, T* dst) {
      CompressInputs<T> c;
      c.src = src;
      c.dst = dst;
      c.scores = scores;
      c.keep_idx = keep_idx;
      c.batch = a.batch;
      c.tokens = plan.max_in;
      c.keep = plan.max_kept;
      c.channels = dim;
      c.protect = a.protect;
      c.offsets = offsets;
      c.keys = s.qkv + dim;
      c.keys_token_stride = 3 * dim;
      c.key_bias = deferred(w.qkv_bias) ? w.qkv_bias + dim : nullptr;
      c.sizes = a.sizes;
      c.kept_sizes = a.kept_sizes;
      Compression::run(exec, c);
    };

    // ---- compress between the sub-layers (Attention site) -------------------
    std::int64_t mlp_rows = tail_rows;
    const T* x1 = s.x1;
    const T* mlp_in = kPostNorm ? s.x1 : s.ln;
    if constexpr (kScoreAttention) {
      if (prune) {
        // attn and qkv are free after this: they take the compressed x' and LN2(x').
        compress(s.x1, s.attn);
        x1 = s.attn;
        mlp_rows = plan.out_rows();
        if constexpr (!kPostNorm) {
          B::layer_norm_rows(exec, x1, dim, s.qkv, dim, mlp_rows, dim, w.norm2());
          mlp_in = s.qkv;
        } else {
          mlp_in = x1;
        }
      }
    }

    // ---- MLP sub-layer --------------------------------------------------------
    B::linear_gelu(exec, ws.context(), mlp_in, mlp_rows, dim, w.fc1_weight, w.fc1_bias, w.mlp_hidden, s.hidden);
    B::linear(exec, ws.context(), static_cast<const T*>(s.hidden), mlp_rows, w.mlp_hidden, w.fc2_weight,
              in_gemm(w.fc2_bias), dim, s.branch);

    constexpr bool kScoreEnd = !kScoreAttention;
    const bool gather_output = kScoreEnd && prune;
    ResidualRows<T> e3;
    e3.branch = s.branch;
    e3.bias = deferred(w.fc2_bias);
    e3.residual = x1;
    // x' is dead once read row by row, so the full output may overwrite it.
    e3.out = gather_output ? s.x1 : a.y;
    e3.block_input = x;
    e3.rows = mlp_rows;
    e3.channels = dim;
    e3.scores = scores;
    if constexpr (kPostNorm) e3.ln_post = w.norm2();
    residual_with_score<Importance, kScoreEnd ? Site::operands : ScoreOperands::None, kPostNorm>(
        exec, e3, kScoreEnd && score);
    if (kScoreEnd && score) ScoreOp::score(exec, importance, scores);
    if (gather_output) compress(s.x1, a.y);
    if (a.out_cu_seqlens) std::copy(plan.out.begin(), plan.out.end(), a.out_cu_seqlens);
  }

 private:
  // The forward's buffers, carved from a workspace for `rows` rows.
  template <class T>
  struct Scratch {
    T *qkv, *ln, *attn, *branch, *x1, *hidden;
    float *scores, *log_sizes, *map;
    int* keep_idx;

    template <class Exec>
    static Scratch carve(const Workspace<Exec, T>& ws, std::int64_t rows, std::int64_t dim, std::int64_t hidden) {
      Scratch s;
      s.qkv = ws.values();
      s.ln = s.qkv + rows * 3 * dim;
      s.attn = s.ln + rows * dim;
      s.branch = s.attn + rows * dim;
      s.x1 = s.branch + rows * dim;
      s.hidden = s.x1 + rows * dim;
      (void)hidden;  // the last slice: [rows, hidden]
      s.scores = ws.floats();
      s.log_sizes = s.scores + rows;
      s.map = s.log_sizes + rows;
      s.keep_idx = ws.ints();
      return s;
    }
  };
};

}  // namespace repshift
