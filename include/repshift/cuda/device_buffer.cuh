#pragma once
// rs::cuda::DeviceBuffer<T>: an owning device array for weights and model
// scratch, a thrust::device_vector underneath, allocated outside the
// forward path. resize() only grows, and frees the old array first (its
// contents are dropped), so a buffer never holds two allocations. upload()
// converts host floats to the storage type (round to nearest) on the host.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <thrust/device_vector.h>
#include <thrust/system_error.h>

#include <cstddef>
#include <cstdint>
#include <new>
#include <type_traits>
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
  DeviceBuffer(DeviceBuffer&&) = default;
  DeviceBuffer& operator=(DeviceBuffer&&) = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  // Reallocates (contents lost) only when growing. Thrust zero-fills the
  // new array and waits for it, so no stream can see it half written.
  void resize(std::size_t count) {
    if (count <= values_.size()) return;
    values_.clear();
    values_.shrink_to_fit();
    const auto failed = [&](cudaError_t code) {
      return CudaError(fmt::format("allocating {} bytes of device memory", count * sizeof(T)), code);
    };
    try {
      values_.resize(count);
    } catch (const thrust::system_error& e) {
      throw failed(cudaError_t(e.code().value()));
    } catch (const std::bad_alloc&) {
      throw failed(cudaErrorMemoryAllocation);
    }
  }
  // Host values of the storage type itself, copied as they are; the
  // buffer grows to hold them.
  void assign(const std::vector<T>& host) {
    resize(host.size());
    // cudaMemcpy orders only with the legacy default stream: wait for work
    // on every stream (non-blocking ones too) that may still read the buffer.
    cuda_detail::check(cudaDeviceSynchronize(), "cudaDeviceSynchronize(DeviceBuffer::assign)");
    cuda_detail::check(cudaMemcpy(data(), host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice),
                       "cudaMemcpy(DeviceBuffer::assign)");
    // From pageable memory cudaMemcpy may return once the values are staged,
    // before they land: kernels on a non-blocking stream must not see that.
    cuda_detail::check(cudaDeviceSynchronize(), "cudaDeviceSynchronize(DeviceBuffer::assign)");
  }
  std::vector<T> to_host() const { return to_host(size()); }
  std::vector<T> to_host(std::size_t count) const {
    detail::require_at_most("DeviceBuffer::to_host", "count", std::int64_t(count), "size()", std::int64_t(size()));
    std::vector<T> host(count);
    // Waits for the work of every stream, non-blocking ones included, that
    // may still write the buffer (cudaMemcpy alone would not).
    cuda_detail::check(cudaDeviceSynchronize(), "cudaDeviceSynchronize(DeviceBuffer::to_host)");
    cuda_detail::check(cudaMemcpy(host.data(), data(), count * sizeof(T), cudaMemcpyDeviceToHost),
                       "cudaMemcpy(DeviceBuffer::to_host)");
    return host;
  }
  // Host floats -> device storage type (rounded); the buffer grows to hold them.
  void upload(const std::vector<float>& host) {
    std::vector<T> staged(host.size());
    for (std::size_t i = 0; i < host.size(); ++i) staged[i] = storage_from_float<T>(host[i]);
    assign(staged);
  }
  std::vector<float> download() const { return download(size()); }
  std::vector<float> download(std::size_t count) const {
    const std::vector<T> staged = to_host(count);
    std::vector<float> host(count);
    for (std::size_t i = 0; i < count; ++i) host[i] = storage_to_float(staged[i]);
    return host;
  }

  // Null while empty, as before any resize.
  T* data() const {
    return values_.empty() ? nullptr : const_cast<T*>(thrust::raw_pointer_cast(values_.data()));
  }
  std::size_t size() const { return values_.size(); }

 private:
  thrust::device_vector<T> values_;
};

}  // namespace cuda
}  // namespace repshift
