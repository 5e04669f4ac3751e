#pragma once
// The device an object was made on. cuBLASLt and cuDNN handles, their
// workspaces and plans belong to the device current at creation, as in
// cuBLAS; called with another device current they would launch there on
// memory of the first (an illegal address, or a silent peer access).
// Objects keep a DeviceBound and check it on every call, at the cost of
// one cudaGetDevice (a thread-local read in the runtime).

#include <cuda_runtime.h>

#include "../core/error.hpp"
#include "error.cuh"

namespace repshift {
namespace cuda_detail {

inline int current_device() {
  int device = 0;
  check(cudaGetDevice(&device), "cudaGetDevice");
  return device;
}

class DeviceBound {
 public:
  DeviceBound() : device_(current_device()) {}
  explicit DeviceBound(int device) : device_(device) {}
  int device() const { return device_; }
  // Refuses, naming `where` and `what`, device memory of another device
  // (a pointer the runtime does not know as device memory is let through:
  // host-registered and managed memory are the caller's business).
  void require_on_device(const char* where, const char* what, const void* ptr) const {
    cudaPointerAttributes attributes{};
    check(cudaPointerGetAttributes(&attributes, ptr), "cudaPointerGetAttributes");
    if (attributes.type == cudaMemoryTypeDevice && attributes.device != device_) {
      detail::fail(where, "{} is memory of device {}, not of device {} this was made on", what, attributes.device,
                   device_);
    }
  }
  // Refuses, naming `where` and both devices, when another device is current.
  void require_current(const char* where) const {
    const int current = current_device();
    if (current != device_) {
      detail::fail(where, "made on device {}, called with device {} current: cudaSetDevice({}) first", device_,
                   current, device_);
    }
  }

 private:
  int device_;
};

}  // namespace cuda_detail
}  // namespace repshift
