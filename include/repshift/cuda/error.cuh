#pragma once
// Every CUDA runtime error becomes a repshift::CudaError naming the call.

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include <fmt/format.h>

namespace repshift {

// A failed call also leaves the runtime's last error set, which the next
// launch check would read as its own: the error is taken off it here, once
// reported (a sticky one, which spoils the context, stays, rightly).
class CudaError : public std::runtime_error {
 public:
  CudaError(const std::string& call, cudaError_t code)
      : std::runtime_error(
            fmt::format("repshift: {} failed: {} ({})", call, cudaGetErrorName(code), cudaGetErrorString(code))),
        code_(code) {
    (void)cudaGetLastError();
  }
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
