#pragma once
// Block<Transformer, Site, Metric, Compress, Norm> on the CPU.
//
// Pre-norm (ViT/DeiT):   x' = x + Attn(LN1 x);    y = x' + MLP(LN2 x')
// Post-norm (BERT):      x' = LN1(x + Attn x);    y = LN2(x' + MLP x')
//
// Dense layers are BLAS GEMMs writing raw products; every bias, GELU,
// residual add and LayerNorm is applied by a row epilogue, and the shift
// score for Site is computed inside the residual epilogue that already
// reads both of its operands (no extra pass). Attention is the flash
// kernel: no N x N buffer.
//
// Batches are padded [batch, tokens, dim] or packed [total, dim] with
// cu_seqlens (varlen.hpp); both run as one packed schedule (a padded batch
// is the packed one with equal lengths), so a sample's result does not
// depend on the batch it runs in, and padding costs nothing.
//
// Pruning (a sample keeps fewer than it has): scores -> select -> gather;
// with Compress = Fuse one more row follows the kept ones: the dropped
// tokens' importance-weighted mean; Compress = Merge averages the least
// important tokens into their most similar ones instead (size-weighted,
// cpu/merge_tokens.hpp) and biases attention by log(token size).
// Site Attention prunes in the middle of the block, so the MLP runs on the
// kept tokens only; sites Mlp and Block prune the block's output. Since
// y = x' + MLP(.) row by row, gathering y equals the paper's "gather x' and
// the MLP output, then add".

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "../cpu/attention.hpp"
#include "../cpu/backend.hpp"
#include "../cpu/epilogue.hpp"
#include "../cpu/gemm.hpp"
#include "../cpu/merge_tokens.hpp"
#include "../entry_points.hpp"
#include "../policies/backbone.hpp"
#include "../policies/importance.hpp"
#include "../policies/metric.hpp"
#include "../policies/site.hpp"
#include "block.hpp"
#include "transformer_weights.hpp"

namespace repshift {

struct Cuda;  // repshift/cuda/exec.cuh
namespace cuda {
template <class T>
class TransformerWorkspace;  // blocks/transformer_block.cuh
}

// One call of a transformer block. T is the activations' storage type
// (float on the CPU; on CUDA every pointer is a device pointer).
template <class T>
struct BasicTransformerBlockArgs {
  const T* x = nullptr;  // [batch, tokens, dim]
  T* y = nullptr;        // [batch, keep (+1 with Fuse when keep < tokens), dim]
  int batch = 0, tokens = 0;
  int keep = 0;              // == tokens: no pruning
  int protect = 1;           // leading tokens always kept (CLS)
  float* scores = nullptr;   // optional [batch, tokens]: the Site's shift, written when set
  int* keep_idx = nullptr;   // optional [batch, keep]: kept indices (per sample, ascending), written when pruning
  // Padding (BERT-style batches of unequal length): sample b's tokens
  // [lengths[b], tokens) are padding. They are masked out as attention keys,
  // score NaN (so pruning drops them first), and after pruning sample b has
  // kept_lengths[b] = min(lengths[b], keep) valid tokens, padding last.
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

// Reusable scratch for a block forward; grows on demand, so a model that
// sizes it once for its largest layer never allocates again.
class TransformerWorkspace {
 public:
  void reserve(std::int64_t batch, std::int64_t tokens, std::int64_t dim, std::int64_t mlp_hidden) {
    const std::int64_t rows = batch * tokens;
    const std::int64_t floats = rows * (3 * dim /*qkv*/ + dim /*ln*/ + dim /*attn*/ + dim /*branch*/ +
                                        dim /*x'*/ + mlp_hidden + 1 /*scores*/);
    if (std::int64_t(floats_.size()) < floats) floats_.resize(std::size_t(floats));
    if (std::int64_t(ints_.size()) < rows) ints_.resize(std::size_t(rows));
    if (std::int64_t(log_sizes_.size()) < rows) log_sizes_.resize(std::size_t(rows));
    rows_ = rows;
    dim_ = dim;
  }
  float* qkv() { return floats_.data(); }
  float* ln() { return qkv() + rows_ * 3 * dim_; }
  float* attn() { return ln() + rows_ * dim_; }
  float* branch() { return attn() + rows_ * dim_; }
  float* x1() { return branch() + rows_ * dim_; }
  float* hidden() { return x1() + rows_ * dim_; }
  float* scores() { return floats_.data() + floats_.size() - std::size_t(rows_); }
  float* log_sizes() { return log_sizes_.data(); }
  int* keep_idx() { return ints_.data(); }
  TokenPlan& plan() { return plan_; }
  // [batch, heads, tokens, tokens] attention probabilities: only blocks
  // whose importance needs the map (ClsAttention) ask for it.
  float* attention_map(std::int64_t batch, std::int64_t heads, std::int64_t tokens) {
    const std::int64_t n = batch * heads * tokens * tokens;
    if (std::int64_t(map_.size()) < n) map_.resize(std::size_t(n));
    return map_.data();
  }

 private:
  std::vector<float> map_;
  std::vector<float> floats_, log_sizes_;
  std::vector<int> ints_;
  TokenPlan plan_;
  std::int64_t rows_ = 0, dim_ = 0;
};

// Metric: a shift metric (fused into the residual epilogue) or a baseline
// importance (policies/importance.hpp), computed where the site prunes.
template <class Site, class Metric, class Compress, class Norm>
struct Block<policies::Transformer, Site, Metric, Compress, Norm> {
  static_assert(policies::is_site_v<Site>, "Block: Site must be Attention, Mlp, Block or Update<Attention | Mlp>");
  static_assert(policies::is_importance_v<Metric>,
                "Block: Metric must meet the metric contract or be Random / ClsAttention");
  static_assert(policies::is_norm_v<Norm>, "Block: Norm must be PreNorm or PostNorm");
  static_assert(policies::is_compress_v<Compress>, "Block<Transformer>: Compress must be Prune, Fuse or Merge");
  static_assert(policies::valid_site_importance_v<Site, Metric>,
                "Block: ClsAttention importance is read off the attention map, so it needs Site = Attention");

  using site = Site;
  using metric = Metric;
  using norm = Norm;
  static constexpr bool kPostNorm = std::is_same_v<Norm, policies::PostNorm>;
  static constexpr bool kFusedScore = policies::is_metric_v<Metric>;
  static constexpr int kExtra = Compress::extra_tokens;
  static constexpr bool kMerge = Compress::tracks_sizes;

  // Tokens the block outputs for `keep` of `tokens` (per sample).
  static constexpr int output_tokens(int tokens, int keep) { return keep < tokens ? keep + kExtra : tokens; }

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
    if constexpr (kMerge) {
      for (int b = 0; b < a.batch; ++b) {
        const int n = a.cu_seqlens ? a.cu_seqlens[b + 1] - a.cu_seqlens[b] : a.tokens;
        const int k = a.cu_seqlens ? (a.kept_cu_seqlens ? a.kept_cu_seqlens[b + 1] - a.kept_cu_seqlens[b] : n) : a.keep;
        MergeParams::check_reachable(where, n, k, a.protect);
      }
    } else {
      if (a.sizes || a.kept_sizes) {
        detail::fail(where, std::string("sizes / kept_sizes belong to Compress = Merge, not ") + Compress::name);
      }
    }
    if (static_cast<const void*>(a.x) == static_cast<const void*>(a.y)) {
      detail::fail(where, "y must not alias x (the Block site reads x after y is written)");
    }
    // CBLAS extents are int: rows and every leading dimension must fit.
    const std::int64_t rows = a.cu_seqlens ? std::int64_t(a.cu_seqlens[a.batch]) : std::int64_t(a.batch) * a.tokens;
    const std::int64_t widest = std::max<std::int64_t>(3 * w.dim, w.mlp_hidden);
    detail::checked_extent(where, "activations", 1, rows, widest, sizeof(T));
    detail::require_at_most(where, "batch * tokens", rows, "INT_MAX", INT_MAX);
    detail::require_at_most(where, "weights.mlp_hidden", w.mlp_hidden, "INT_MAX / 3", INT_MAX / 3);
    detail::require_at_most(where, "weights.dim", w.dim, "INT_MAX / 3", INT_MAX / 3);
  }

  // On the GPU: defined in blocks/transformer_block.cuh (include
  // repshift/cuda.hpp); every pointer is a device pointer and T is float,
  // __half or __nv_bfloat16. Enqueues on exec.stream without allocating or
  // synchronising (packed batches upload their offsets: see the .cuh).
  template <class T>
  static void forward(const Cuda& exec, const BasicTransformerBlockWeights<T>& w, const BasicTransformerBlockArgs<T>& a,
                      cuda::TransformerWorkspace<T>& ws);

  static void forward(const Host& host, const TransformerBlockWeights& w, const TransformerBlockArgs& a,
                      TransformerWorkspace& ws) {
    check(w, a);
    TokenPlan& plan = ws.plan();
    plan.plan(a.batch, a.tokens, a.keep, a.cu_seqlens, a.kept_cu_seqlens, kExtra);
    const std::int64_t dim = w.dim, rows = plan.in_rows();
    if (kMerge && a.sizes) MergeParams::check_sizes("Block<Transformer>::forward", a.sizes, rows);
    ws.reserve(1, rows, dim, w.mlp_hidden);
    const bool prune = plan.drops;
    const bool score = prune || a.scores != nullptr;
    float* scores = a.scores ? a.scores : ws.scores();
    int* keep_idx = a.keep_idx ? a.keep_idx : ws.keep_idx();

    // ---- attention sub-layer -------------------------------------------
    const float* attn_in = a.x;
    if constexpr (!kPostNorm) {
      cpu::layer_norm_rows(host, a.x, ws.ln(), rows, dim, w.norm1());
      attn_in = ws.ln();
    }
    cpu::linear(attn_in, rows, dim, w.qkv_weight, 3 * dim, ws.qkv(), dim, 3 * dim);
    AttentionParams attention =
        AttentionParams::contiguous(ws.qkv(), w.qkv_bias, ws.attn(), a.batch, plan.max_in, w.heads, w.head_dim());
    attention.cu_seqlens = plan.in.data();
    if (kMerge && a.sizes) {
      float* log_sizes = ws.log_sizes();
      for (std::int64_t i = 0; i < rows; ++i) log_sizes[i] = std::log(a.sizes[i]);
      attention.key_bias = log_sizes;  // proportional attention
    }
    float* attention_map = nullptr;
    if constexpr (policies::needs_attention_map_v<Metric>) {
      attention_map = ws.attention_map(a.batch, w.heads, plan.max_in);
      cpu::attention_with_map(host, attention, attention_map);
    } else {
      cpu::flash_attention(host, attention);
    }
    cpu::linear(ws.attn(), rows, dim, w.proj_weight, dim, ws.branch(), dim, dim);

    cpu::ResidualRows e1;
    e1.branch = ws.branch();
    e1.bias = w.proj_bias;
    e1.residual = a.x;
    e1.out = ws.x1();
    e1.rows = rows;
    e1.channels = dim;
    e1.scores = scores;
    if constexpr (kPostNorm) {
      e1.ln_post = w.norm1();
    } else {
      e1.ln_out = ws.ln();  // LN2(x') feeds the MLP
      e1.ln_next = w.norm2();
    }
    constexpr bool kScoreAttention = Site::scores_attention;
    run_residual<kScoreAttention ? Site::operands : cpu::ScoreOperands::None>(host, e1, kScoreAttention && score);
    if (kScoreAttention && score) baseline_importance(a, w, plan, attention_map, scores);

    // ---- prune between the sub-layers (Attention site) -------------------
    std::int64_t mlp_rows = rows;
    const float* x1 = ws.x1();
    const float* mlp_in = kPostNorm ? ws.x1() : ws.ln();
    if constexpr (kScoreAttention) {
      if (prune) {
        // attn and qkv are free after this: they take the compressed x' and LN2(x').
        compress(host, a, w, plan, ws.qkv(), ws.x1(), scores, keep_idx, ws.attn());
        x1 = ws.attn();
        mlp_rows = plan.out_rows();
        if constexpr (!kPostNorm) {
          cpu::layer_norm_rows(host, ws.attn(), ws.qkv(), mlp_rows, dim, w.norm2());
          mlp_in = ws.qkv();
        } else {
          mlp_in = x1;
        }
      }
    }

    // ---- MLP sub-layer ----------------------------------------------------
    cpu::linear(mlp_in, mlp_rows, dim, w.fc1_weight, w.mlp_hidden, ws.hidden(), dim, w.mlp_hidden);
    cpu::bias_gelu(host, ws.hidden(), mlp_rows, w.mlp_hidden, w.fc1_bias);
    cpu::linear(ws.hidden(), mlp_rows, w.mlp_hidden, w.fc2_weight, dim, ws.branch(), w.mlp_hidden, dim);

    constexpr bool kScoreEnd = !kScoreAttention;
    const bool gather_output = kScoreEnd && prune;
    cpu::ResidualRows e3;
    e3.branch = ws.branch();
    e3.bias = w.fc2_bias;
    e3.residual = x1;
    // x' is dead once read row by row, so the full output may overwrite it.
    e3.out = gather_output ? ws.x1() : a.y;
    e3.block_input = a.x;
    e3.rows = mlp_rows;
    e3.channels = dim;
    e3.scores = scores;
    if constexpr (kPostNorm) e3.ln_post = w.norm2();
    run_residual<kScoreEnd ? Site::operands : cpu::ScoreOperands::None>(host, e3, kScoreEnd && score);

    if (kScoreEnd && score) baseline_importance(a, w, plan, attention_map, scores);
    if (gather_output) compress(host, a, w, plan, ws.qkv(), ws.x1(), scores, keep_idx, a.y);
    const std::vector<int>& out_cu = prune ? plan.out : plan.in;
    if (a.out_cu_seqlens) std::copy(out_cu.begin(), out_cu.end(), a.out_cu_seqlens);
  }

 private:
  // Compresses src (plan.in rows) to dst (plan.out rows) by the scores.
  // Prune / Fuse: select each sample's top keep, gather them (Fuse appends
  // the dropped rows' score-weighted mean). Merge: merge by the scores and
  // the layer's keys (qkv's K part, read before qkv is reused).
  static void compress(const Host& host, const TransformerBlockArgs& a, const TransformerBlockWeights& w,
                       const TokenPlan& plan, const float* qkv, const float* src, const float* scores, int* keep_idx,
                       float* dst) {
    if constexpr (kMerge) {
      // The CPU QKV GEMM leaves the bias to the attention kernel: add it here too.
      MergeParams m = merge_params(a, w.dim, qkv, w.qkv_bias, src, scores, keep_idx, dst);
      m.cu_seqlens = plan.in.data();
      m.kept_cu_seqlens = plan.kept.data();
      m.tokens = plan.max_in;
      m.keep = plan.max_kept;
      cpu::merge_tokens(host, m);
    } else {
      (void)qkv;
      select_top_varlen(host, scores, plan.in.data(), plan.kept.data(), keep_idx, a.batch, plan.max_in,
                        plan.max_kept, a.protect);
      gather_tokens_varlen(host, src, plan.in.data(), keep_idx, plan.kept.data(), dst, a.batch, plan.max_in,
                           plan.max_kept, int(w.dim), plan.out.data());
      if constexpr (kExtra == 1) fuse_dropped(plan, src, scores, keep_idx, dst, w.dim);
    }
  }

  // Merge of src into dst by the scores, matching on the K part of the
  // layer's fused QKV rows (qkv_bias's K part added when not yet in them).
  template <class T>
  static BasicMergeParams<T> merge_params(const BasicTransformerBlockArgs<T>& a, std::int64_t dim, const T* qkv,
                                          const T* qkv_bias, const T* src, const float* scores, int* keep_idx,
                                          T* dst) {
    BasicMergeParams<T> m;
    m.x = src;
    m.keys = qkv + dim;
    m.key_bias = qkv_bias ? qkv_bias + dim : nullptr;
    m.keys_token_stride = 3 * dim;
    m.scores = scores;
    m.sizes = a.sizes;
    m.out = dst;
    m.out_sizes = a.kept_sizes;
    m.keep_idx = keep_idx;
    m.batch = a.batch;
    m.tokens = a.tokens;
    m.keep = a.keep;
    m.channels = m.key_channels = dim;
    m.protect = a.protect;
    return m;
  }

  // Fuse: the row after a sample's kept ones is its dropped rows' mean
  // weighted by their scores (uniform when those are all zero).
  static void fuse_dropped(const TokenPlan& plan, const float* src, const float* scores, const int* keep_idx,
                           float* dst, std::int64_t dim) {
    std::vector<char> kept(std::size_t(plan.max_in));
    for (int b = 0; b < plan.batch; ++b) {
      const int n = plan.length(b), k = plan.kept_length(b);
      if (k == n) continue;
      const float* s = scores + plan.in[std::size_t(b)];
      const float* rows = src + std::int64_t(plan.in[std::size_t(b)]) * dim;
      std::fill(kept.begin(), kept.end(), 0);
      for (int i = 0; i < k; ++i) kept[std::size_t(keep_idx[plan.kept[std::size_t(b)] + i])] = 1;
      double total = 0.0;
      for (int t = 0; t < n; ++t) total += kept[std::size_t(t)] ? 0.0 : double(s[t]);
      float* fused = dst + (std::int64_t(plan.out[std::size_t(b)]) + k) * dim;
      std::fill(fused, fused + dim, 0.0f);
      for (int t = 0; t < n; ++t) {
        if (kept[std::size_t(t)]) continue;
        // Importance-weighted; a plain mean when the importances sum to 0.
        const float weight = total > 0.0 ? float(s[t] / total) : 1.0f / float(n - k);
        const float* row = rows + std::int64_t(t) * dim;
        for (std::int64_t c = 0; c < dim; ++c) fused[c] += weight * row[c];
      }
    }
  }

  // Scores of the importances that are not fused metrics, per sample.
  static void baseline_importance(const TransformerBlockArgs& a, const TransformerBlockWeights& w,
                                  const TokenPlan& plan, const float* attention_map, float* scores) {
    for (int b = 0; b < plan.batch; ++b) {
      const std::int64_t n = plan.length(b);
      float* s = scores + plan.in[std::size_t(b)];
      if constexpr (std::is_same_v<Metric, policies::Random>) {
        policies::Random::fill(a.seed, n, s);
      } else if constexpr (policies::needs_attention_map_v<Metric>) {
        // mean over heads of P[b, h, 0, :] (sample b's map: its n x n top-left)
        const std::int64_t ld = plan.max_in;
        std::fill(s, s + n, 0.0f);
        for (std::int64_t h = 0; h < w.heads; ++h) {
          const float* cls_row = attention_map + ((b * w.heads + h) * ld) * ld;
          for (std::int64_t t = 0; t < n; ++t) s[t] += cls_row[t];
        }
        for (std::int64_t t = 0; t < n; ++t) s[t] /= float(w.heads);
      } else {
        (void)a, (void)w, (void)attention_map, (void)s, (void)n;  // fused in the epilogue
        return;
      }
    }
  }

  // The one runtime -> template switch of the block: score or not.
  template <cpu::ScoreOperands Operands>
  static void run_residual(const Host& host, const cpu::ResidualRows& e, bool score) {
    // Baseline importances have no fused score: they run the plain epilogue
    // (instantiated with L2, whose score code it never uses).
    using Fused = std::conditional_t<kFusedScore, Metric, policies::L2>;
    if constexpr (kFusedScore && Operands != cpu::ScoreOperands::None) {
      if (score) return cpu::residual_epilogue<Fused, Operands, kPostNorm>(host, e);
    }
    cpu::residual_epilogue<Fused, cpu::ScoreOperands::None, kPostNorm>(host, e);
  }
};

}  // namespace repshift
