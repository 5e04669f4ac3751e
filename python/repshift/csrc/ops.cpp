// repshift's kernels as torch ops (namespace `repshift`), CPU kernels. The
// schemas say that no input is mutated; shapes of the outputs are fixed by
// the arguments, so python/repshift/_meta.py registers fake kernels that
// let torch.compile trace them (the packed forms' sizes are data-dependent
// and get unbacked symbolic sizes there).
//
// The runtime names (metric, site, importance, compress) reach templates
// through rs::with_metric / rs::with_policies, the library's one table.
// A refused argument raises ValueError carrying the library's message.
// The checks and the block's plumbing that the CUDA ops (ops_cuda.cu)
// share live in op_support.hpp.

#include <Python.h>

#include <ATen/Parallel.h>
#include <torch/library.h>
#include <torch/types.h>

#include <atomic>
#include <cstdint>
#include <exception>
#include <initializer_list>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include <repshift/models/prune_schedule.hpp>
#include <repshift/repshift.hpp>

#include "op_support.hpp"

namespace rs = repshift;

namespace {

using namespace repshift_ops;

rs::Host host() { return rs::Host{at::get_num_threads()}; }

void require_cpu(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK_VALUE(t.device().is_cpu(), "repshift::", op, ": ", name, " is on ", t.device(),
                    "; this build has CPU kernels only");
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

// ---- shift_score, select_top, gather_tokens --------------------------------

at::Tensor shift_score(const at::Tensor& before, const at::Tensor& after, c10::string_view metric) {
  constexpr const char* op = "shift_score";
  require_cpu(before, op, "before");
  require_cpu(after, op, "after");
  check_score_inputs(before, after);
  return shift_score_on(host(), before, after, metric, [](const at::Tensor& t, const char* op, auto&& f) {
    with_storage(t, op, f);
  });
}

at::Tensor select_top(const at::Tensor& scores, int64_t keep, int64_t protect) {
  constexpr const char* op = "select_top";
  require_cpu(scores, op, "scores");
  check_select_inputs(scores, keep);
  const auto s = scores.to(at::kFloat).contiguous();
  auto idx = at::empty({s.size(0), keep}, s.options().dtype(at::kInt));
  refusing([&] {
    rs::select_top(host(), s.data_ptr<float>(), idx.data_ptr<int>(), int(s.size(0)), int(s.size(1)), int(keep),
                   int_arg(protect, op, "protect"));
    return 0;
  });
  return idx.to(at::kLong);
}

at::Tensor gather_tokens(const at::Tensor& x, const at::Tensor& idx) {
  constexpr const char* op = "gather_tokens";
  require_cpu(x, op, "x");
  check_gather_inputs(x, idx);
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

// cu_seqlens / kept_cu_seqlens: CPU int32 or int64 (the op's tensors are on the CPU).
at::Tensor select_top_varlen(const at::Tensor& scores, const at::Tensor& cu_seqlens, const at::Tensor& kept_cu_seqlens,
                             int64_t protect) {
  constexpr const char* op = "select_top_varlen";
  require_cpu(scores, op, "scores");
  require_cpu(cu_seqlens, op, "cu_seqlens");
  require_cpu(kept_cu_seqlens, op, "kept_cu_seqlens");
  const auto [cu, kcu] = cu_pair(cu_seqlens, kept_cu_seqlens, op);
  const int protect_int = check_select_varlen(scores, cu, kcu, protect);
  const int batch = int(cu.size(0) - 1);
  const auto s = scores.to(at::kFloat).contiguous();
  auto idx = at::empty({last(kcu)}, s.options().dtype(at::kInt));
  refusing([&] {
    rs::select_top_varlen(host(), s.data_ptr<float>(), cu.data_ptr<int>(), kcu.data_ptr<int>(), idx.data_ptr<int>(),
                          batch, rs::max_seqlen(cu.data_ptr<int>(), batch), rs::max_seqlen(kcu.data_ptr<int>(), batch),
                          protect_int);
    return 0;
  });
  return idx.to(at::kLong);
}

at::Tensor gather_tokens_varlen(const at::Tensor& x, const at::Tensor& cu_seqlens, const at::Tensor& idx,
                                const at::Tensor& kept_cu_seqlens) {
  constexpr const char* op = "gather_tokens_varlen";
  require_cpu(x, op, "x");
  require_cpu(cu_seqlens, op, "cu_seqlens");
  require_cpu(kept_cu_seqlens, op, "kept_cu_seqlens");
  const auto [cu, kcu] = cu_pair(cu_seqlens, kept_cu_seqlens, op);
  check_gather_varlen(x, idx, cu, kcu);
  const int batch = int(cu.size(0) - 1);
  const auto xc = x.contiguous();
  const auto ic = int32_indices(idx, op, "idx");
  auto out = at::empty({idx.size(0), x.size(1)}, x.options());
  refusing([&] {
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

// The block's twelve tensors as contiguous float32 on the CPU.
BlockTensors float_block(const at::Tensor& norm1_w, const at::Tensor& norm1_b, const at::Tensor& qkv_w,
                         const c10::optional<at::Tensor>& qkv_b, const at::Tensor& proj_w, const at::Tensor& proj_b,
                         const at::Tensor& norm2_w, const at::Tensor& norm2_b, const at::Tensor& fc1_w,
                         const at::Tensor& fc1_b, const at::Tensor& fc2_w, const at::Tensor& fc2_b) {
  return block_tensors(at::TensorOptions().dtype(at::kFloat).device(at::kCPU), norm1_w, norm1_b, qkv_w, qkv_b, proj_w,
                       proj_b, norm2_w, norm2_b, fc1_w, fc1_b, fc2_w, fc2_b);
}

at::Tensor f32(const at::Tensor& t, const char* name) {
  require_cpu(t, "block_forward", name);
  return t.to(at::kFloat).contiguous();
}

// Bumped by clear_weight_cache(): every thread's block workspace drops its
// packed weights before its next call (an edit no version counter sees,
// through `.data` or a numpy or DLPack alias of the storage).
std::atomic<std::uint64_t> weight_cache_epoch{0};

void clear_weight_cache() { weight_cache_epoch.fetch_add(1, std::memory_order_release); }

// One thread's block workspace. With oneDNN it keeps packed copies of the
// dense weights, keyed by address and checked by sampled values
// (cpu/onednn_linear.hpp). Torch can tell more: an in-place update (an
// optimizer step, masked rows) bumps a tensor's version counter, and a
// weak reference to the storage tells a new tensor at a freed address from
// the one that was packed; either drops every packed copy. Weights with
// no version counter (inference tensors, editable in place unseen) and
// weights converted to float32 for the call (fresh copies each time) are
// never kept.
class BlockWorkspace {
 public:
  // w: the call's float32 weights; dense: the caller's qkv, proj, fc1 and
  // fc2 weight tensors, as passed.
  rs::Workspace<rs::Host>& for_weights(const BlockTensors& w, std::initializer_list<const at::Tensor*> dense) {
#if defined(REPSHIFT_HAS_ONEDNN)
    // Every packed copy belongs to a weight in seen_, or to the last call's
    // untracked ones (packed_untracked_): past the bound, or when asked,
    // start over.
    const std::uint64_t epoch = weight_cache_epoch.load(std::memory_order_acquire);
    if (seen_.size() > kMaxTracked || epoch != epoch_) {
      epoch_ = epoch;
      seen_.clear();
      ws_.kept<rs::cpu::DenseLayers>().clear_packed();
    }
    bool untracked = false, updated = false;
    int i = 0;
    for (const at::Tensor* passed : dense) {
      const at::Tensor& t = w.t[BlockTensors::kDense[i++]];
      untracked = untracked || !t.is_same(*passed) || t.is_inference();
      if (untracked) continue;
      const auto storage = t.storage().unsafeGetStorageImpl();
      const auto [it, added] = seen_.try_emplace(t.data_ptr(), Seen{t.storage().getWeakStorageImpl(), t._version()});
      Seen& seen = it->second;
      if (!added && (seen.storage.expired() || seen.storage._unsafe_get_target() != storage ||
                     seen.version != t._version())) {
        updated = true;
        seen = Seen{t.storage().getWeakStorageImpl(), t._version()};
      }
    }
    // Copies packed from untracked weights are dropped before the next call
    // too: a tracked weight may come to sit at one of their addresses.
    if (untracked || updated || packed_untracked_) ws_.kept<rs::cpu::DenseLayers>().clear_packed();
    if (untracked) seen_.clear();
    packed_untracked_ = untracked;
#else
    (void)w, (void)dense;
#endif
    return ws_;
  }

 private:
  static constexpr std::size_t kMaxTracked = 4096;
  struct Seen {  // a weight's storage and version when last used
    c10::weak_intrusive_ptr<c10::StorageImpl> storage;
    std::uint32_t version;
  };
  rs::Workspace<rs::Host> ws_;
  std::unordered_map<const void*, Seen> seen_;  // by weight address
  bool packed_untracked_ = false;               // the last call packed weights it could not track
  std::uint64_t epoch_ = 0;                     // weight_cache_epoch when last cleared
};

// One pre-norm (timm) or post-norm (BERT) transformer block with the shift
// measured at `site` by `importance`, keeping `keep` tokens (== tokens: no
// pruning) by `compress`. Returns (out [B, keep (+1 with fuse), C],
// kept indices [B, keep] into this block's input, scores [B, N], kept
// sizes [B, keep] with merge (else empty)). first_token_only: the
// projection, residuals and MLP run on each sample's first row alone (all
// a class-token head reads); out [B, 1, C], see require_first_token_only.
// Storage is float32 inside: bfloat16 / float16 inputs are converted and
// the output converted back.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> block_forward(
    const at::Tensor& x, const at::Tensor& norm1_w, const at::Tensor& norm1_b, const at::Tensor& qkv_w,
    const c10::optional<at::Tensor>& qkv_b, const at::Tensor& proj_w, const at::Tensor& proj_b, const at::Tensor& norm2_w,
    const at::Tensor& norm2_b, const at::Tensor& fc1_w, const at::Tensor& fc1_b, const at::Tensor& fc2_w,
    const at::Tensor& fc2_b, int64_t heads, double eps, c10::string_view site, c10::string_view importance,
    c10::string_view compress, int64_t keep, int64_t protect, bool post_norm, int64_t seed,
    const c10::optional<at::Tensor>& sizes, bool first_token_only) {
  constexpr const char* op = "block_forward";
  require_cpu(x, op, "x");
  require_token_input(x, op, "x", 3);
  require_keep(keep, x.size(1), op);
  require_first_token_only(first_token_only, keep, x.size(1), op);
  if (sizes && sizes->defined()) check_sizes(*sizes, x, op);
  const int64_t B = x.size(0), N = x.size(1), C = x.size(2);
  const auto xf = f32(x, "x");
  const BlockTensors w = float_block(norm1_w, norm1_b, qkv_w, qkv_b, proj_w, proj_b, norm2_w, norm2_b, fc1_w, fc1_b,
                                     fc2_w, fc2_b);
  const auto weights = block_weights<float>(w.t, C, heads, eps, op);
  at::Tensor scores = at::empty({B, first_token_only ? 0 : N}, xf.options());
  at::Tensor keep_idx = at::empty({B, keep}, xf.options().dtype(at::kInt));
  at::Tensor out, kept_sizes = at::empty({0}, xf.options());
  at::Tensor sizes_f = sizes && sizes->defined() ? f32(*sizes, "sizes") : at::Tensor();
  thread_local BlockWorkspace workspaces;
  auto& ws = workspaces.for_weights(w, {&qkv_w, &proj_w, &fc1_w, &fc2_w});
  refusing([&] {
    with_block(site, importance, compress, post_norm, [&](auto block) {
      using Block = decltype(block);
      const int64_t out_tokens = first_token_only ? 1 : Block::output_tokens(int(N), int(keep));
      out = at::empty({B, out_tokens, C}, xf.options());
      auto a = dense_block_args<float>(xf, out, keep, protect, seed, scores, keep_idx, first_token_only);
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
  if (keep == N) keep_idx = all_rows_kept(B, first_token_only ? 1 : N, keep_idx.options());
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
  require_cpu(cu_seqlens, op, "cu_seqlens");
  require_cpu(kept_cu_seqlens, op, "kept_cu_seqlens");
  require_token_input(x, op, "x", 2);
  const auto [cu, kcu] = cu_pair(cu_seqlens, kept_cu_seqlens, op);
  const int batch = int(cu.size(0) - 1);
  const int64_t total = x.size(0), C = x.size(1);
  check_layouts(op, cu, kcu, total, int_arg(protect, op, "protect"));
  const auto xf = f32(x, "x");
  const BlockTensors w = float_block(norm1_w, norm1_b, qkv_w, qkv_b, proj_w, proj_b, norm2_w, norm2_b, fc1_w, fc1_b,
                                     fc2_w, fc2_b);
  const auto weights = block_weights<float>(w.t, C, heads, eps, op);
  at::Tensor scores = at::empty({total}, xf.options());
  at::Tensor keep_idx = at::empty({kcu[batch].item<int64_t>()}, xf.options().dtype(at::kInt));
  at::Tensor out_cu = at::empty({batch + 1}, cu.options());
  at::Tensor out = at::empty({total + batch, C}, xf.options());  // room for Fuse's one extra row per sample
  thread_local BlockWorkspace workspaces;
  auto& ws = workspaces.for_weights(w, {&qkv_w, &proj_w, &fc1_w, &fc2_w});
  refusing([&] {
    with_block(site, importance, compress, post_norm, [&](auto block) {
      using Block = decltype(block);
      auto a = packed_block_args<float>(xf, out, cu, kcu, out_cu, protect, seed, scores, keep_idx);
      TORCH_CHECK_VALUE(!Block::kMerge, "repshift::block_forward_varlen: compress = 'merge' is not offered packed here");
      Block::forward(host(), weights, a, ws);
    });
    return 0;
  });
  out = out.narrow(0, 0, out_cu[batch].item<int64_t>());
  if (at::equal(cu, kcu)) keep_idx = all_kept_indices(cu);
  return {out.to(x.scalar_type()), keep_idx.to(at::kLong), scores, out_cu};
}

// Refuses names, or a combination of them, that select no Block (the
// library's table): the patches ask before they touch a model.
void check_policies(c10::string_view site, c10::string_view importance, c10::string_view compress) {
  refusing([&] {
    with_block(site, importance, compress, false, [](auto) {});
    return 0;
  });
}

// Every compress policy of the registry (policies/registry.hpp) and what it
// does to a block's output: the tokens it appends to a sample that dropped
// some, and whether it carries token sizes. The fake kernels and the
// patches read this table rather than knowing policies by name.
template <class... Compress>
std::tuple<c10::List<std::string>, c10::List<int64_t>, c10::List<bool>> compress_table(
    rs::TypeList<Compress...>) {
  c10::List<std::string> names;
  c10::List<int64_t> extra_tokens;
  c10::List<bool> tracks_sizes;
  (names.push_back(Compress::name), ...);
  (extra_tokens.push_back(Compress::extra_tokens), ...);
  (tracks_sizes.push_back(Compress::tracks_sizes), ...);
  return {names, extra_tokens, tracks_sizes};
}

std::tuple<c10::List<std::string>, c10::List<int64_t>, c10::List<bool>> compress_policies() {
  return compress_table(rs::policies::Compressions{});
}

// Refuses a schedule of (layers[i], ratios[i]) steps that `compress` cannot
// realise on `tokens` tokens (Merge removes at most half of the unprotected
// ones per layer), naming the layer: the models' own check
// (PruneSchedule::check_reachable), asked by the timm patch before it
// touches a model.
template <class... Compress>
void check_reachable_of(rs::TypeList<Compress...>, const char* where, c10::string_view name,
                        const rs::PruneSchedule& schedule, int tokens, int depth) {
  const bool known = ((name == c10::string_view(Compress::name)
                           ? (schedule.check_reachable<Compress>(where, 0, tokens, depth), true)
                           : false) ||
                      ...);
  TORCH_CHECK_VALUE(known, "repshift::", where, ": compress = '", name, "' is not a compress policy");
}

void check_schedule_reachable(c10::string_view compress, int64_t tokens, int64_t protect, int64_t depth,
                              c10::ArrayRef<int64_t> layers, c10::ArrayRef<double> ratios) {
  constexpr const char* op = "check_schedule_reachable";  // the library's messages add "repshift::"
  TORCH_CHECK_VALUE(layers.size() == ratios.size(), "repshift::", op, ": ", layers.size(), " layers but ",
                    ratios.size(), " ratios");
  TORCH_CHECK_VALUE(tokens >= 0, "repshift::", op, ": tokens = ", tokens, " must be >= 0");
  TORCH_CHECK_VALUE(depth >= 0, "repshift::", op, ": depth = ", depth, " must be >= 0");
  TORCH_CHECK_VALUE(protect >= 0 && protect <= tokens, "repshift::", op, ": protect = ", protect,
                    " must be in [0, tokens = ", tokens, "]");
  std::vector<std::pair<int, double>> steps;
  for (std::size_t i = 0; i < layers.size(); ++i) steps.emplace_back(int_arg(layers[i], op, "layers"), ratios[i]);
  refusing([&] {
    const int n = int_arg(tokens, op, "tokens"), d = int_arg(depth, op, "depth");
    const auto schedule = rs::PruneSchedule::drop(steps, int_arg(protect, op, "protect"));
    schedule.check(op, d);
    schedule.check_sample(op, 0, n, d);
    check_reachable_of(rs::policies::Compressions{}, op, compress, schedule, n, d);
    return 0;
  });
}

}  // namespace

TORCH_LIBRARY(repshift, m) {
  m.def("check_policies(str site, str importance, str compress) -> ()", &check_policies);
  m.def("compress_policies() -> (str[], int[], bool[])", &compress_policies);
  m.def("clear_weight_cache() -> ()", &clear_weight_cache);
  m.def(
      "check_schedule_reachable(str compress, int tokens, int protect, int depth, int[] layers, float[] ratios) "
      "-> ()",
      &check_schedule_reachable);
  m.def("shift_score(Tensor before, Tensor after, str metric) -> Tensor");
  m.def("select_top(Tensor scores, int keep, int protect=0) -> Tensor");
  m.def("gather_tokens(Tensor x, Tensor idx) -> Tensor");
  m.def("select_top_varlen(Tensor scores, Tensor cu_seqlens, Tensor kept_cu_seqlens, int protect=0) -> Tensor");
  m.def("gather_tokens_varlen(Tensor x, Tensor cu_seqlens, Tensor idx, Tensor kept_cu_seqlens) -> Tensor");
  m.def(
      "block_forward(Tensor x, Tensor norm1_w, Tensor norm1_b, Tensor qkv_w, Tensor? qkv_b, Tensor proj_w, "
      "Tensor proj_b, Tensor norm2_w, Tensor norm2_b, Tensor fc1_w, Tensor fc1_b, Tensor fc2_w, Tensor fc2_b, "
      "int heads, float eps, str site, str importance, str compress, int keep, int protect=1, bool post_norm=False, "
      "int seed=0, Tensor? sizes=None, bool first_token_only=False) -> (Tensor, Tensor, Tensor, Tensor)");
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
