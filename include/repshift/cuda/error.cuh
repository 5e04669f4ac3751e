#pragma once
// Every CUDA runtime error becomes a repshift::CudaError naming the call.

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace repshift {

class CudaError : public std::runtime_error {
 public:
  CudaError(const std::string& call, cudaError_t code)
      : std::runtime_error(
            fmt::format("repshift: {} failed: {} ({})", call, cudaGetErrorName(code), cudaGetErrorString(code))),
        code_(code) {}
  cudaError_t code() const { return code_; }

 private:
  cudaError_t code_;
};

namespace cuda_detail {

inline void check(cudaError_t code, const char* call) {
  if (code != cudaSuccess) throw CudaError(call, code);
}

// After a launch: configuration errors surface here, without a sync.
inline void check_launch(const char* kernel) {
  const cudaError_t code = cudaGetLastError();
  if (code != cudaSuccess) throw CudaError(fmt::format("{} launch", kernel), code);
}

}  // namespace cuda_detail
}  // namespace repshift
