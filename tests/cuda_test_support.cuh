#pragma once
// Shared by the CUDA tests: device detection (tests skip through
// GTEST_SKIP, which ctest reports as Skipped), host twins of the device
// storage types, and uploads that convert host floats to them.

#include <gtest/gtest.h>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <vector>

#include <repshift/cuda/device_buffer.cuh>

inline bool have_device() {
  int count = 0;  // cudaGetDeviceCount leaves it untouched when it fails
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

#define REQUIRE_DEVICE() \
  if (!have_device()) GTEST_SKIP() << "no CUDA device"

template <class T>
repshift::cuda::DeviceBuffer<T> to_device(const std::vector<float>& host) {
  repshift::cuda::DeviceBuffer<T> d;
  d.upload(host);
  return d;
}

// Raw copies in and out (indices, class-token positions, host twins).
template <class T>
repshift::cuda::DeviceBuffer<T> device_copy(const std::vector<T>& host) {
  repshift::cuda::DeviceBuffer<T> d;
  d.assign(host);
  return d;
}
template <class T>
std::vector<T> host_copy(const T* device, std::size_t count) {
  std::vector<T> host(count);
  repshift::cuda_detail::check(cudaMemcpy(host.data(), device, count * sizeof(T), cudaMemcpyDeviceToHost),
                               "cudaMemcpy(host_copy)");
  return host;
}

// Storage-type rounding of host data, so CPU references see exactly the
// values the device sees.
template <class T>
std::vector<float> rounded(std::vector<float> v) {
  for (auto& x : v) x = repshift::cuda::storage_to_float(repshift::cuda::storage_from_float<T>(x));
  return v;
}

template <class T>
constexpr const char* type_name() {
  if constexpr (std::is_same_v<T, __half>) return "f16";
  if constexpr (std::is_same_v<T, __nv_bfloat16>) return "bf16";
  return "f32";
}
