#pragma once
// rs::cuda::DeviceBuffer<T>: an owning device array for weights and model
// scratch, allocated outside the forward path. upload() converts host
// floats to the storage type (round to nearest) on the host.

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstddef>
#include <map>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "../core/error.hpp"
#include "error.cuh"

namespace repshift {
namespace cuda {

template <class T>
T storage_from_float(float x) {
  if constexpr (std::is_same_v<T, __half>) {
    return __float2half_rn(x);
  } else if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __float2bfloat16_rn(x);
  } else {
    return T(x);
  }
}

template <class T>
float storage_to_float(T x) {
  if constexpr (std::is_same_v<T, __half>) {
    return __half2float(x);
  } else if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __bfloat162float(x);
  } else {
    return float(x);
  }
}

template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t count) { resize(count); }
  ~DeviceBuffer() { cudaFree(ptr_); }
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(std::exchange(o.ptr_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    std::swap(ptr_, o.ptr_);
    std::swap(size_, o.size_);
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  // Reallocates (contents lost) only when growing.
  void resize(std::size_t count) {
    if (count <= size_) return;
    cudaFree(ptr_);
    ptr_ = nullptr;
    size_ = 0;
    // The message is built only on failure.
    if (const cudaError_t code = cudaMalloc(&ptr_, count * sizeof(T)); code != cudaSuccess) {
      throw CudaError(fmt::format("cudaMalloc({} bytes)", count * sizeof(T)), code);
    }
    size_ = count;
  }
  // Host values of the storage type itself, copied as they are; the
  // buffer grows to hold them.
  void assign(const std::vector<T>& host) {
    resize(host.size());
    // cudaMemcpy orders only with the legacy default stream: wait for work
    // on every stream (non-blocking ones too) that may still read the buffer.
    cuda_detail::check(cudaDeviceSynchronize(), "cudaDeviceSynchronize(DeviceBuffer::assign)");
    cuda_detail::check(cudaMemcpy(ptr_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice),
                       "cudaMemcpy(DeviceBuffer::assign)");
  }
  std::vector<T> to_host() const { return to_host(size_); }
  std::vector<T> to_host(std::size_t count) const {
    std::vector<T> host(count);
    // Waits for the work of every stream, non-blocking ones included, that
    // may still write the buffer (cudaMemcpy alone would not).
    cuda_detail::check(cudaDeviceSynchronize(), "cudaDeviceSynchronize(DeviceBuffer::to_host)");
    cuda_detail::check(cudaMemcpy(host.data(), ptr_, count * sizeof(T), cudaMemcpyDeviceToHost),
                       "cudaMemcpy(DeviceBuffer::to_host)");
    return host;
  }
  // Host floats -> device storage type (rounded); the buffer grows to hold them.
  void upload(const std::vector<float>& host) {
    std::vector<T> staged(host.size());
    for (std::size_t i = 0; i < host.size(); ++i) staged[i] = storage_from_float<T>(host[i]);
    assign(staged);
  }
  std::vector<float> download() const { return download(size_); }
  std::vector<float> download(std::size_t count) const {
    const std::vector<T> staged = to_host(count);
    std::vector<float> host(count);
    for (std::size_t i = 0; i < count; ++i) host[i] = storage_to_float(staged[i]);
    return host;
  }

  T* data() const { return ptr_; }
  std::size_t size() const { return size_; }

 private:
  T* ptr_ = nullptr;
  std::size_t size_ = 0;
};

// Every tensor of a model's host weights (anything with
// for_each_tensor(name, shape, vector<float>)) on the device in storage
// type T, by name. An empty host tensor (an absent optional one) maps to a
// null pointer.
template <class T>
class DeviceTensorMap {
 public:
  template <class HostWeights>
  explicit DeviceTensorMap(const HostWeights& host) {
    host.for_each_tensor([&](const std::string& name, const auto&, const std::vector<float>& v) {
      tensors_[name].upload(v);
    });
  }
  const T* operator[](const std::string& name) const {
    const auto it = tensors_.find(name);
    if (it == tensors_.end()) detail::fail("cuda::DeviceTensorMap", "no tensor named {}", name);
    return it->second.data();
  }

 private:
  std::map<std::string, DeviceBuffer<T>> tensors_;
};

}  // namespace cuda
}  // namespace repshift
