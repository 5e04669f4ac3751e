#pragma once
// Backend<Cuda>: every op a Block, a model or an entry point runs, on the
// GPU. Pointers are device pointers; every call only enqueues on
// exec.stream. The blocks and models are written once against this
// vocabulary (cpu/backend.hpp is the CPU's); the traits say where the
// executors differ:
//   gemm_adds_bias = true: cuBLASLt adds the bias in its epilogue, so the
//     row epilogues after it get none;
//   grows_on_demand = false: a workspace that is too small is refused
//     (cudaMalloc would synchronise the forward path): reserve() first.

#include <cmath>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "../core/backend.hpp"
#include "../params/merge_tokens.hpp"
#include "../params/fuse_tokens.hpp"
#include "../params/residual_map.hpp"
#include "../params/rms_norm.hpp"
#include "../params/selective_scan.hpp"
#include "attention.cuh"
#include "blas.cuh"
#include "device_buffer.cuh"
#include "dtype.cuh"
#include "embed_tokens.cuh"
#include "epilogue.cuh"
#include "error.cuh"
#include "exec.cuh"
#include "gather_tokens.cuh"
#include "layer_norm.cuh"
#include "line_prune.cuh"
#include "merge_tokens.cuh"
#include "patch_embed.cuh"
#include "pixel_reduce.cuh"
#include "pool.cuh"
#include "pool_tokens.cuh"
#include "rms_norm.cuh"
#include "select_top.cuh"
#include "selective_scan.cuh"
#include "shift_score.cuh"
#include "fuse_tokens.cuh"
#include "kept_token.cuh"
#include "token_scores.cuh"

namespace repshift {
namespace cuda {
class Dnn;  // cuda/cudnn_conv.cuh: only the CNN's ConvOps<Cuda> (cuda/cudnn_conv_ops.cuh) needs cuDNN
}  // namespace cuda

template <>
inline constexpr bool is_backend_v<Cuda> = true;

template <>
struct Backend<Cuda> {
  template <class T>
  static constexpr bool supports_v = cuda_detail::is_device_storage_v<T>;
  template <class T>
  using Buffer = cuda::DeviceBuffer<T>;
  // The cuBLASLt handle, plan cache and GEMM workspace the dense layers use,
  // and the cuDNN one the convolutions use (ConvOps<Cuda>; CNNs only).
  struct Context {
    cuda::Blas* blas = nullptr;
    cuda::Dnn* dnn = nullptr;
    Context() = default;
    Context(cuda::Blas& b) : blas(&b) {}  // NOLINT: a workspace is made from a Blas
    Context(cuda::Dnn& d) : dnn(&d) {}    // NOLINT: a CNN block's workspace from a Dnn
    Context(cuda::Blas& b, cuda::Dnn& d) : blas(&b), dnn(&d) {}
  };
  template <class Ws>
  static Context context(Context ctx, Ws&) {
    return ctx;
  }

  static constexpr bool gemm_adds_bias = true;
  static constexpr bool grows_on_demand = false;

  // ---- dense layers and row epilogues --------------------------------------
  template <class T>
  static void linear(const Cuda& exec, Context ctx, const T* x, std::int64_t rows, std::int64_t k, const T* w,
                     const T* bias, std::int64_t n, T* y) {
    if (!ctx.blas) detail::fail("Backend<Cuda>::linear", "no cuda::Blas: make the workspace or model with one");
    ctx.blas->linear(exec, cuda::LinearShape{rows, k, n, k, n}, x, w, bias, y);
  }
  template <class T>
  static void layer_norm_rows(const Cuda& exec, const T* src, std::int64_t src_stride, T* dst, std::int64_t dst_stride,
                              std::int64_t rows, std::int64_t channels, const LayerNormParams<T>& norm) {
    cuda_detail::layer_norm_rows(exec, src, src_stride, dst, dst_stride, rows, channels, norm);
  }
  // y = GELU(x . W^T + bias): cuBLASLt adds the bias, one GELU pass follows
  // (cuBLASLt's GELU epilogue is the tanh form, not erf).
  template <class T>
  static void linear_gelu(const Cuda& exec, Context ctx, const T* x, std::int64_t rows, std::int64_t k, const T* w,
                          const T* bias, std::int64_t n, T* y) {
    linear(exec, ctx, x, rows, k, w, bias, n, y);
    cuda_detail::bias_gelu(exec, y, rows, n, static_cast<const T*>(nullptr));
  }
  template <class Metric, ScoreOperands Operands, bool PostLN, class T>
  static void residual_epilogue(const Cuda& exec, const ResidualRows<T>& e) {
    cuda_detail::residual_epilogue<Metric, Operands, PostLN>(exec, e);
  }

  // ---- attention -----------------------------------------------------------
  template <class T>
  static void flash_attention(const Cuda& exec, const BasicAttentionParams<T>& p) {
    cuda::flash_attention(exec, p);
  }
  template <class T>
  static void attention_with_map(const Cuda& exec, const BasicAttentionParams<T>& p, float* map) {
    cuda::attention_with_map(exec, p, map);
  }

  // ---- scores ---------------------------------------------------------------
  template <class Metric, class T>
  static void shift_score(const Cuda& exec, const ShiftParams<T>& p) {
    cuda_detail::shift_score<Metric>(exec, p);
  }
  static void random_scores(const Cuda& exec, std::uint64_t seed, std::int64_t batch, std::int64_t tokens,
                            float* scores, const int* cu_seqlens) {
    cuda_detail::random_scores(exec, seed, batch, tokens, scores, cu_seqlens);
  }
  template <bool AllQueries>
  static void attention_column_means(const Cuda& exec, const float* map, std::int64_t batch, std::int64_t heads,
                                     std::int64_t tokens, float* scores, const int* cu_seqlens) {
    cuda_detail::attention_column_means<AllQueries>(exec, map, batch, heads, tokens, scores, cu_seqlens);
  }
  static void log_sizes(const Cuda& exec, const float* sizes, std::int64_t n, float* out) {
    cuda_detail::log_sizes(exec, sizes, n, out);
  }

  // ---- token compression ---------------------------------------------------
  // Padded or packed (cu_seqlens and kept_cu_seqlens in device memory: the
  // host cannot read them, so the kernels check each sample's counts and
  // record a bad one in exec.status; cuda/status.cuh).
  static void select_top(const Cuda& exec, const SelectParams& p) { cuda_detail::select_top(exec, p); }
  template <class T>
  static void gather_tokens(const Cuda& exec, const GatherParams<T>& p) {
    cuda_detail::gather_tokens(exec, p);
  }
  template <class T>
  static void fuse_dropped(const Cuda& exec, const FuseParams<T>& p) {
    cuda_detail::fuse_dropped(exec, p);
  }
  template <class T>
  static void merge_tokens(const Cuda& exec, const BasicMergeParams<T>& p) {
    cuda::merge_tokens(exec, p);
  }

  // ---- token assembly and pooling --------------------------------------------
  template <class T>
  static void patchify(const Cuda& exec, const T* images, std::int64_t batch, const PatchGeometry& g, T* cols) {
    cuda_detail::patchify(exec, images, batch, g, cols);
  }
  template <class T>
  static void assemble_tokens(const Cuda& exec, const T* proj, const T* cls, const T* pos, std::int64_t batch,
                              std::int64_t tokens, std::int64_t dim, std::int64_t cls_index, T* x) {
    cuda_detail::assemble_tokens(exec, proj, cls, pos, batch, tokens, dim, cls_index, x);
  }
  // Text models' input (a bad id: exec.status code 5) and the mean-pooled heads.
  template <class T>
  static void embed_tokens(const Cuda& exec, const EmbedParams<T>& p) {
    cuda_detail::embed_tokens(exec, p);
  }
  template <class T>
  static void pool_tokens(const Cuda& exec, const PoolParams<T>& p) {
    cuda_detail::pool_tokens(exec, p);
  }

  // ---- state-space scan (SsmScan: Mamba / Vim) ------------------------------
  // y [rows, n] = x [rows, k] . W^T (+ bias), x's rows ldx apart: dt_proj
  // reads the leading dt_rank columns of x_proj's wider rows, no copy.
  template <class T>
  static void linear_strided(const Cuda& exec, Context ctx, const T* x, std::int64_t ldx, std::int64_t rows,
                             std::int64_t k, const T* w, const T* bias, std::int64_t n, T* y) {
    if (!ctx.blas) detail::fail("Backend<Cuda>::linear_strided", "no cuda::Blas: make the workspace or model with one");
    ctx.blas->linear(exec, cuda::LinearShape{rows, k, n, ldx, n}, x, w, bias, y);
  }
  // tokens > 0: one row per sample, its token[r] (cuda/rms_norm.cuh).
  template <class T>
  static void rms_norm_rows(const Cuda& exec, const T* src, T* dst, std::int64_t rows, std::int64_t channels,
                            const RmsNormParams<T>& norm, const int* token = nullptr, std::int64_t tokens = 0) {
    cuda_detail::rms_norm_rows(exec, src, dst, rows, channels, norm.weight, norm.eps, token, tokens);
  }
  template <ScanDirection Dir>
  static void causal_conv1d_silu(const Cuda& exec, const CausalConvParams& p) {
    cuda::causal_conv1d_silu<Dir>(exec, p);
  }
  template <ScanDirection Dir, bool Accumulate>
  static void selective_scan(const Cuda& exec, const SelectiveScanParams& p) {
    cuda::selective_scan<Dir, Accumulate>(exec, p);
  }
  // The always-kept token: device indices are the caller's contract; a bad
  // one is recorded in exec.status (code 4) by rank_kept_token.
  static void check_kept_token(const Cuda&, const int*, std::int64_t, std::int64_t) {}
  static void rank_kept_token(const Cuda& exec, const float* scores, const int* keep_token, std::int64_t batch,
                              std::int64_t tokens, float* ranked) {
    cuda_detail::rank_kept_token(exec, scores, keep_token, batch, tokens, ranked);
  }
  static void relocate_kept_token(const Cuda& exec, const int* keep_idx, std::int64_t batch, std::int64_t keep,
                                  int* keep_token) {
    cuda_detail::relocate_kept_token(exec, keep_idx, batch, keep, keep_token);
  }
  static void fill_ints(const Cuda& exec, int* dst, std::int64_t n, int value) {
    cuda_detail::fill_ints(exec, dst, n, value);
  }

  // ---- CNN: conv and line ops ------------------------------------------------
  // NCHW feature maps only (the layout cuDNN runs here): Nhwc is refused. The
  // convolutions themselves are ConvOps<Cuda> (cuda/cudnn_conv_ops.cuh, cuDNN).
  template <class Metric, bool Score>
  static void residual_map(const Cuda& exec, const ResidualMap& r) {
    constexpr const char* where = "Backend<Cuda>::residual_map";
    nchw_only(where, r.layout);
    cuda_detail::PixelReduceParams p;
    p.after = r.branch;
    p.bias = r.bias;
    p.shortcut = r.shortcut;
    p.out = r.out;
    p.before = r.before;
    p.scores = r.scores;
    p.partials = r.scratch;
    p.batch = r.batch;
    p.channels = r.channels;
    p.pixels = r.pixels;
    cuda_detail::pixel_reduce<Metric, true, Score>(exec, p, where);
  }
  // Floats of ResidualMap::scratch: the partial sums that let the scored
  // reduction split the channels over more CTAs (cuda/pixel_reduce.cuh).
  template <class Metric>
  static std::int64_t residual_map_scratch(std::int64_t batch, std::int64_t pixels, std::int64_t channels) {
    const std::size_t bytes = cuda_detail::pixel_partials_bytes<Metric>(batch, pixels, channels);
    return std::int64_t((bytes + sizeof(float) - 1) / sizeof(float));
  }
  static void line_means(const Cuda& exec, const LineScoreParams& p) { cuda_detail::line_means(exec, p); }
  static void remove_lines(const Cuda& exec, MapLayout layout, const RemoveLinesParams& p) {
    nchw_only("Backend<Cuda>::remove_lines", layout);
    cuda::remove_lines(exec, p);
  }
  static void max_pool_3x3s2(const Cuda& exec, MapLayout layout, const float* x, std::int64_t batch,
                             std::int64_t channels, std::int64_t H, std::int64_t W, float* out) {
    nchw_only("Backend<Cuda>::max_pool_3x3s2", layout);
    cuda_detail::max_pool_3x3s2(exec, x, batch * channels, H, W, out);
  }
  static void global_avg_pool(const Cuda& exec, MapLayout layout, const float* x, std::int64_t batch,
                              std::int64_t channels, std::int64_t hw, float* out) {
    nchw_only("Backend<Cuda>::global_avg_pool", layout);
    cuda_detail::global_avg_pool(exec, x, batch * channels, hw, out);
  }
  static const float* from_nchw(const Cuda&, MapLayout layout, const float* x, std::int64_t, std::int64_t,
                                std::int64_t, float*) {
    nchw_only("Backend<Cuda>::from_nchw", layout);
    return x;
  }
  static void nchw_only(const char* where, MapLayout layout) {
    if (layout != MapLayout::Nchw) detail::fail(where, "layout = NHWC is CPU-only (the CUDA map kernels run NCHW)");
  }

  // ---- memory ----------------------------------------------------------------
  // Host ints to the device, into dst (grown here, outside any kernel). From
  // pageable memory the copy returns once the bytes are staged, so `host`
  // may change on the next call.
  static const int* stage_ints(const Cuda& exec, const std::vector<int>& host, Buffer<int>& dst) {
    dst.resize(host.size());
    cuda_detail::check(
        cudaMemcpyAsync(dst.data(), host.data(), host.size() * sizeof(int), cudaMemcpyHostToDevice, exec.stream),
        "cudaMemcpyAsync(stage_ints)");
    return dst.data();
  }
  // n ints of device memory into host memory; waits for the stream.
  static void copy_to_host(const Cuda& exec, const int* src, std::int64_t n, int* dst) {
    cuda_detail::check(cudaMemcpyAsync(dst, src, std::size_t(n) * sizeof(int), cudaMemcpyDeviceToHost, exec.stream),
                       "cudaMemcpyAsync(copy_to_host)");
    cuda_detail::check(cudaStreamSynchronize(exec.stream), "cudaStreamSynchronize(copy_to_host)");
  }
  // A model's tensor on the device in storage type T, converted once. f16
  // rounds a magnitude of 65520 or more to inf: such a finite weight is
  // refused by name rather than turned into inf without a word.
  static constexpr bool aliases_host_tensors = false;
  template <class T>
  static const T* adopt_tensor(const std::string& name, const std::vector<float>& host, Buffer<T>& storage) {
    if constexpr (std::is_same_v<T, __half>) {
      for (std::size_t i = 0; i < host.size(); ++i) {
        if (std::isfinite(host[i]) && std::fabs(host[i]) >= 65520.0f) {
          detail::fail("weights", "{}[{}] = {} rounds to inf in float16 (largest finite 65504): run this model in "
                       "float32 or bfloat16", name, i, host[i]);
        }
      }
    }
    storage.upload(host);
    return storage.data();
  }
};

}  // namespace repshift
