#pragma once
// Block<Transformer, Site, Metric, Compress, Norm>::forward on the GPU, and
// its workspace. The same schedule as the CPU forward
// (blocks/transformer_block.hpp), stage for stage:
//   LN1 -> QKV GEMM (+bias) -> flash attention (or the map path for
//   ClsAttention) -> proj GEMM (+bias) -> residual epilogue [score at the
//   Attention site, LN2] -> (Attention site: select + gather/fuse, LN2 of
//   the kept rows) -> fc1 GEMM (+bias) -> GELU -> fc2 GEMM (+bias) ->
//   residual epilogue [score at the Mlp / Block site] -> select + gather/fuse
//   (or merge, with log(size) biasing attention)
// GEMMs are cuBLASLt (cuda/blas.cuh); everything between them is ours,
// with the score fused into the residual epilogue. Padded batches
// allocate nothing and never synchronise: buffers come from
// rs::cuda::TransformerWorkspace, sized once by reserve(). Packed batches
// (cu_seqlens, host memory) also upload the layer's three offset arrays
// (one cudaMemcpyAsync from pageable memory, which waits for the stream).

#include <algorithm>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "../cuda/attention.cuh"
#include "../cuda/backend.cuh"
#include "../cuda/blas.cuh"
#include "../cuda/epilogue.cuh"
#include "../cuda/layer_norm.cuh"
#include "../cuda/merge_tokens.cuh"
#include "../cuda/token_compress.cuh"
#include "../entry_points.hpp"
#include "transformer_block.hpp"

namespace repshift {
namespace cuda {

// Device scratch of a block forward, in storage type T. reserve() is the
// only place that allocates; forward() refuses a workspace that is too
// small instead of growing it behind the caller's back.
template <class T>
class TransformerWorkspace {
 public:
  explicit TransformerWorkspace(Blas& blas) : blas_(&blas) {}
  ~TransformerWorkspace() {
    release();
    cudaFree(plan_ints_);
  }
  TransformerWorkspace(const TransformerWorkspace&) = delete;
  TransformerWorkspace& operator=(const TransformerWorkspace&) = delete;

  // Room for batch x tokens rows of a block of width dim / mlp_hidden;
  // with_map also reserves the [batch, heads, tokens, tokens] f32 map of
  // the plain attention path (ClsAttention).
  void reserve(std::int64_t batch, std::int64_t tokens, std::int64_t dim, std::int64_t mlp_hidden,
               std::int64_t heads = 0, bool with_map = false) {
    constexpr const char* where = "cuda::TransformerWorkspace::reserve";
    detail::require_positive(where, "batch", batch);
    detail::require_positive(where, "tokens", tokens);
    detail::require_positive(where, "dim", dim);
    detail::require_positive(where, "mlp_hidden", mlp_hidden);
    // Never shrinks: each extent is the larger of what is held and what is asked.
    const std::int64_t rows = std::max(batch * tokens, rows_);
    const std::int64_t map = std::max(with_map ? detail::checked_extent(where, "attention map", batch * heads, tokens,
                                                                        tokens, sizeof(float))
                                               : std::int64_t(0),
                                      map_elems_);
    if (batch * tokens <= rows_ && dim <= dim_ && mlp_hidden <= hidden_ && map <= map_elems_) return;
    dim = std::max(dim, dim_);
    mlp_hidden = std::max(mlp_hidden, hidden_);
    const std::int64_t elems = detail::checked_extent(where, "activations", 1, rows, 7 * dim + mlp_hidden, sizeof(T));
    release();
    allocate(reinterpret_cast<void**>(&act_), std::size_t(elems) * sizeof(T));
    allocate(reinterpret_cast<void**>(&floats_), std::size_t(2 * rows + map) * sizeof(float));
    allocate(reinterpret_cast<void**>(&ints_), std::size_t(rows) * sizeof(int));
    rows_ = rows;
    dim_ = dim;
    hidden_ = mlp_hidden;
    map_elems_ = map;
  }

  bool fits(std::int64_t rows, std::int64_t dim, std::int64_t mlp_hidden, std::int64_t map_elems) const {
    return rows <= rows_ && dim <= dim_ && mlp_hidden <= hidden_ && map_elems <= map_elems_;
  }
  Blas& blas() const { return *blas_; }
  T* qkv() const { return act_; }
  T* ln() const { return qkv() + rows_ * 3 * dim_; }
  T* attn() const { return ln() + rows_ * dim_; }
  T* branch() const { return attn() + rows_ * dim_; }
  T* x1() const { return branch() + rows_ * dim_; }
  T* hidden() const { return x1() + rows_ * dim_; }
  float* scores() const { return floats_; }
  float* log_sizes() const { return floats_ + rows_; }
  float* attention_map() const { return floats_ + 2 * rows_; }
  int* keep_idx() const { return ints_; }

  // Packed batches: the block's TokenPlan on the host, and its three offset
  // arrays (cu_seqlens, kept, out) uploaded to a device buffer that grows
  // here, outside any kernel, to the largest batch seen.
  TokenPlan& host_plan() { return plan_; }
  const int* upload_plan(const Cuda& exec) {
    staged_.clear();
    for (const auto* cu : {&plan_.in, &plan_.kept, &plan_.out}) staged_.insert(staged_.end(), cu->begin(), cu->end());
    if (staged_.size() > plan_capacity_) {
      cudaFree(plan_ints_);
      plan_ints_ = nullptr;
      plan_capacity_ = 0;
      allocate(reinterpret_cast<void**>(&plan_ints_), staged_.size() * sizeof(int));
      plan_capacity_ = staged_.size();
    }
    // From pageable memory the call returns once the bytes are staged, so
    // staged_ may change on the next call.
    cuda_detail::check(cudaMemcpyAsync(plan_ints_, staged_.data(), staged_.size() * sizeof(int), cudaMemcpyHostToDevice,
                                       exec.stream),
                       "cudaMemcpyAsync(TransformerWorkspace plan)");
    return plan_ints_;
  }

 private:
  static void allocate(void** ptr, std::size_t bytes) {
    cuda_detail::check(cudaMalloc(ptr, bytes), "cudaMalloc(TransformerWorkspace)");
  }
  void release() {
    cudaFree(act_);
    cudaFree(floats_);
    cudaFree(ints_);
    act_ = nullptr;
    floats_ = nullptr;
    ints_ = nullptr;
    rows_ = dim_ = hidden_ = map_elems_ = 0;
  }

  Blas* blas_;
  T* act_ = nullptr;
  float* floats_ = nullptr;
  int* ints_ = nullptr;
  std::int64_t rows_ = 0, dim_ = 0, hidden_ = 0, map_elems_ = 0;
  TokenPlan plan_;
  std::vector<int> staged_;
  int* plan_ints_ = nullptr;
  std::size_t plan_capacity_ = 0;
};

}  // namespace cuda

namespace cuda_detail {

template <class T>
LayerNormParams<T> norm_params(const T* gamma, const T* beta, float eps) {
  return {gamma, beta, eps};
}

}  // namespace cuda_detail

template <class Site, class Metric, class Compress, class Norm>
template <class T>
void Block<policies::Transformer, Site, Metric, Compress, Norm>::forward(const Cuda& exec,
                                                                         const BasicTransformerBlockWeights<T>& w,
                                                                         const BasicTransformerBlockArgs<T>& a,
                                                                         cuda::TransformerWorkspace<T>& ws) {
  static_assert(cuda_detail::is_device_storage_v<T>, "Block::forward(Cuda): T must be float, __half or __nv_bfloat16");
  constexpr const char* where = "Block<Transformer>::forward(Cuda)";
  check(w, a);
  if (cuda_tiling::attention_head_bucket(w.head_dim()) == 0) {
    detail::fail(where, "head_dim = " + std::to_string(w.head_dim()) + " is not supported on CUDA (at most 128)");
  }
  // Packed batches (a.cu_seqlens, host memory as on the CPU): the plan is
  // made on the host and its offsets uploaded for the kernels; padded
  // batches need neither.
  const bool packed = a.cu_seqlens != nullptr;
  TokenPlan& plan = ws.host_plan();
  if (packed) plan.plan(a.batch, a.tokens, a.keep, a.cu_seqlens, a.kept_cu_seqlens, kExtra);
  const std::int64_t dim = w.dim, longest = packed ? plan.max_in : a.tokens;
  const std::int64_t rows = packed ? plan.in_rows() : std::int64_t(a.batch) * a.tokens;
  constexpr bool kMap = policies::needs_attention_map_v<Metric>;
  const std::int64_t map_elems = kMap ? std::int64_t(a.batch) * w.heads * longest * longest : 0;
  if (!ws.fits(rows, dim, w.mlp_hidden, map_elems)) {
    detail::fail(where, "the workspace is smaller than batch * tokens = " + std::to_string(rows) + " rows of dim " +
                            std::to_string(dim) + " / mlp_hidden " + std::to_string(w.mlp_hidden) +
                            (kMap ? " with the attention map" : "") + ": call reserve() first");
  }
  cuda::Blas& blas = ws.blas();
  const int* d_in = nullptr;  // device offsets of the packed plan: in, kept, out
  const int* d_kept = nullptr;
  const int* d_out = nullptr;
  if (packed) {
    d_in = ws.upload_plan(exec);
    d_kept = d_in + (a.batch + 1);
    d_out = d_kept + (a.batch + 1);
  }
  const bool prune = packed ? plan.drops : a.keep < a.tokens;
  const bool score = prune || a.scores != nullptr;
  float* scores = a.scores ? a.scores : ws.scores();
  int* keep_idx = a.keep_idx ? a.keep_idx : ws.keep_idx();
  const auto norm1 = cuda_detail::norm_params(w.norm1_weight, w.norm1_bias, w.ln_eps);
  const auto norm2 = cuda_detail::norm_params(w.norm2_weight, w.norm2_bias, w.ln_eps);

  // Baseline importances: not fused, computed where the site scores.
  auto baseline_importance = [&] {
    if constexpr (std::is_same_v<Metric, policies::Random>) {
      cuda_detail::random_scores(exec, a.seed, a.batch, longest, scores, d_in);
    } else if constexpr (kMap) {
      cuda_detail::cls_attention(exec, ws.attention_map(), a.batch, w.heads, longest, scores, d_in);
    }
  };
  // src [batch, tokens, dim] -> dst [batch, keep (+1 with Fuse), dim].
  // Merge matches on the layer's keys (qkv's K part, bias included), read
  // before qkv is reused.
  auto compress = [&](const T* src, T* dst) {
    if constexpr (kMerge) {
      // The CUDA QKV GEMM has added the bias already.
      auto m = merge_params(a, dim, static_cast<const T*>(ws.qkv()), static_cast<const T*>(nullptr), src, scores,
                            keep_idx, dst);
      if (packed) {
        m.cu_seqlens = d_in;
        m.kept_cu_seqlens = d_kept;
        m.tokens = plan.max_in;
        m.keep = plan.max_kept;
      }
      cuda::merge_tokens(exec, m);
    } else if (packed) {
      select_top_varlen(exec, static_cast<const float*>(scores), d_in, d_kept, keep_idx, a.batch, plan.max_in,
                        plan.max_kept, a.protect);
      gather_tokens_varlen(exec, src, d_in, static_cast<const int*>(keep_idx), d_kept, dst, a.batch, plan.max_in,
                           plan.max_kept, int(dim), d_out);
      if constexpr (kExtra == 1) {
        cuda_detail::fuse_dropped(exec, src, scores, keep_idx, a.batch, plan.max_in, plan.max_kept, dim, dst,
                                  cuda_detail::FuseLayout{d_in, d_kept, d_out});
      }
    } else {
      select_top(exec, scores, keep_idx, a.batch, a.tokens, a.keep, a.protect);
      const std::int64_t out_tokens = output_tokens(a.tokens, a.keep);
      gather_tokens(exec, make_view(src, {a.batch, a.tokens, dim}),
                    make_view(static_cast<const int*>(keep_idx), {a.batch, a.keep}),
                    TensorView<T, 3>{dst, {a.batch, a.keep, dim}, {out_tokens * dim, dim, 1}});
      if constexpr (kExtra == 1) {
        cuda_detail::fuse_dropped(exec, src, scores, keep_idx, a.batch, a.tokens, a.keep, dim, dst);
      }
    }
  };
  // The one runtime -> template switch of the epilogues: score or not.
  using Fused = std::conditional_t<kFusedScore, Metric, policies::L2>;
  auto residual = [&](auto operands, const cuda_detail::ResidualRows<T>& e, bool scored) {
    constexpr ScoreOperands kOperands = decltype(operands)::value;
    if constexpr (kFusedScore && kOperands != ScoreOperands::None) {
      if (scored) return cuda_detail::residual_epilogue<Fused, kOperands, kPostNorm>(exec, e);
    }
    cuda_detail::residual_epilogue<Fused, ScoreOperands::None, kPostNorm>(exec, e);
  };

  // ---- attention sub-layer -------------------------------------------------
  const T* attn_in = a.x;
  if constexpr (!kPostNorm) {
    cuda_detail::layer_norm_rows(exec, a.x, dim, ws.ln(), dim, rows, dim, norm1);
    attn_in = ws.ln();
  }
  cuda_detail::dense(exec, blas, attn_in, rows, dim, w.qkv_weight, w.qkv_bias, 3 * dim, ws.qkv());
  auto attention = BasicAttentionParams<T>::contiguous(ws.qkv(), nullptr, ws.attn(), a.batch, longest, w.heads, w.head_dim());
  attention.cu_seqlens = d_in;
  if (kMerge && a.sizes) {
    cuda_detail::log_sizes(exec, a.sizes, rows, ws.log_sizes());
    attention.key_bias = ws.log_sizes();  // proportional attention
  }
  if constexpr (kMap) {
    cuda::attention_with_map(exec, attention, ws.attention_map());
  } else {
    cuda::flash_attention(exec, attention);
  }
  cuda_detail::dense(exec, blas, ws.attn(), rows, dim, w.proj_weight, w.proj_bias, dim, ws.branch());

  constexpr bool kScoreAttention = Site::scores_attention;
  cuda_detail::ResidualRows<T> e1;
  e1.branch = ws.branch();
  e1.residual = a.x;
  e1.out = ws.x1();
  e1.rows = rows;
  e1.channels = dim;
  e1.scores = scores;
  if constexpr (kPostNorm) {
    e1.ln_post = norm1;
  } else {
    e1.ln_out = ws.ln();  // LN2(x') feeds the MLP
    e1.ln_next = norm2;
  }
  residual(std::integral_constant<ScoreOperands, kScoreAttention ? Site::operands : ScoreOperands::None>{},
           e1, kScoreAttention && score);
  if (kScoreAttention && score) baseline_importance();

  // ---- compress between the sub-layers (Attention site) ----------------------
  std::int64_t mlp_rows = rows;
  const T* x1 = ws.x1();
  const T* mlp_in = kPostNorm ? ws.x1() : ws.ln();
  if constexpr (kScoreAttention) {
    if (prune) {
      // attn and qkv are free now: they take the compressed x' and LN2(x').
      compress(ws.x1(), ws.attn());
      x1 = ws.attn();
      mlp_rows = packed ? plan.out_rows() : std::int64_t(a.batch) * output_tokens(a.tokens, a.keep);
      if constexpr (!kPostNorm) {
        cuda_detail::layer_norm_rows(exec, x1, dim, ws.qkv(), dim, mlp_rows, dim, norm2);
        mlp_in = ws.qkv();
      } else {
        mlp_in = x1;
      }
    }
  }

  // ---- MLP sub-layer -------------------------------------------------------
  cuda_detail::dense(exec, blas, mlp_in, mlp_rows, dim, w.fc1_weight, w.fc1_bias, w.mlp_hidden, ws.hidden());
  cuda_detail::gelu_inplace(exec, ws.hidden(), mlp_rows * w.mlp_hidden);
  cuda_detail::dense(exec, blas, static_cast<const T*>(ws.hidden()), mlp_rows, w.mlp_hidden, w.fc2_weight, w.fc2_bias,
                     dim, ws.branch());

  constexpr bool kScoreEnd = !kScoreAttention;
  const bool gather_output = kScoreEnd && prune;
  cuda_detail::ResidualRows<T> e3;
  e3.branch = ws.branch();
  e3.residual = x1;
  e3.out = gather_output ? ws.x1() : a.y;  // x' is dead once read row by row
  e3.block_input = a.x;
  e3.rows = mlp_rows;
  e3.channels = dim;
  e3.scores = scores;
  if constexpr (kPostNorm) e3.ln_post = norm2;
  residual(std::integral_constant<ScoreOperands, kScoreEnd ? Site::operands : ScoreOperands::None>{}, e3,
           kScoreEnd && score);
  if (kScoreEnd && score) baseline_importance();
  if (gather_output) compress(ws.x1(), a.y);
  if (packed && a.out_cu_seqlens) {
    const std::vector<int>& out_cu = prune ? plan.out : plan.in;
    std::copy(out_cu.begin(), out_cu.end(), a.out_cu_seqlens);
  }
}

}  // namespace repshift
