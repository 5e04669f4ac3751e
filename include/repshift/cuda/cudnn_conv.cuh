#pragma once
// 2-D convolutions on NCHW maps through cuDNN, for the CnnRows backbone:
// y = conv(x, W) with the epilogue the block needs (ConvEpilogue): none
// (the bottleneck's last conv hands its raw product to the fused residual
// + shift epilogue), bias, or bias + ReLU fused by
// cudnnConvolutionBiasActivationForward (where cuDNN answers "not
// supported" for a plan's algorithm, that plan runs conv, bias add and
// ReLU as three calls). f32 runs with CUDNN_FMA_MATH, so
// results match the CPU path to float rounding (no TF32); f16 / bf16 may
// use tensor cores.
//
// rs::cuda::Dnn owns the handle, the workspace and a cache of plans
// (descriptors + the heuristic's algorithm) keyed by shape: the first call
// of a shape asks cudnnGetConvolutionForwardAlgorithm_v7, later calls only
// enqueue. f32 never takes the FFT or Winograd algorithms: their error can
// exceed float rounding (and the tests' 1e-5). Like Blas, one Dnn per
// concurrent stream: the workspace is shared by every call.

#include <cudnn.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <type_traits>

#include <fmt/format.h>

#include "../params/conv2d.hpp"
#include "device_bound.cuh"
#include "dtype.cuh"
#include "error.cuh"
#include "exec.cuh"

namespace repshift {

class CudnnError : public std::runtime_error {
 public:
  CudnnError(const std::string& call, cudnnStatus_t code)
      : std::runtime_error(fmt::format("repshift: {} failed: {}", call, cudnnGetErrorString(code))), code_(code) {}
  cudnnStatus_t code() const { return code_; }

 private:
  cudnnStatus_t code_;
};

namespace cuda_detail {

inline void check_dnn(cudnnStatus_t code, const char* call) {
  if (code != CUDNN_STATUS_SUCCESS) throw CudnnError(call, code);
}

// cuDNN 9 splits "not supported" into a family (3000-3014: shape, data
// type, layout, ...); earlier versions have the one code.
inline bool not_supported(cudnnStatus_t code) {
#ifdef CUDNN_STATUS_CATEGORY
  return CUDNN_STATUS_CATEGORY(code) == CUDNN_STATUS_NOT_SUPPORTED;
#else
  return code == CUDNN_STATUS_NOT_SUPPORTED;
#endif
}

template <class T>
constexpr cudnnDataType_t dnn_type() {
  if constexpr (std::is_same_v<T, float>) return CUDNN_DATA_FLOAT;
  if constexpr (std::is_same_v<T, __half>) return CUDNN_DATA_HALF;
  if constexpr (std::is_same_v<T, __nv_bfloat16>) return CUDNN_DATA_BFLOAT16;
}

// One owning wrapper per cuDNN descriptor kind.
template <class D, cudnnStatus_t (*Create)(D*), cudnnStatus_t (*Destroy)(D)>
class DnnDescriptor {
 public:
  DnnDescriptor() { check_dnn(Create(&d_), "cudnnCreate*Descriptor"); }
  ~DnnDescriptor() { Destroy(d_); }
  DnnDescriptor(const DnnDescriptor&) = delete;
  DnnDescriptor& operator=(const DnnDescriptor&) = delete;
  D get() const { return d_; }

 private:

  D d_{};
};
using TensorDesc = DnnDescriptor<cudnnTensorDescriptor_t, cudnnCreateTensorDescriptor, cudnnDestroyTensorDescriptor>;
using FilterDesc = DnnDescriptor<cudnnFilterDescriptor_t, cudnnCreateFilterDescriptor, cudnnDestroyFilterDescriptor>;
using ConvDesc =
    DnnDescriptor<cudnnConvolutionDescriptor_t, cudnnCreateConvolutionDescriptor, cudnnDestroyConvolutionDescriptor>;
using ActivationDesc =
    DnnDescriptor<cudnnActivationDescriptor_t, cudnnCreateActivationDescriptor, cudnnDestroyActivationDescriptor>;

// The algorithms that compute f32 by direct products (no FFT or Winograd
// transforms, whose error can exceed float rounding).
inline bool exact_f32_algorithm(cudnnConvolutionFwdAlgo_t algo) {
  return algo == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM || algo == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM ||
         algo == CUDNN_CONVOLUTION_FWD_ALGO_GEMM || algo == CUDNN_CONVOLUTION_FWD_ALGO_DIRECT;
}

}  // namespace cuda_detail

namespace cuda {

// A cuDNN handle, its workspace and plan cache, on the device current when
// it is made; every call must find that device current (refused otherwise).
class Dnn {
 public:
  explicit Dnn(std::size_t workspace_bytes = std::size_t(64) << 20) : workspace_bytes_(workspace_bytes) {
    cuda_detail::check_dnn(cudnnCreate(&handle_), "cudnnCreate");
    if (workspace_bytes_ > 0) {
      const cudaError_t code = cudaMalloc(&workspace_, workspace_bytes_);
      if (code != cudaSuccess) {
        cudnnDestroy(handle_);
        throw CudaError(fmt::format("cudaMalloc(Dnn workspace of {} bytes)", workspace_bytes_), code);
      }
    }
  }
  ~Dnn() {
    plans_.clear();
    cudaFree(workspace_);
    cudnnDestroy(handle_);
  }
  Dnn(const Dnn&) = delete;
  Dnn& operator=(const Dnn&) = delete;

  // y [B, out_channels, Ho, Wo] = conv(x [B, in_channels, H, W]) + epilogue.
  template <ConvEpilogue Epilogue, class T>
  void conv2d(const Cuda& exec, const Conv2dShape& s, const T* x, std::int64_t batch, std::int64_t H, std::int64_t W,
              const T* weight, const T* bias, T* y) {
    constexpr const char* where = "cuda::Dnn::conv2d";
    device_.require_current(where);
    s.check_call(where, batch, H, W, x, weight, bias, Epilogue != ConvEpilogue::None, "y", y);
    for (std::int64_t v : {batch, s.in_channels, s.out_channels, H, W})
      detail::require_at_most(where, "a map extent", v, "INT_MAX (cuDNN descriptors are int)", 0x7fffffff);
    Plan& plan = plan_for<Epilogue, T>(s, batch, H, W);
    cuda_detail::check_dnn(cudnnSetStream(handle_, exec.stream), "cudnnSetStream");
    const float one = 1.0f, zero = 0.0f;
    if constexpr (Epilogue == ConvEpilogue::BiasRelu) {
      if (plan.fused) {
        // z = y with alpha2 = 0: cuDNN reads nothing from it.
        const cudnnStatus_t status = cudnnConvolutionBiasActivationForward(
            handle_, &one, plan.x.get(), x, plan.w.get(), weight, plan.conv.get(), plan.algo, workspace_,
            workspace_bytes_, &zero, plan.y.get(), y, plan.bias.get(), bias, plan.act.get(), plan.y.get(), y);
        if (!cuda_detail::not_supported(status)) {
          cuda_detail::check_dnn(status, "cudnnConvolutionBiasActivationForward");
          return;
        }
        // No fused kernel for this algorithm and these types (cuDNN 9
        // keeps the call as legacy): the three steps from now on.
        plan.fused = false;
      }
    }
    cuda_detail::check_dnn(cudnnConvolutionForward(handle_, &one, plan.x.get(), x, plan.w.get(), weight,
                                                   plan.conv.get(), plan.algo, workspace_, workspace_bytes_, &zero,
                                                   plan.y.get(), y),
                           "cudnnConvolutionForward");
    if constexpr (Epilogue != ConvEpilogue::None) {
      cuda_detail::check_dnn(cudnnAddTensor(handle_, &one, plan.bias.get(), bias, &one, plan.y.get(), y),
                             "cudnnAddTensor(bias)");
    }
    if constexpr (Epilogue == ConvEpilogue::BiasRelu) {
      cuda_detail::check_dnn(cudnnActivationForward(handle_, plan.act.get(), &one, plan.y.get(), y, &zero,
                                                    plan.y.get(), y),
                             "cudnnActivationForward(relu)");
    }
  }

 private:
  struct Plan {
    cuda_detail::TensorDesc x, y, bias;
    cuda_detail::FilterDesc w;
    cuda_detail::ConvDesc conv;
    cuda_detail::ActivationDesc act;
    cudnnConvolutionFwdAlgo_t algo{};
    bool fused = true;  // BiasRelu: cudnnConvolutionBiasActivationForward serves this plan
  };
  using Key = std::tuple<int, int, std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t, std::int64_t,
                         std::int64_t, std::int64_t>;

  template <ConvEpilogue Epilogue, class T>
  Plan& plan_for(const Conv2dShape& s, std::int64_t B, std::int64_t H, std::int64_t W) {
    constexpr cudnnDataType_t type = cuda_detail::dnn_type<T>();
    const Key key{int(type), int(Epilogue), s.in_channels, s.out_channels, s.kernel, s.stride, s.pad, B, H, W};
    auto found = plans_.find(key);
    if (found != plans_.end()) return *found->second;
    if (plans_.size() >= kMaxPlans) plans_.clear();  // keyed by map size and batch: bounded, as Blas's

    auto plan = std::make_unique<Plan>();
    using cuda_detail::check_dnn;
    const int Ho = int(s.out_size(H)), Wo = int(s.out_size(W));
    check_dnn(cudnnSetTensor4dDescriptor(plan->x.get(), CUDNN_TENSOR_NCHW, type, int(B), int(s.in_channels), int(H),
                                         int(W)),
              "cudnnSetTensor4dDescriptor(x)");
    check_dnn(cudnnSetTensor4dDescriptor(plan->y.get(), CUDNN_TENSOR_NCHW, type, int(B), int(s.out_channels), Ho, Wo),
              "cudnnSetTensor4dDescriptor(y)");
    check_dnn(cudnnSetTensor4dDescriptor(plan->bias.get(), CUDNN_TENSOR_NCHW, type, 1, int(s.out_channels), 1, 1),
              "cudnnSetTensor4dDescriptor(bias)");
    check_dnn(cudnnSetFilter4dDescriptor(plan->w.get(), type, CUDNN_TENSOR_NCHW, int(s.out_channels),
                                         int(s.in_channels), int(s.kernel), int(s.kernel)),
              "cudnnSetFilter4dDescriptor");
    check_dnn(cudnnSetConvolution2dDescriptor(plan->conv.get(), int(s.pad), int(s.pad), int(s.stride), int(s.stride),
                                              1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT),
              "cudnnSetConvolution2dDescriptor");
    // f32 stays exact f32 (no TF32); 16-bit types may use tensor cores.
    const cudnnMathType_t math = std::is_same_v<T, float> ? CUDNN_FMA_MATH : CUDNN_TENSOR_OP_MATH;
    check_dnn(cudnnSetConvolutionMathType(plan->conv.get(), math), "cudnnSetConvolutionMathType");
    // NaN stays NaN through the ReLU, as on the CPU path and in torch.relu.
    check_dnn(cudnnSetActivationDescriptor(plan->act.get(), CUDNN_ACTIVATION_RELU, CUDNN_PROPAGATE_NAN, 0.0),
              "cudnnSetActivationDescriptor");

    cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
    int returned = 0;
    check_dnn(cudnnGetConvolutionForwardAlgorithm_v7(handle_, plan->x.get(), plan->w.get(), plan->conv.get(),
                                                     plan->y.get(), CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &returned, perf),
              "cudnnGetConvolutionForwardAlgorithm_v7");
    // The descriptor's math type already limits f32 to FMA kernels; 16-bit
    // types run with the math type the heuristic reports for the algorithm
    // (as PyTorch does).
    bool chosen = false;
    for (int i = 0; i < returned && !chosen; ++i) {
      if (std::is_same_v<T, float> && !cuda_detail::exact_f32_algorithm(perf[i].algo)) continue;
      if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].memory <= workspace_bytes_) {
        plan->algo = perf[i].algo;
        if (!std::is_same_v<T, float>) {
          check_dnn(cudnnSetConvolutionMathType(plan->conv.get(), perf[i].mathType), "cudnnSetConvolutionMathType");
        }
        chosen = true;
      }
    }
    if (!chosen) {
      detail::fail("cuda::Dnn::conv2d",
                   "cuDNN offers no algorithm within the {}-byte workspace for a {}x{} conv {} -> {} on {}x{}",
                   workspace_bytes_, s.kernel, s.kernel, s.in_channels, s.out_channels, H, W);
    }
    return *plans_.emplace(key, std::move(plan)).first->second;
  }

  cuda_detail::DeviceBound device_;  // first: the handle and workspace are made on it
  cudnnHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  std::size_t workspace_bytes_ = 0;
  static constexpr std::size_t kMaxPlans = 1024;
  std::map<Key, std::unique_ptr<Plan>> plans_;
};

}  // namespace cuda
}  // namespace repshift
