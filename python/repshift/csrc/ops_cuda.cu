// repshift's kernels as torch ops on CUDA tensors: TORCH_LIBRARY_IMPL(repshift,
// CUDA) for the schemas ops.cpp defines, with the same checks
// (op_support.hpp). Kernels run on torch's current stream of the tensors'
// device; outputs come from torch's caching allocator. float32, float16 and
// bfloat16 run as themselves (f32 accumulation inside), the fused block
// included (block_cuda.cuh).
//
// Nothing synchronises, except where only the device can see a bad value
// and the op must raise: gather_tokens(_varlen) and block_forward with
// Merge sizes read a 4-int status after their kernels (one stream sync).
// The packed ops take cu_seqlens on the CPU or the device: the host
// validates and plans with a copy; block_forward_varlen returns its
// out_cu_seqlens on the CPU, as the CPU op does.

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <string_view>
#include <type_traits>

#include <repshift/cuda.hpp>

#include "block_cuda.hpp"
#include "op_support.hpp"

namespace {

using namespace repshift_ops;

rs::Cuda current_stream() { return rs::Cuda{at::cuda::getCurrentCUDAStream().stream()}; }

// The tensor that says where the op runs is on a CUDA device. Torch picks
// these kernels when any argument is on CUDA (a device cu_seqlens, say);
// the device guard would fail on a CPU tensor with a message naming no
// argument.
void require_cuda(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK_VALUE(t.is_cuda(), "repshift::", op, ": ", name, " is on ", t.device(),
                    " while another argument is on CUDA: put the tensors on one device");
}

// f(ptr) with the device storage type of a float32 / float16 / bfloat16 tensor.
template <class F>
decltype(auto) with_device_storage(const at::Tensor& t, const char* op, F&& f) {
  switch (t.scalar_type()) {
    case at::kFloat: return f(static_cast<float*>(t.data_ptr()));
    case at::kHalf: return f(static_cast<__half*>(t.data_ptr()));
    case at::kBFloat16: return f(static_cast<__nv_bfloat16*>(t.data_ptr()));
    default:
      TORCH_CHECK_VALUE(false, "repshift::", op, ": dtype ", t.scalar_type(), " is not float32, bfloat16 or float16");
  }
}

// A stream executor with a zeroed device status array for one call; raise()
// reads it (one stream sync) and throws the library's message.
struct CheckedStream {
  at::Tensor status;
  rs::Cuda exec;
  explicit CheckedStream(const at::Device& device)
      : status(at::zeros({4}, at::TensorOptions().dtype(at::kInt).device(device))), exec(current_stream()) {
    exec.status = status.data_ptr<int>();
  }
  void raise() const {
    refusing([&] {
      rs::cuda::throw_if_status(exec);
      return 0;
    });
  }
};

// ---- shift_score, select_top, gather_tokens --------------------------------

at::Tensor shift_score(const at::Tensor& before, const at::Tensor& after, c10::string_view metric) {
  constexpr const char* op = "shift_score";
  require_cuda(before, op, "before");
  check_score_inputs(before, after);
  require_device(after, before.device(), op, "after");
  const c10::cuda::CUDAGuard guard(before.device());
  return shift_score_on(current_stream(), before, after, metric, [](const at::Tensor& t, const char* where, auto&& f) {
    with_device_storage(t, where, f);
  });
}

at::Tensor select_top(const at::Tensor& scores, int64_t keep, int64_t protect) {
  constexpr const char* op = "select_top";
  require_cuda(scores, op, "scores");
  check_select_inputs(scores, keep);
  const c10::cuda::CUDAGuard guard(scores.device());
  const auto s = scores.to(at::kFloat).contiguous();
  auto idx = at::empty({s.size(0), keep}, s.options().dtype(at::kInt));
  refusing([&] {
    rs::select_top(current_stream(), s.data_ptr<float>(), idx.data_ptr<int>(), int(s.size(0)), int(s.size(1)),
                   int(keep), int_arg(protect, op, "protect"));
    return 0;
  });
  return idx.to(at::kLong);
}

at::Tensor gather_tokens(const at::Tensor& x, const at::Tensor& idx) {
  constexpr const char* op = "gather_tokens";
  require_cuda(x, op, "x");
  check_gather_inputs(x, idx);
  require_device(idx, x.device(), op, "idx");
  const c10::cuda::CUDAGuard guard(x.device());
  const auto xc = x.contiguous();
  const auto ic = int32_indices(idx, op, "idx");
  auto out = at::empty({x.size(0), idx.size(1), x.size(2)}, x.options());
  const CheckedStream stream(x.device());
  refusing([&] {
    with_device_storage(xc, op, [&](auto* xp) {
      using T = std::remove_pointer_t<decltype(xp)>;
      rs::gather_tokens(stream.exec, static_cast<const T*>(xp), ic.data_ptr<int>(), static_cast<T*>(out.data_ptr()),
                        int(x.size(0)), int(x.size(1)), int(idx.size(1)), int(x.size(2)));
    });
    return 0;
  });
  stream.raise();
  return out;
}

// ---- packed (varlen) forms ---------------------------------------------------

at::Tensor select_top_varlen(const at::Tensor& scores, const at::Tensor& cu_seqlens, const at::Tensor& kept_cu_seqlens,
                             int64_t protect) {
  constexpr const char* op = "select_top_varlen";
  require_cuda(scores, op, "scores");
  const c10::cuda::CUDAGuard guard(scores.device());
  const auto [cu, kcu] = cu_pair(cu_seqlens, kept_cu_seqlens, op);
  const int protect_int = check_select_varlen(scores, cu, kcu, protect);
  const int batch = int(cu.size(0) - 1);
  const auto s = scores.to(at::kFloat).contiguous();
  const auto dcu = cu.to(scores.device()), dkcu = kcu.to(scores.device());
  auto idx = at::empty({last(kcu)}, s.options().dtype(at::kInt));
  refusing([&] {
    rs::select_top_varlen(current_stream(), s.data_ptr<float>(), dcu.data_ptr<int>(), dkcu.data_ptr<int>(),
                          idx.data_ptr<int>(), batch, rs::max_seqlen(cu.data_ptr<int>(), batch),
                          rs::max_seqlen(kcu.data_ptr<int>(), batch), protect_int);
    return 0;
  });
  return idx.to(at::kLong);
}

at::Tensor gather_tokens_varlen(const at::Tensor& x, const at::Tensor& cu_seqlens, const at::Tensor& idx,
                                const at::Tensor& kept_cu_seqlens) {
  constexpr const char* op = "gather_tokens_varlen";
  require_cuda(x, op, "x");
  require_device(idx, x.device(), op, "idx");
  const c10::cuda::CUDAGuard guard(x.device());
  const auto [cu, kcu] = cu_pair(cu_seqlens, kept_cu_seqlens, op);
  check_gather_varlen(x, idx, cu, kcu);
  const int batch = int(cu.size(0) - 1);
  const auto xc = x.contiguous();
  const auto ic = int32_indices(idx, op, "idx");
  const auto dcu = cu.to(x.device()), dkcu = kcu.to(x.device());
  auto out = at::empty({idx.size(0), x.size(1)}, x.options());
  const CheckedStream stream(x.device());
  refusing([&] {
    with_device_storage(xc, op, [&](auto* xp) {
      using T = std::remove_pointer_t<decltype(xp)>;
      rs::gather_tokens_varlen(stream.exec, static_cast<const T*>(xp), dcu.data_ptr<int>(), ic.data_ptr<int>(),
                               dkcu.data_ptr<int>(), static_cast<T*>(out.data_ptr()), batch,
                               rs::max_seqlen(cu.data_ptr<int>(), batch), rs::max_seqlen(kcu.data_ptr<int>(), batch),
                               int(x.size(1)));
    });
    return 0;
  });
  stream.raise();
  return out;
}

// ---- the fused timm ViT block ------------------------------------------------

// The storage type x runs in, as the block's template argument.
template <class F>
BlockOutputs with_block_storage(const at::Tensor& x, const char* op, F&& f) {
  switch (x.scalar_type()) {
    case at::kFloat: return f(float{});
    case at::kHalf: return f(__half{});
    case at::kBFloat16: return f(__nv_bfloat16{});
    default:
      TORCH_CHECK_VALUE(false, "repshift::", op, ": x is ", x.scalar_type(), ", not float32, bfloat16 or float16");
  }
}

// x as the block's storage: float32, bfloat16 and float16 as they are; any
// other floating type (float64) in float32, as on the CPU, the output
// converted back.
at::Tensor storage_input(const at::Tensor& x) {
  const bool native = x.scalar_type() == at::kFloat || x.scalar_type() == at::kHalf || x.scalar_type() == at::kBFloat16;
  return (native ? x : x.to(at::kFloat)).contiguous();
}

BlockOutputs block_forward(const at::Tensor& x, const at::Tensor& norm1_w, const at::Tensor& norm1_b,
                           const at::Tensor& qkv_w, const c10::optional<at::Tensor>& qkv_b, const at::Tensor& proj_w,
                           const at::Tensor& proj_b, const at::Tensor& norm2_w, const at::Tensor& norm2_b,
                           const at::Tensor& fc1_w, const at::Tensor& fc1_b, const at::Tensor& fc2_w,
                           const at::Tensor& fc2_b, int64_t heads, double eps, c10::string_view site,
                           c10::string_view importance, c10::string_view compress, int64_t keep, int64_t protect,
                           bool post_norm, int64_t seed, const c10::optional<at::Tensor>& sizes,
                           bool first_token_only) {
  constexpr const char* op = "block_forward";
  require_cuda(x, op, "x");
  require_token_input(x, op, "x", 3);
  require_keep(keep, x.size(1), op);
  require_first_token_only(first_token_only, keep, x.size(1), op);
  const c10::cuda::CUDAGuard guard(x.device());
  const auto xc = storage_input(x);
  const BlockTensors w = block_tensors(xc.options(), norm1_w, norm1_b, qkv_w, qkv_b, proj_w, proj_b, norm2_w, norm2_b,
                                       fc1_w, fc1_b, fc2_w, fc2_b);
  at::Tensor sizes_f;
  if (sizes && sizes->defined()) {
    require_device(*sizes, x.device(), op, "sizes");
    check_sizes(*sizes, x, op);
    sizes_f = sizes->to(at::kFloat).contiguous();
  }
  auto [out, keep_idx, scores, kept_sizes] = with_block_storage(xc, op, [&](auto t) {
    using T = decltype(t);
    return cuda_block_forward<T>(xc, w, heads, eps, site, importance, compress, keep, protect, post_norm, seed,
                                 sizes_f, first_token_only);
  });
  if (keep == x.size(1)) keep_idx = all_rows_kept(x.size(0), first_token_only ? 1 : keep, keep_idx.options());
  return {out.to(x.scalar_type()), keep_idx.to(at::kLong), scores, kept_sizes};
}

BlockOutputs block_forward_varlen(const at::Tensor& x, const at::Tensor& cu_seqlens, const at::Tensor& kept_cu_seqlens,
                                  const at::Tensor& norm1_w, const at::Tensor& norm1_b, const at::Tensor& qkv_w,
                                  const c10::optional<at::Tensor>& qkv_b, const at::Tensor& proj_w,
                                  const at::Tensor& proj_b, const at::Tensor& norm2_w, const at::Tensor& norm2_b,
                                  const at::Tensor& fc1_w, const at::Tensor& fc1_b, const at::Tensor& fc2_w,
                                  const at::Tensor& fc2_b, int64_t heads, double eps, c10::string_view site,
                                  c10::string_view importance, c10::string_view compress, int64_t protect,
                                  bool post_norm, int64_t seed) {
  constexpr const char* op = "block_forward_varlen";
  require_cuda(x, op, "x");
  require_token_input(x, op, "x", 2);
  const c10::cuda::CUDAGuard guard(x.device());
  const auto [cu, kcu] = cu_pair(cu_seqlens, kept_cu_seqlens, op);
  check_layouts(op, cu, kcu, x.size(0), int_arg(protect, op, "protect"));
  const auto xc = storage_input(x);
  const BlockTensors w = block_tensors(xc.options(), norm1_w, norm1_b, qkv_w, qkv_b, proj_w, proj_b, norm2_w, norm2_b,
                                       fc1_w, fc1_b, fc2_w, fc2_b);
  auto [out, keep_idx, scores, out_cu] = with_block_storage(xc, op, [&](auto t) {
    using T = decltype(t);
    return cuda_block_forward_varlen<T>(xc, cu, kcu, w, heads, eps, site, importance, compress, protect, post_norm,
                                        seed);
  });
  if (at::equal(cu, kcu)) keep_idx = all_kept_indices(cu).to(keep_idx.device());
  return {out.to(x.scalar_type()), keep_idx.to(at::kLong), scores, out_cu};
}

}  // namespace

TORCH_LIBRARY_IMPL(repshift, CUDA, m) {
  m.impl("shift_score", &shift_score);
  m.impl("select_top", &select_top);
  m.impl("gather_tokens", &gather_tokens);
  m.impl("select_top_varlen", &select_top_varlen);
  m.impl("gather_tokens_varlen", &gather_tokens_varlen);
  m.impl("block_forward", &block_forward);
  m.impl("block_forward_varlen", &block_forward_varlen);
}
