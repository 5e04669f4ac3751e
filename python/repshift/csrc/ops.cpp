// repshift's kernels as torch ops (namespace `repshift`), CPU kernels. The
// schemas say that no input is mutated; shapes of the outputs are fixed by
// the arguments, so python/repshift/_meta.py registers fake kernels that
// let torch.compile trace them (the packed forms' sizes are data-dependent
// and get unbacked symbolic sizes there).
//
// The runtime names (metric, site, importance, compress) reach templates
// through rs::with_metric / rs::with_policies, the library's one table.
// A refused argument raises ValueError carrying the library's message.

#include <Python.h>

#include <ATen/Parallel.h>
#include <torch/library.h>
#include <torch/types.h>

#include <cstdint>
#include <exception>
#include <initializer_list>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include <repshift/blocks/transformer_block.hpp>
#include <repshift/api/dispatch.hpp>
#include <repshift/repshift.hpp>

namespace rs = repshift;

namespace {

rs::Host host() { return rs::Host{at::get_num_threads()}; }

// Runs f, turning the library's refusals into Python ValueErrors.
template <class F>
auto refusing(F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const rs::InvalidArgument& e) {
    TORCH_CHECK_VALUE(false, e.what());
  }
  throw std::logic_error("unreachable");
}

void require_cpu(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK_VALUE(t.device().is_cpu(), "repshift::", op, ": ", name, " is on ", t.device(),
                    "; this build has CPU kernels only");
}

void require_dim(const at::Tensor& t, const char* op, const char* name, int64_t dim) {
  TORCH_CHECK_VALUE(t.dim() == dim, "repshift::", op, ": ", name, " must have ", dim, " dimensions, got shape ",
                    t.sizes());
}

// f(ptr) with the storage type of a float32 / bfloat16 / float16 tensor.
template <class F>
void with_storage(const at::Tensor& t, const char* op, F&& f) {
  switch (t.scalar_type()) {
    case at::kFloat: return f(t.data_ptr<float>());
    case at::kBFloat16: return f(reinterpret_cast<rs::bf16*>(t.data_ptr<at::BFloat16>()));
    case at::kHalf: return f(reinterpret_cast<rs::half*>(t.data_ptr<at::Half>()));
    default: TORCH_CHECK_VALUE(false, "repshift::", op, ": dtype ", t.scalar_type(), " is not float32, bfloat16 or float16");
  }
}

at::Tensor int32_indices(const at::Tensor& idx, const char* op, const char* name) {
  TORCH_CHECK_VALUE(idx.scalar_type() == at::kLong || idx.scalar_type() == at::kInt, "repshift::", op, ": ", name,
                    " must be int64 or int32, got ", idx.scalar_type());
  return idx.to(at::kInt).contiguous();
}

// ---- shift_score, select_top, gather_tokens --------------------------------

at::Tensor shift_score(const at::Tensor& before, const at::Tensor& after, c10::string_view metric) {
  constexpr const char* op = "shift_score";
  require_cpu(before, op, "before");
  require_cpu(after, op, "after");
  require_dim(before, op, "before", 3);
  TORCH_CHECK_VALUE(after.sizes() == before.sizes(), "repshift::shift_score: after has shape ", after.sizes(),
                    ", before ", before.sizes());
  TORCH_CHECK_VALUE(after.scalar_type() == before.scalar_type(), "repshift::shift_score: after is ", after.scalar_type(),
                    ", before ", before.scalar_type());
  const auto b = before.contiguous(), a = after.contiguous();
  auto scores = at::empty({b.size(0), b.size(1)}, b.options().dtype(at::kFloat));
  if (b.numel() == 0) return scores.zero_();
  refusing([&] {
    rs::with_metric(std::string_view(metric.data(), metric.size()), [&](auto m) {
      using Metric = decltype(m);
      with_storage(b, op, [&](auto* bp) {
        using T = std::remove_pointer_t<decltype(bp)>;
        rs::shift_score<Metric>(host(), static_cast<const T*>(bp), reinterpret_cast<const T*>(a.data_ptr()),
                                scores.data_ptr<float>(), int(b.size(0)), int(b.size(1)), int(b.size(2)));
      });
    });
    return 0;
  });
  return scores;
}

at::Tensor select_top(const at::Tensor& scores, int64_t keep, int64_t protect) {
  constexpr const char* op = "select_top";
  require_cpu(scores, op, "scores");
  require_dim(scores, op, "scores", 2);
  const auto s = scores.to(at::kFloat).contiguous();
  auto idx = at::empty({s.size(0), keep}, s.options().dtype(at::kInt));
  refusing([&] {
    rs::select_top(host(), s.data_ptr<float>(), idx.data_ptr<int>(), int(s.size(0)), int(s.size(1)), int(keep),
                   int(protect));
    return 0;
  });
  return idx.to(at::kLong);
}

at::Tensor gather_tokens(const at::Tensor& x, const at::Tensor& idx) {
  constexpr const char* op = "gather_tokens";
  require_cpu(x, op, "x");
  require_dim(x, op, "x", 3);
  require_dim(idx, op, "idx", 2);
  TORCH_CHECK_VALUE(idx.size(0) == x.size(0), "repshift::gather_tokens: idx has ", idx.size(0), " rows, x ", x.size(0));
  const auto xc = x.contiguous();
  const auto ic = int32_indices(idx, op, "idx");
  auto out = at::empty({x.size(0), idx.size(1), x.size(2)}, x.options());
  refusing([&] {
    with_storage(xc, op, [&](auto* xp) {
      using T = std::remove_pointer_t<decltype(xp)>;
      rs::gather_tokens(host(), static_cast<const T*>(xp), ic.data_ptr<int>(), reinterpret_cast<T*>(out.data_ptr()),
                        int(x.size(0)), int(x.size(1)), int(idx.size(1)), int(x.size(2)));
    });
    return 0;
  });
  return out;
}

// ---- packed (varlen) forms ---------------------------------------------------

at::Tensor cu_seqlens_host(const at::Tensor& cu, const char* op, const char* name) {
  require_cpu(cu, op, name);
  require_dim(cu, op, name, 1);
  TORCH_CHECK_VALUE(cu.size(0) >= 2, "repshift::", op, ": ", name, " needs batch + 1 >= 2 entries");
  return int32_indices(cu, op, name);
}

// cu_seqlens and kept_cu_seqlens as int32, of one batch size.
std::pair<at::Tensor, at::Tensor> cu_pair(const at::Tensor& cu_seqlens, const at::Tensor& kept_cu_seqlens,
                                          const char* op) {
  auto cu = cu_seqlens_host(cu_seqlens, op, "cu_seqlens");
  auto kcu = cu_seqlens_host(kept_cu_seqlens, op, "kept_cu_seqlens");
  TORCH_CHECK_VALUE(kcu.size(0) == cu.size(0), "repshift::", op, ": kept_cu_seqlens has ", kcu.size(0),
                    " entries, cu_seqlens ", cu.size(0));
  return {cu, kcu};
}

at::Tensor select_top_varlen(const at::Tensor& scores, const at::Tensor& cu_seqlens, const at::Tensor& kept_cu_seqlens,
                             int64_t protect) {
  constexpr const char* op = "select_top_varlen";
  require_cpu(scores, op, "scores");
  require_dim(scores, op, "scores", 1);
  const auto [cu, kcu] = cu_pair(cu_seqlens, kept_cu_seqlens, op);
  const int batch = int(cu.size(0) - 1);
  const auto s = scores.to(at::kFloat).contiguous();
  auto idx = at::empty({kcu[batch].item<int>()}, s.options().dtype(at::kInt));
  refusing([&] {
    rs::detail::check_cu_seqlens(op, "cu_seqlens", cu.data_ptr<int>(), batch, s.size(0));
    rs::select_top_varlen(host(), s.data_ptr<float>(), cu.data_ptr<int>(), kcu.data_ptr<int>(), idx.data_ptr<int>(),
                          batch, rs::max_seqlen(cu.data_ptr<int>(), batch), rs::max_seqlen(kcu.data_ptr<int>(), batch),
                          int(protect));
    return 0;
  });
  return idx.to(at::kLong);
}

at::Tensor gather_tokens_varlen(const at::Tensor& x, const at::Tensor& cu_seqlens, const at::Tensor& idx,
                                const at::Tensor& kept_cu_seqlens) {
  constexpr const char* op = "gather_tokens_varlen";
  require_cpu(x, op, "x");
  require_dim(x, op, "x", 2);
  require_dim(idx, op, "idx", 1);
  const auto [cu, kcu] = cu_pair(cu_seqlens, kept_cu_seqlens, op);
  const int batch = int(cu.size(0) - 1);
  TORCH_CHECK_VALUE(kcu[batch].item<int64_t>() == idx.size(0),
                    "repshift::gather_tokens_varlen: kept_cu_seqlens must have batch + 1 entries ending at idx's ",
                    idx.size(0));
  const auto xc = x.contiguous();
  const auto ic = int32_indices(idx, op, "idx");
  auto out = at::empty({idx.size(0), x.size(1)}, x.options());
  refusing([&] {
    rs::detail::check_cu_seqlens(op, "cu_seqlens", cu.data_ptr<int>(), batch, x.size(0));
    with_storage(xc, op, [&](auto* xp) {
      using T = std::remove_pointer_t<decltype(xp)>;
      rs::gather_tokens_varlen(host(), static_cast<const T*>(xp), cu.data_ptr<int>(), ic.data_ptr<int>(),
                               kcu.data_ptr<int>(), reinterpret_cast<T*>(out.data_ptr()), batch,
                               rs::max_seqlen(cu.data_ptr<int>(), batch), rs::max_seqlen(kcu.data_ptr<int>(), batch),
                               int(x.size(1)));
    });
    return 0;
  });
  return out;
}

// ---- the fused timm ViT block ------------------------------------------------

at::Tensor f32(const at::Tensor& t, const char* name) {
  require_cpu(t, "block_forward", name);
  return t.to(at::kFloat).contiguous();
}

// The twelve tensors of a block as contiguous float32 (qkv bias may be absent).
struct BlockTensors {
  at::Tensor t[12];
};

BlockTensors float_block(const at::Tensor& norm1_w, const at::Tensor& norm1_b, const at::Tensor& qkv_w,
                         const c10::optional<at::Tensor>& qkv_b, const at::Tensor& proj_w, const at::Tensor& proj_b,
                         const at::Tensor& norm2_w, const at::Tensor& norm2_b, const at::Tensor& fc1_w,
                         const at::Tensor& fc1_b, const at::Tensor& fc2_w, const at::Tensor& fc2_b) {
  return {{f32(norm1_w, "norm1_w"), f32(norm1_b, "norm1_b"), f32(qkv_w, "qkv_w"),
           qkv_b ? f32(*qkv_b, "qkv_b") : at::Tensor(), f32(proj_w, "proj_w"), f32(proj_b, "proj_b"),
           f32(norm2_w, "norm2_w"), f32(norm2_b, "norm2_b"), f32(fc1_w, "fc1_w"), f32(fc1_b, "fc1_b"),
           f32(fc2_w, "fc2_w"), f32(fc2_b, "fc2_b")}};
}

// One thread's block workspace. With oneDNN it keeps packed copies of the
// dense weights, keyed by address and checked by sampled values
// (cpu/onednn_linear.hpp). Torch can tell more: an in-place update (an
// optimizer step, masked rows) bumps a tensor's version counter, so a change
// of version at a known address drops every packed copy. Weights converted
// to float32 for the call are fresh copies each time: they are never kept.
class BlockWorkspace {
 public:
  // w: the call's float32 weights; dense: the caller's qkv, proj, fc1 and
  // fc2 weight tensors, as passed.
  rs::Workspace<rs::Host>& for_weights(const BlockTensors& w, std::initializer_list<const at::Tensor*> dense) {
#if defined(REPSHIFT_HAS_ONEDNN)
    constexpr int kDense[] = {2, 4, 8, 10};  // qkv, proj, fc1, fc2 in BlockTensors
    bool converted = false, updated = false;
    int i = 0;
    for (const at::Tensor* passed : dense) {
      const at::Tensor& t = w.t[kDense[i++]];
      converted = converted || !t.is_same(*passed);
      if (t.is_inference()) continue;  // no version counter: the sampled values are the check
      const auto [it, added] = versions_.try_emplace(t.data_ptr(), t._version());
      updated = updated || (!added && it->second != t._version());
      it->second = t._version();
    }
    if (converted || updated) ws_.kept<rs::cpu::DenseLayers>().clear_packed();
    if (converted || versions_.size() > kMaxTracked) versions_.clear();
#else
    (void)w, (void)dense;
#endif
    return ws_;
  }

 private:
  static constexpr std::size_t kMaxTracked = 4096;
  rs::Workspace<rs::Host> ws_;
  std::unordered_map<const void*, std::uint32_t> versions_;  // weight address -> its version when last used
};

// Views of the twelve float32 tensors of a block (qkv bias may be
// undefined), shapes checked against C and fc1's hidden width.
rs::TransformerBlockWeights block_weights(const at::Tensor (&w)[12], int64_t C, int64_t heads, double eps,
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
  auto ptr = [](const at::Tensor& t) -> const float* { return t.defined() ? t.data_ptr<float>() : nullptr; };
  rs::TransformerBlockWeights v;
  v.dim = C;
  v.heads = heads;
  v.mlp_hidden = hidden;
  v.ln_eps = float(eps);
  v.norm1_weight = ptr(w[0]), v.norm1_bias = ptr(w[1]), v.qkv_weight = ptr(w[2]), v.qkv_bias = ptr(w[3]);
  v.proj_weight = ptr(w[4]), v.proj_bias = ptr(w[5]), v.norm2_weight = ptr(w[6]), v.norm2_bias = ptr(w[7]);
  v.fc1_weight = ptr(w[8]), v.fc1_bias = ptr(w[9]), v.fc2_weight = ptr(w[10]), v.fc2_bias = ptr(w[11]);
  return v;
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

// One pre-norm (timm) or post-norm (BERT) transformer block with the shift
// measured at `site` by `importance`, keeping `keep` tokens (== tokens: no
// pruning) by `compress`. Returns (out [B, keep (+1 with fuse), C],
// kept indices [B, keep] into this block's input, scores [B, N], kept
// sizes [B, keep] with merge (else empty)). Storage is float32 inside:
// bfloat16 / float16 inputs are converted and the output converted back.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> block_forward(
    const at::Tensor& x, const at::Tensor& norm1_w, const at::Tensor& norm1_b, const at::Tensor& qkv_w,
    const c10::optional<at::Tensor>& qkv_b, const at::Tensor& proj_w, const at::Tensor& proj_b, const at::Tensor& norm2_w,
    const at::Tensor& norm2_b, const at::Tensor& fc1_w, const at::Tensor& fc1_b, const at::Tensor& fc2_w,
    const at::Tensor& fc2_b, int64_t heads, double eps, c10::string_view site, c10::string_view importance,
    c10::string_view compress, int64_t keep, int64_t protect, bool post_norm, int64_t seed,
    const c10::optional<at::Tensor>& sizes) {
  constexpr const char* op = "block_forward";
  require_cpu(x, op, "x");
  require_dim(x, op, "x", 3);
  const int64_t B = x.size(0), N = x.size(1), C = x.size(2);
  const auto xf = f32(x, "x");
  const BlockTensors w = float_block(norm1_w, norm1_b, qkv_w, qkv_b, proj_w, proj_b, norm2_w, norm2_b, fc1_w, fc1_b,
                                     fc2_w, fc2_b);
  const auto weights = block_weights(w.t, C, heads, eps, op);
  at::Tensor scores = at::empty({B, N}, xf.options());
  at::Tensor keep_idx = at::empty({B, keep}, xf.options().dtype(at::kInt));
  at::Tensor out, kept_sizes = at::empty({0}, xf.options());
  at::Tensor sizes_f = sizes && sizes->defined() ? f32(*sizes, "sizes") : at::Tensor();
  thread_local BlockWorkspace workspaces;
  auto& ws = workspaces.for_weights(w, {&qkv_w, &proj_w, &fc1_w, &fc2_w});
  refusing([&] {
    with_block(site, importance, compress, post_norm, [&](auto block) {
      using Block = decltype(block);
      const int64_t out_tokens = Block::output_tokens(int(N), int(keep));
      out = at::empty({B, out_tokens, C}, xf.options());
      auto a = rs::TransformerBlockArgs::dense(xf.data_ptr<float>(), out.data_ptr<float>(), int(B), int(N));
      a.keep = int(keep);
      a.protect = int(protect);
      a.seed = std::uint64_t(seed);
      a.scores = scores.data_ptr<float>();
      a.keep_idx = keep_idx.data_ptr<int>();
      if constexpr (Block::kMerge) {
        a.sizes = sizes_f.defined() ? sizes_f.data_ptr<float>() : nullptr;
        if (keep < N) {
          kept_sizes = at::empty({B, keep}, xf.options());
          a.kept_sizes = kept_sizes.data_ptr<float>();
        }
      } else {
        TORCH_CHECK_VALUE(!sizes_f.defined(), "repshift::block_forward: sizes belong to compress = 'merge'");
      }
      Block::forward(host(), weights, a, ws);
    });
    return 0;
  });
  if (keep == N) keep_idx = at::arange(N, xf.options().dtype(at::kInt)).expand({B, N});
  return {out.to(x.scalar_type()), keep_idx.to(at::kLong), scores, kept_sizes};
}

// The same block over packed samples (cu_seqlens, int32 [B + 1]): sample b
// keeps kept_cu_seqlens[b + 1] - kept_cu_seqlens[b] of its tokens. Returns
// (out [out_total, C], kept indices [kept_total] local to each sample,
// scores [total], out_cu_seqlens int32 [B + 1]).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> block_forward_varlen(
    const at::Tensor& x, const at::Tensor& cu_seqlens, const at::Tensor& kept_cu_seqlens, const at::Tensor& norm1_w,
    const at::Tensor& norm1_b, const at::Tensor& qkv_w, const c10::optional<at::Tensor>& qkv_b, const at::Tensor& proj_w,
    const at::Tensor& proj_b, const at::Tensor& norm2_w, const at::Tensor& norm2_b, const at::Tensor& fc1_w,
    const at::Tensor& fc1_b, const at::Tensor& fc2_w, const at::Tensor& fc2_b, int64_t heads, double eps,
    c10::string_view site, c10::string_view importance, c10::string_view compress, int64_t protect, bool post_norm,
    int64_t seed) {
  constexpr const char* op = "block_forward_varlen";
  require_cpu(x, op, "x");
  require_dim(x, op, "x", 2);
  const auto [cu, kcu] = cu_pair(cu_seqlens, kept_cu_seqlens, op);
  const int batch = int(cu.size(0) - 1);
  const int64_t total = x.size(0), C = x.size(1);
  TORCH_CHECK_VALUE(cu[batch].item<int64_t>() == total, "repshift::block_forward_varlen: cu_seqlens[batch] = ",
                    cu[batch].item<int64_t>(), " must equal x's ", total, " rows");
  const auto xf = f32(x, "x");
  const BlockTensors w = float_block(norm1_w, norm1_b, qkv_w, qkv_b, proj_w, proj_b, norm2_w, norm2_b, fc1_w, fc1_b,
                                     fc2_w, fc2_b);
  const auto weights = block_weights(w.t, C, heads, eps, op);
  at::Tensor scores = at::empty({total}, xf.options());
  at::Tensor keep_idx = at::empty({kcu[batch].item<int64_t>()}, xf.options().dtype(at::kInt));
  at::Tensor out_cu = at::empty({batch + 1}, cu.options());
  at::Tensor out = at::empty({total + batch, C}, xf.options());  // room for Fuse's one extra row per sample
  thread_local BlockWorkspace workspaces;
  auto& ws = workspaces.for_weights(w, {&qkv_w, &proj_w, &fc1_w, &fc2_w});
  refusing([&] {
    with_block(site, importance, compress, post_norm, [&](auto block) {
      using Block = decltype(block);
      rs::TransformerBlockArgs a;
      a.x = xf.data_ptr<float>();
      a.y = out.data_ptr<float>();
      a.batch = batch;
      a.protect = int(protect);
      a.seed = std::uint64_t(seed);
      a.cu_seqlens = cu.data_ptr<int>();
      a.kept_cu_seqlens = kcu.data_ptr<int>();
      a.out_cu_seqlens = out_cu.data_ptr<int>();
      a.scores = scores.data_ptr<float>();
      a.keep_idx = keep_idx.data_ptr<int>();
      TORCH_CHECK_VALUE(!Block::kMerge, "repshift::block_forward_varlen: compress = 'merge' is not offered packed here");
      Block::forward(host(), weights, a, ws);
    });
    return 0;
  });
  out = out.narrow(0, 0, out_cu[batch].item<int64_t>());
  return {out.to(x.scalar_type()), keep_idx.to(at::kLong), scores, out_cu};
}

}  // namespace

TORCH_LIBRARY(repshift, m) {
  m.def("shift_score(Tensor before, Tensor after, str metric) -> Tensor");
  m.def("select_top(Tensor scores, int keep, int protect=0) -> Tensor");
  m.def("gather_tokens(Tensor x, Tensor idx) -> Tensor");
  m.def("select_top_varlen(Tensor scores, Tensor cu_seqlens, Tensor kept_cu_seqlens, int protect=0) -> Tensor");
  m.def("gather_tokens_varlen(Tensor x, Tensor cu_seqlens, Tensor idx, Tensor kept_cu_seqlens) -> Tensor");
  m.def(
      "block_forward(Tensor x, Tensor norm1_w, Tensor norm1_b, Tensor qkv_w, Tensor? qkv_b, Tensor proj_w, "
      "Tensor proj_b, Tensor norm2_w, Tensor norm2_b, Tensor fc1_w, Tensor fc1_b, Tensor fc2_w, Tensor fc2_b, "
      "int heads, float eps, str site, str importance, str compress, int keep, int protect=1, bool post_norm=False, "
      "int seed=0, Tensor? sizes=None) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "block_forward_varlen(Tensor x, Tensor cu_seqlens, Tensor kept_cu_seqlens, Tensor norm1_w, Tensor norm1_b, "
      "Tensor qkv_w, Tensor? qkv_b, Tensor proj_w, Tensor proj_b, Tensor norm2_w, Tensor norm2_b, Tensor fc1_w, "
      "Tensor fc1_b, Tensor fc2_w, Tensor fc2_b, int heads, float eps, str site, str importance, str compress, "
      "int protect=1, bool post_norm=False, int seed=0) -> (Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(repshift, CPU, m) {
  m.impl("shift_score", &shift_score);
  m.impl("select_top", &select_top);
  m.impl("gather_tokens", &gather_tokens);
  m.impl("select_top_varlen", &select_top_varlen);
  m.impl("gather_tokens_varlen", &gather_tokens_varlen);
  m.impl("block_forward", &block_forward);
  m.impl("block_forward_varlen", &block_forward_varlen);
}

// `import repshift._C` loads the library above; the module itself is empty
// (the ops live in torch.ops.repshift), so no pybind11 is needed.
extern "C" PyObject* PyInit__C() {
  static PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", "repshift's torch ops (torch.ops.repshift)", -1, nullptr};
  return PyModule_Create(&module);
}
