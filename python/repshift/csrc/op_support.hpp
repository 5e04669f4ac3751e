#pragma once
// What the CPU ops (ops.cpp) and the CUDA ops (ops_cuda.cu) share: the
// argument checks that do not depend on the device, the packed layout's
// host-side validation, the block's weight views and the one runtime ->
// Block table. Each op file adds its device's storage types and executor.

#include <torch/types.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <string_view>
#include <utility>
#include <vector>

#include <repshift/api/dispatch.hpp>
#include <repshift/api/entry_points.hpp>
#include <repshift/blocks/transformer_block.hpp>
#include <repshift/core/varlen.hpp>

namespace repshift_ops {

namespace rs = repshift;

// Runs f, turning the library's refusals into Python ValueErrors (other
// exceptions, e.g. CUDA errors, reach Python as RuntimeError).
template <class F>
auto refusing(F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const rs::InvalidArgument& e) {
    TORCH_CHECK_VALUE(false, e.what());
  }
  throw std::logic_error("unreachable");
}

constexpr int64_t kIntMax = std::numeric_limits<int>::max();

// The rank, and every size within int: the library indexes a sample's
// tokens and channels as int, so a larger size is refused, not wrapped.
inline void require_dim(const at::Tensor& t, const char* op, const char* name, int64_t dim) {
  TORCH_CHECK_VALUE(t.dim() == dim, "repshift::", op, ": ", name, " must have ", dim, " dimensions, got shape ",
                    t.sizes());
  for (const int64_t d : t.sizes()) {
    TORCH_CHECK_VALUE(d <= kIntMax, "repshift::", op, ": ", name, " has shape ", t.sizes(), ", a size past ", kIntMax);
  }
}

inline bool fits_int(int64_t v) { return v >= std::numeric_limits<int>::min() && v <= kIntMax; }

// An int64 argument the library takes as int (protect): refused outside
// int's range rather than wrapped into another value.
inline int int_arg(int64_t v, const char* op, const char* name) {
  TORCH_CHECK_VALUE(fits_int(v), "repshift::", op, ": ", name, " = ", v, " is outside int's range");
  return int(v);
}

// The ops have no backward: a tensor that requires grad, with grad mode
// on, would come out detached and its gradient silently never set.
inline void require_no_grad(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK_VALUE(!(t.requires_grad() && at::GradMode::is_enabled()), "repshift::", op, ": ", name,
                    " requires grad, and the op has no backward (inference only): call it under torch.no_grad() or "
                    "torch.inference_mode()");
}

// `t` on `device` (the op's first tensor decides where it runs).
inline void require_device(const at::Tensor& t, const at::Device& device, const char* op, const char* name) {
  TORCH_CHECK_VALUE(t.device() == device, "repshift::", op, ": ", name, " is on ", t.device(), ", expected ", device);
}

// Values the ops convert to their float storage: floating types only. An
// integer x would come back truncated, so it is refused, not converted.
inline void require_floating(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK_VALUE(at::isFloatingType(t.scalar_type()), "repshift::", op, ": ", name, " is ", t.scalar_type(),
                    ", not a floating-point type");
}

// The tokens an op computes on: `dims` dimensions, a floating type, and no
// gradient expected of them.
inline void require_token_input(const at::Tensor& t, const char* op, const char* name, int64_t dims) {
  require_dim(t, op, name, dims);
  require_floating(t, op, name);
  require_no_grad(t, op, name);
}

// Every sample keeps at least one token and at most its `tokens`, checked
// before the outputs are sized by keep (the library refuses keep < protect).
inline void require_keep(int64_t keep, int64_t tokens, const char* op) {
  TORCH_CHECK_VALUE(keep >= 1, "repshift::", op, ": keep = ", keep, " must be >= 1");
  TORCH_CHECK_VALUE(keep <= tokens, "repshift::", op, ": keep = ", keep, " must be <= tokens = ", tokens);
}

// block_forward's first_token_only (the last block before a class-token
// head) returns each sample's first row and nothing else: no compression,
// no scores. Its outputs: out [B, 1, C], kept indices [B, 1] (row 0),
// scores [B, 0].
inline void require_first_token_only(bool first_token_only, int64_t keep, int64_t tokens, const char* op) {
  TORCH_CHECK_VALUE(!first_token_only || keep == tokens, "repshift::", op,
                    ": first_token_only compresses nothing: keep = ", keep, " must equal tokens = ", tokens);
}

// Scores the ops rank in float32: float64 ones would be rounded first,
// which can reorder near ties, so they are refused.
inline void require_score_type(const at::Tensor& t, const char* op, const char* name) {
  require_floating(t, op, name);
  TORCH_CHECK_VALUE(t.scalar_type() != at::kDouble, "repshift::", op, ": ", name,
                    " is Double; pass float32 (or bfloat16 / float16): rounding float64 scores can reorder near ties");
}

// Merge's token sizes: one per token of x [B, N, C].
inline void check_sizes(const at::Tensor& sizes, const at::Tensor& x, const char* op) {
  TORCH_CHECK_VALUE(sizes.dim() == 2 && sizes.size(0) == x.size(0) && sizes.size(1) == x.size(1), "repshift::", op,
                    ": sizes has shape ", sizes.sizes(), ", expected [", x.size(0), ", ", x.size(1),
                    "] (x's batch and tokens)");
  require_floating(sizes, op, "sizes");
  require_no_grad(sizes, op, "sizes");
}

// Indices as int32, never wrapped: on the CPU an int64 value past int32 is
// refused by name; on a device (where reading the values back would wait
// for the stream) it becomes INT_MAX or -1, which no valid index is, so the
// op refuses it as out of range.
inline at::Tensor int32_indices(const at::Tensor& idx, const char* op, const char* name) {
  TORCH_CHECK_VALUE(idx.scalar_type() == at::kLong || idx.scalar_type() == at::kInt, "repshift::", op, ": ", name,
                    " must be int64 or int32, got ", idx.scalar_type());
  if (idx.scalar_type() == at::kLong && idx.numel() > 0) {
    if (!idx.device().is_cpu()) return idx.clamp(-1, kIntMax).to(at::kInt).contiguous();
    const auto [lo, hi] = at::aminmax(idx);
    for (const int64_t v : {lo.item<int64_t>(), hi.item<int64_t>()}) {
      TORCH_CHECK_VALUE(fits_int(v), "repshift::", op, ": ", name, " holds ", v, ", outside int32");
    }
  }
  return idx.to(at::kInt).contiguous();
}

inline void check_score_inputs(const at::Tensor& before, const at::Tensor& after) {
  require_no_grad(before, "shift_score", "before");
  require_no_grad(after, "shift_score", "after");
  require_dim(before, "shift_score", "before", 3);
  TORCH_CHECK_VALUE(after.sizes() == before.sizes(), "repshift::shift_score: after has shape ", after.sizes(),
                    ", before ", before.sizes());
  TORCH_CHECK_VALUE(after.scalar_type() == before.scalar_type(), "repshift::shift_score: after is ", after.scalar_type(),
                    ", before ", before.scalar_type());
}

inline void check_select_inputs(const at::Tensor& scores, int64_t keep) {
  require_dim(scores, "select_top", "scores", 2);
  require_score_type(scores, "select_top", "scores");
  require_keep(keep, scores.size(1), "select_top");
}

inline void check_gather_inputs(const at::Tensor& x, const at::Tensor& idx) {
  require_token_input(x, "gather_tokens", "x", 3);
  require_dim(idx, "gather_tokens", "idx", 2);
  TORCH_CHECK_VALUE(idx.size(0) == x.size(0), "repshift::gather_tokens: idx has ", idx.size(0), " rows, x ", x.size(0));
}

// scores [B, N] float32 = Metric(after, before) on `exec`; with_storage(t,
// op, f) calls f with t's data as the device's storage type.
template <class Exec, class WithStorage>
at::Tensor shift_score_on(Exec exec, const at::Tensor& before, const at::Tensor& after, c10::string_view metric,
                          WithStorage&& with_storage) {
  const auto b = before.contiguous(), a = after.contiguous();
  auto scores = at::empty({b.size(0), b.size(1)}, b.options().dtype(at::kFloat));
  refusing([&] {
    rs::with_metric(std::string_view(metric.data(), metric.size()), [&](auto m) {
      using Metric = decltype(m);
      with_storage(b, "shift_score", [&](auto* bp) {
        using T = std::remove_pointer_t<decltype(bp)>;
        if (b.numel() == 0) {  // names and dtype checked all the same
          scores.zero_();
          return;
        }
        rs::shift_score<Metric>(exec, static_cast<const T*>(bp), static_cast<const T*>(a.data_ptr()),
                                scores.data_ptr<float>(), int(b.size(0)), int(b.size(1)), int(b.size(2)));
      });
    });
    return 0;
  });
  return scores;
}

// ---- packed (varlen) layout ----------------------------------------------------

// cu_seqlens as int32 in host memory (a copy when it lives on a device):
// the host validates it and plans with it.
inline at::Tensor host_cu_seqlens(const at::Tensor& cu, const char* op, const char* name) {
  require_dim(cu, op, name, 1);
  TORCH_CHECK_VALUE(cu.size(0) >= 2, "repshift::", op, ": ", name, " needs batch + 1 >= 2 entries");
  return int32_indices(cu.to(at::kCPU), op, name);  // on the host first: values past int32 refused by name, not clamped
}

// cu_seqlens and kept_cu_seqlens (host int32) of one batch size.
inline std::pair<at::Tensor, at::Tensor> cu_pair(const at::Tensor& cu_seqlens, const at::Tensor& kept_cu_seqlens,
                                                 const char* op) {
  auto cu = host_cu_seqlens(cu_seqlens, op, "cu_seqlens");
  auto kcu = host_cu_seqlens(kept_cu_seqlens, op, "kept_cu_seqlens");
  TORCH_CHECK_VALUE(kcu.size(0) == cu.size(0), "repshift::", op, ": kept_cu_seqlens has ", kcu.size(0),
                    " entries, cu_seqlens ", cu.size(0));
  return {cu, kcu};
}

inline int last(const at::Tensor& host_cu) { return host_cu.data_ptr<int>()[host_cu.size(0) - 1]; }

// A block whose samples all keep every token selects nothing and writes no
// indices: each sample's own 0..n-1, packed (host int32, like cu).
inline at::Tensor all_kept_indices(const at::Tensor& cu) {
  const int64_t batch = cu.size(0) - 1;
  const auto starts = cu.narrow(0, 0, batch).to(at::kLong), lengths = cu.narrow(0, 1, batch).to(at::kLong) - starts;
  return (at::arange(last(cu), starts.options()) - at::repeat_interleave(starts, lengths)).to(at::kInt);
}

// Both layouts (host int32) before anything is sized by them: cu_seqlens
// over `total` rows, and every sample's kept count within its length (at
// least min(protect, n), and one).
inline void check_layouts(const char* op, const at::Tensor& cu, const at::Tensor& kcu, int64_t total, int protect) {
  refusing([&] {
    const int batch = int(cu.size(0) - 1);
    rs::detail::check_cu_seqlens(op, "cu_seqlens", cu.data_ptr<int>(), batch, total);
    rs::detail::check_kept_seqlens(op, cu.data_ptr<int>(), kcu.data_ptr<int>(), batch, protect);
    return 0;
  });
}

// select_top_varlen's checks on the host copies: scores, the layout of
// both arrays over scores' length, and every sample's keep count. Returns
// protect as the int the library takes.
inline int check_select_varlen(const at::Tensor& scores, const at::Tensor& cu, const at::Tensor& kcu, int64_t protect) {
  constexpr const char* op = "select_top_varlen";
  require_dim(scores, op, "scores", 1);
  require_score_type(scores, op, "scores");
  const int protect_int = int_arg(protect, op, "protect");
  check_layouts(op, cu, kcu, scores.size(0), protect_int);
  return protect_int;
}

inline void check_gather_varlen(const at::Tensor& x, const at::Tensor& idx, const at::Tensor& cu, const at::Tensor& kcu) {
  require_token_input(x, "gather_tokens_varlen", "x", 2);
  require_dim(idx, "gather_tokens_varlen", "idx", 1);
  check_layouts("gather_tokens_varlen", cu, kcu, x.size(0), 0);
  TORCH_CHECK_VALUE(last(kcu) == idx.size(0), "repshift::gather_tokens_varlen: kept_cu_seqlens[batch] = ", last(kcu),
                    " must equal idx's ", idx.size(0), " entries");
}

// ---- the fused timm ViT block --------------------------------------------------

// The twelve tensors of a block (qkv bias may be absent), each converted to
// `options` (dtype and device) and made contiguous; a tensor already so is
// the caller's own.
struct BlockTensors {
  at::Tensor t[12];
  static constexpr int kDense[4] = {2, 4, 8, 10};  // qkv, proj, fc1, fc2
};

inline BlockTensors block_tensors(const at::TensorOptions& options, const at::Tensor& norm1_w, const at::Tensor& norm1_b,
                                  const at::Tensor& qkv_w, const c10::optional<at::Tensor>& qkv_b,
                                  const at::Tensor& proj_w, const at::Tensor& proj_b, const at::Tensor& norm2_w,
                                  const at::Tensor& norm2_b, const at::Tensor& fc1_w, const at::Tensor& fc1_b,
                                  const at::Tensor& fc2_w, const at::Tensor& fc2_b) {
  const at::Tensor* passed[12] = {&norm1_w, &norm1_b, &qkv_w, qkv_b ? &*qkv_b : nullptr, &proj_w, &proj_b,
                                  &norm2_w, &norm2_b, &fc1_w, &fc1_b, &fc2_w, &fc2_b};
  const char* names[12] = {"norm1_w", "norm1_b", "qkv_w", "qkv_b", "proj_w", "proj_b",
                           "norm2_w", "norm2_b", "fc1_w", "fc1_b", "fc2_w", "fc2_b"};
  BlockTensors w;
  for (int i = 0; i < 12; ++i) {
    if (!passed[i] || !passed[i]->defined()) continue;
    require_floating(*passed[i], "block_forward", names[i]);  // an integer weight would be converted silently
    require_no_grad(*passed[i], "block_forward", names[i]);
    // The same device, index included: a weight on another GPU is refused,
    // not copied across on every call.
    TORCH_CHECK_VALUE(passed[i]->device() == options.device(), "repshift::block_forward: ", names[i], " is on ",
                      passed[i]->device(), ", x on ", options.device());
    w.t[i] = passed[i]->to(options).contiguous();
  }
  return w;
}

// Views of the twelve tensors (storage type T) of a block, shapes checked
// against C and fc1's hidden width.
template <class T>
rs::BasicTransformerBlockWeights<T> block_weights(const at::Tensor (&w)[12], int64_t C, int64_t heads, double eps,
                                                  const char* op) {
  TORCH_CHECK_VALUE(w[2].dim() == 2 && w[2].size(0) == 3 * C && w[2].size(1) == C, "repshift::", op,
                    ": qkv_w must be [3 C, C] = [", 3 * C, ", ", C, "], got ", w[2].sizes());
  TORCH_CHECK_VALUE(w[8].dim() == 2 && w[8].size(1) == C, "repshift::", op, ": fc1_w must be [hidden, ", C, "], got ",
                    w[8].sizes());
  const int64_t hidden = w[8].size(0);
  const char* names[12] = {"norm1_w", "norm1_b", "qkv_w", "qkv_b", "proj_w", "proj_b",
                           "norm2_w", "norm2_b", "fc1_w", "fc1_b", "fc2_w", "fc2_b"};
  const std::vector<int64_t> shapes[12] = {{C}, {C}, {3 * C, C}, {3 * C}, {C, C}, {C}, {C}, {C}, {hidden, C}, {hidden},
                                           {C, hidden}, {C}};
  for (int i = 0; i < 12; ++i) {
    if (i == 3 && !w[i].defined()) continue;
    TORCH_CHECK_VALUE(w[i].sizes() == c10::IntArrayRef(shapes[i]), "repshift::", op, ": ", names[i], " has shape ",
                      w[i].sizes(), ", expected ", c10::IntArrayRef(shapes[i]));
  }
  auto ptr = [](const at::Tensor& t) { return t.defined() ? static_cast<const T*>(t.data_ptr()) : nullptr; };
  rs::BasicTransformerBlockWeights<T> v;
  v.dim = C;
  v.heads = heads;
  v.mlp_hidden = hidden;
  // A double the float cannot hold (inf, past FLT_MAX, or so small it rounds
  // to 0) is refused with the value passed, not converted.
  TORCH_CHECK_VALUE(std::isfinite(eps) && eps > 0 && eps <= std::numeric_limits<float>::max() && float(eps) > 0,
                    "repshift::", op, ": eps = ", eps, " must be a positive, finite float32");
  v.ln_eps = float(eps);
  v.norm1_weight = ptr(w[0]), v.norm1_bias = ptr(w[1]), v.qkv_weight = ptr(w[2]), v.qkv_bias = ptr(w[3]);
  v.proj_weight = ptr(w[4]), v.proj_bias = ptr(w[5]), v.norm2_weight = ptr(w[6]), v.norm2_bias = ptr(w[7]);
  v.fc1_weight = ptr(w[8]), v.fc1_bias = ptr(w[9]), v.fc2_weight = ptr(w[10]), v.fc2_bias = ptr(w[11]);
  return v;
}

// The kept indices of a block that dropped nothing: 0 .. rows - 1 for each
// of `batch` samples (rows = 1 under first_token_only).
inline at::Tensor all_rows_kept(int64_t batch, int64_t rows, const at::TensorOptions& options) {
  return at::arange(rows, options).expand({batch, rows});
}

// The block's arguments over dense [B, N, C] tokens: x in, out, and the
// scores [B, N] float32 and kept indices [B, keep] int32 it writes
// (first_token_only: out is [B, 1, C], and neither is written).
template <class T>
rs::BasicTransformerBlockArgs<T> dense_block_args(const at::Tensor& x, at::Tensor& out, int64_t keep, int64_t protect,
                                                  int64_t seed, at::Tensor& scores, at::Tensor& keep_idx,
                                                  bool first_token_only) {
  auto a = rs::BasicTransformerBlockArgs<T>::dense(static_cast<const T*>(x.data_ptr()), static_cast<T*>(out.data_ptr()),
                                                   int(x.size(0)), int(x.size(1)));
  a.keep = int(keep);  // require_keep: within x's tokens
  a.protect = int_arg(protect, "block_forward", "protect");
  a.seed = std::uint64_t(seed);
  a.first_token_only = first_token_only;
  if (!first_token_only) {
    a.scores = scores.data_ptr<float>();
    a.keep_idx = keep_idx.data_ptr<int>();
  }
  return a;
}

// ... over packed tokens [total, C]: cu, kcu, out_cu host int32 [B + 1]
// (the block plans on the host), out_cu written.
template <class T>
rs::BasicTransformerBlockArgs<T> packed_block_args(const at::Tensor& x, at::Tensor& out, const at::Tensor& cu,
                                                   const at::Tensor& kcu, at::Tensor& out_cu, int64_t protect,
                                                   int64_t seed, at::Tensor& scores, at::Tensor& keep_idx) {
  rs::BasicTransformerBlockArgs<T> a;
  a.x = static_cast<const T*>(x.data_ptr());
  a.y = static_cast<T*>(out.data_ptr());
  a.batch = int(cu.size(0) - 1);
  a.protect = int_arg(protect, "block_forward_varlen", "protect");
  a.seed = std::uint64_t(seed);
  a.cu_seqlens = cu.data_ptr<int>();
  a.kept_cu_seqlens = kcu.data_ptr<int>();
  a.out_cu_seqlens = out_cu.data_ptr<int>();
  a.scores = scores.data_ptr<float>();
  a.keep_idx = keep_idx.data_ptr<int>();
  return a;
}

// f(Block{}) for the Block the names select (the library's one table), in
// pre-norm (timm) or post-norm (BERT) placement.
template <class F>
void with_block(c10::string_view site, c10::string_view importance, c10::string_view compress, bool post_norm, F&& f) {
  rs::with_policies(std::string_view(site.data(), site.size()), std::string_view(importance.data(), importance.size()),
                    std::string_view(compress.data(), compress.size()), [&](auto s, auto i, auto c) {
    using S = decltype(s);
    using I = decltype(i);
    using C = decltype(c);
    if (post_norm) {
      f(rs::Block<rs::policies::Transformer, S, I, C, rs::policies::PostNorm>{});
    } else {
      f(rs::Block<rs::policies::Transformer, S, I, C, rs::policies::PreNorm>{});
    }
  });
}

}  // namespace repshift_ops
