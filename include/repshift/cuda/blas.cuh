#pragma once
// Dense layers on the GPU through cuBLASLt: y = x W^T (+ bias), PyTorch's
// Linear with W [out, in] row-major, f32 / f16 / bf16 storage and f32
// accumulation (no TF32: results match the CPU path to float rounding).
// The bias rides in cuBLASLt's epilogue where it is 16-byte aligned (the
// epilogue has been seen failing on A100 with less; a less aligned bias is
// added by a kernel after the product, from the rounded product in f16 /
// bf16); GELU, residuals, LayerNorm and the
// shift score are our own row epilogues (cuda/epilogue.cuh), because
// cuBLASLt's GELU is the tanh approximation and timm's is exact.
//
// rs::cuda::Blas owns the handle, the GEMM workspace and a cache of plans
// (descriptors + the heuristic's algorithm) keyed by shape, type and
// alignment: the first call of a shape asks the heuristic, later calls
// only enqueue. Create it once, outside the forward path; one Blas per
// host thread, and one per stream: every GEMM uses the one workspace, so
// two streams enqueueing through one Blas would race on it (and on the
// plan cache). Give each concurrent stream its own Blas (and Dnn).

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <type_traits>

#include <fmt/format.h>

#include "../core/error.hpp"
#include "device_bound.cuh"
#include "dtype.cuh"
#include "elementwise.cuh"
#include "error.cuh"
#include "exec.cuh"

namespace repshift {

class CublasError : public std::runtime_error {
 public:
  CublasError(const std::string& call, cublasStatus_t code)
      : std::runtime_error(fmt::format("repshift: {} failed: {} ({})", call, cublasLtGetStatusName(code),
                                       cublasLtGetStatusString(code))),
        code_(code) {}
  cublasStatus_t code() const { return code_; }

 private:
  cublasStatus_t code_;
};

namespace cuda_detail {

inline void check_blas(cublasStatus_t code, const char* call) {
  if (code != CUBLAS_STATUS_SUCCESS) throw CublasError(call, code);
}

template <class T>
constexpr cudaDataType_t blas_type() {
  if constexpr (std::is_same_v<T, float>) return CUDA_R_32F;
  if constexpr (std::is_same_v<T, __half>) return CUDA_R_16F;
  if constexpr (std::is_same_v<T, __nv_bfloat16>) return CUDA_R_16BF;
}

// Largest power of two (<= 256) dividing the address: what cuBLASLt may
// assume about a pointer.
inline std::uint32_t pointer_alignment(const void* p) {
  const auto a = reinterpret_cast<std::uintptr_t>(p);
  std::uint32_t align = 256;
  while (align > 1 && a % align != 0) align /= 2;
  return align;
}

// y[r][c] += bias[c] for c < cols, rows ldy apart: the bias cuBLASLt's
// epilogue cannot take.
template <class T>
__global__ void add_bias_rows_kernel(T* y, std::int64_t rows, std::int64_t cols, std::int64_t ldy, const T* bias) {
  const std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= rows * cols) return;
  T* e = y + (i / cols) * ldy + i % cols;
  *e = from_float<T>(to_float(*e) + to_float(bias[i % cols]));
}

// The least alignment cuBLASLt's bias epilogue is given.
constexpr std::uint32_t kEpilogueBiasAlignment = 16;

}  // namespace cuda_detail

namespace cuda {

// Shape of one GEMM y[rows, out] = x[rows, in] W^T, in row-major terms.
struct LinearShape {
  std::int64_t rows = 0, in = 0, out = 0;
  std::int64_t ldx = 0, ldy = 0;  // row strides of x and y (elements)
};

class Blas {
 public:
  // Owns a workspace of `workspace_bytes` on the current device (32 MiB
  // lets cuBLASLt use its split-K kernels on Hopper). Every call must find
  // that device current (refused otherwise).
  explicit Blas(std::size_t workspace_bytes = std::size_t(32) << 20) : workspace_bytes_(workspace_bytes) {
    cuda_detail::check_blas(cublasLtCreate(&handle_), "cublasLtCreate");
    if (workspace_bytes_ > 0) {
      const cudaError_t code = cudaMalloc(&workspace_, workspace_bytes_);
      if (code != cudaSuccess) {
        cublasLtDestroy(handle_);
        throw CudaError(fmt::format("cudaMalloc(Blas workspace of {} bytes)", workspace_bytes_), code);
      }
    }
    owns_workspace_ = true;
  }
  // Uses the caller's memory of the current device as the GEMM workspace,
  // 256-byte aligned (as cudaMalloc's; cuBLAS asks it of a workspace).
  Blas(void* workspace, std::size_t workspace_bytes) : workspace_(workspace), workspace_bytes_(workspace_bytes) {
    if (workspace_bytes_ > 0) {
      detail::require_pointer("cuda::Blas", "workspace", workspace);
      device_.require_on_device("cuda::Blas", "workspace", workspace);
      const std::uint32_t align = cuda_detail::pointer_alignment(workspace);
      if (align < 256) detail::fail("cuda::Blas", "workspace is {}-byte aligned; it must be 256-byte aligned", align);
    }
    cuda_detail::check_blas(cublasLtCreate(&handle_), "cublasLtCreate");
  }
  ~Blas() {
    plans_.clear();
    if (owns_workspace_) cudaFree(workspace_);
    cublasLtDestroy(handle_);
  }
  Blas(const Blas&) = delete;
  Blas& operator=(const Blas&) = delete;

  // y = x W^T (+ bias), enqueued on exec.stream.
  template <class T>
  void linear(const Cuda& exec, const LinearShape& s, const T* x, const T* weight, const T* bias, T* y) {
    constexpr const char* where = "cuda::Blas::linear";
    device_.require_current(where);
    detail::require_pointer(where, "x", x);
    detail::require_pointer(where, "weight", weight);
    detail::require_pointer(where, "y", y);
    detail::require_positive(where, "rows", s.rows);
    detail::require_positive(where, "in", s.in);
    detail::require_positive(where, "out", s.out);
    detail::require_at_most(where, "in", s.in, "ldx", s.ldx);
    detail::require_at_most(where, "out", s.out, "ldy", s.ldy);
    const T* epilogue_bias =
        bias && cuda_detail::pointer_alignment(bias) >= cuda_detail::kEpilogueBiasAlignment ? bias : nullptr;
    const Plan& plan = plan_for<T>(s, x, weight, epilogue_bias, y);
    const float alpha = 1.0f, beta = 0.0f;
    if (epilogue_bias) {
      cuda_detail::check_blas(cublasLtMatmulDescSetAttribute(plan.op.get(), CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                             &epilogue_bias, sizeof epilogue_bias),
                              "cublasLtMatmulDescSetAttribute(BIAS_POINTER)");
    }
    // Column-major view: y^T [out, rows] = W [out, in] (stored as W^T) . x^T.
    cuda_detail::check_blas(cublasLtMatmul(handle_, plan.op.get(), &alpha, weight, plan.a.get(), x, plan.b.get(),
                                           &beta, y, plan.c.get(), y, plan.c.get(), &plan.algo, workspace_,
                                           workspace_bytes_, exec.stream),
                            "cublasLtMatmul");
    if (bias && !epilogue_bias) {
      cuda_detail::launch_elementwise("add_bias_rows", cuda_detail::add_bias_rows_kernel<T>,
                                      cuda_detail::elementwise_grid(where, s.rows * s.out), exec.stream, y, s.rows,
                                      s.out, s.ldy, bias);
    }
  }

 private:
  struct OpDeleter {
    void operator()(cublasLtMatmulDescOpaque_t* d) const { cublasLtMatmulDescDestroy(d); }
  };
  struct LayoutDeleter {
    void operator()(cublasLtMatrixLayoutOpaque_t* l) const { cublasLtMatrixLayoutDestroy(l); }
  };
  using Op = std::unique_ptr<cublasLtMatmulDescOpaque_t, OpDeleter>;
  using Layout = std::unique_ptr<cublasLtMatrixLayoutOpaque_t, LayoutDeleter>;
  struct Plan {
    Op op;
    Layout a, b, c;
    cublasLtMatmulAlgo_t algo{};
  };
  // Bias alignment 0: no bias.
  using Key = std::tuple<int, std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::uint32_t,
                         std::uint32_t, std::uint32_t, std::uint32_t>;

  static Layout layout(cudaDataType_t type, std::int64_t rows, std::int64_t cols, std::int64_t ld) {
    cublasLtMatrixLayout_t l = nullptr;
    cuda_detail::check_blas(cublasLtMatrixLayoutCreate(&l, type, std::uint64_t(rows), std::uint64_t(cols), ld),
                            "cublasLtMatrixLayoutCreate");
    return Layout(l);
  }

  template <class T>
  const Plan& plan_for(const LinearShape& s, const T* x, const T* w, const T* bias, T* y) {
    constexpr cudaDataType_t type = cuda_detail::blas_type<T>();
    const std::uint32_t align_w = cuda_detail::pointer_alignment(w), align_x = cuda_detail::pointer_alignment(x),
                        align_y = cuda_detail::pointer_alignment(y),
                        align_bias = bias ? cuda_detail::pointer_alignment(bias) : 0;
    const Key key{int(type), s.rows, s.in, s.out, s.ldx, s.ldy, align_bias, align_w, align_x, align_y};
    auto found = plans_.find(key);
    if (found != plans_.end()) return found->second;
    // Keyed by rows, so packed batches of ever new lengths would grow it
    // without end: past kMaxPlans it starts again (a few heuristic calls).
    if (plans_.size() >= kMaxPlans) plans_.clear();

    Plan plan;
    cublasLtMatmulDesc_t op = nullptr;
    cuda_detail::check_blas(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F), "cublasLtMatmulDescCreate");
    plan.op.reset(op);
    const cublasOperation_t transa = CUBLAS_OP_T, transb = CUBLAS_OP_N;
    cuda_detail::check_blas(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &transa, sizeof transa),
                            "cublasLtMatmulDescSetAttribute(TRANSA)");
    cuda_detail::check_blas(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &transb, sizeof transb),
                            "cublasLtMatmulDescSetAttribute(TRANSB)");
    const cublasLtEpilogue_t epilogue = bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
    cuda_detail::check_blas(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof epilogue),
                            "cublasLtMatmulDescSetAttribute(EPILOGUE)");
    if (bias) {
      cuda_detail::check_blas(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &type, sizeof type),
                              "cublasLtMatmulDescSetAttribute(BIAS_DATA_TYPE)");
      // The heuristic reads the bias pointer's value for its alignment
      // (cublasLt.h); linear() sets each call's own, of the same alignment
      // (the plan's key).
      cuda_detail::check_blas(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias),
                              "cublasLtMatmulDescSetAttribute(BIAS_POINTER)");
    }
    plan.a = layout(type, s.in, s.out, s.in);    // W^T in column-major: [in, out], ld in
    plan.b = layout(type, s.in, s.rows, s.ldx);  // x^T: [in, rows], ld ldx
    plan.c = layout(type, s.out, s.rows, s.ldy); // y^T: [out, rows], ld ldy

    cublasLtMatmulPreference_t pref = nullptr;
    cuda_detail::check_blas(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
    std::unique_ptr<cublasLtMatmulPreferenceOpaque_t, void (*)(cublasLtMatmulPreference_t)> pref_guard(
        pref, [](cublasLtMatmulPreference_t p) { cublasLtMatmulPreferenceDestroy(p); });
    const std::size_t ws = workspace_bytes_;
    cuda_detail::check_blas(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                                                 sizeof ws),
                            "cublasLtMatmulPreferenceSetAttribute(MAX_WORKSPACE_BYTES)");
    // Tell the heuristic how aligned the pointers really are (it assumes
    // 256 bytes otherwise, and column slices of qkv are not).
    const std::pair<cublasLtMatmulPreferenceAttributes_t, std::uint32_t> alignments[] = {
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, align_w},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, align_x},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, align_y},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, align_y}};
    for (const auto& [attribute, value] : alignments) {
      cuda_detail::check_blas(cublasLtMatmulPreferenceSetAttribute(pref, attribute, &value, sizeof value),
                              "cublasLtMatmulPreferenceSetAttribute(MIN_ALIGNMENT)");
    }
    // Split-K partial sums in f32 or none: the INPLACE and OUTPUT_TYPE
    // schemes would round them to f16 / bf16 between the splits.
    const std::uint32_t reductions = CUBLASLT_REDUCTION_SCHEME_NONE | CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE;
    cuda_detail::check_blas(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK,
                                                                 &reductions, sizeof reductions),
                            "cublasLtMatmulPreferenceSetAttribute(REDUCTION_SCHEME_MASK)");
    cublasLtMatmulHeuristicResult_t result{};
    int found_algos = 0;
    // "Nothing fits" may come back as NOT_SUPPORTED rather than 0 found.
    const cublasStatus_t asked = cublasLtMatmulAlgoGetHeuristic(handle_, op, plan.a.get(), plan.b.get(), plan.c.get(),
                                                                plan.c.get(), pref, 1, &result, &found_algos);
    if (asked != CUBLAS_STATUS_NOT_SUPPORTED) cuda_detail::check_blas(asked, "cublasLtMatmulAlgoGetHeuristic");
    if (asked == CUBLAS_STATUS_NOT_SUPPORTED || found_algos == 0) {
      detail::fail("cuda::Blas::linear", "cuBLASLt has no algorithm for rows = {}, in = {}, out = {}", s.rows, s.in,
                   s.out);
    }
    plan.algo = result.algo;
    return plans_.emplace(key, std::move(plan)).first->second;
  }

  cuda_detail::DeviceBound device_;  // first: the handle and workspace are made on it
  cublasLtHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  std::size_t workspace_bytes_ = 0;
  bool owns_workspace_ = false;
  static constexpr std::size_t kMaxPlans = 1024;
  std::map<Key, Plan> plans_;
};

}  // namespace cuda
}  // namespace repshift
