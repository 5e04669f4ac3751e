#pragma once
// Shared by the CUDA tests: device detection, host twins of the device
// storage types, and uploads that convert host floats to them.
//
// REQUIRE_DEVICE(): on a machine without an NVIDIA driver a test skips
// (GTEST_SKIP, which ctest reports as Skipped); where a driver exists but
// the GPU cannot be used, it fails with the runtime's message; with
// REPSHIFT_REQUIRE_GPU=1 in the environment every skip is a failure too
// (what a GPU run sets, so a missing GPU cannot pass as green).
// A test that compares against the CPU path computes that side (fixtures,
// schedules, the CPU forward) before REQUIRE_DEVICE(), so it runs in every
// build, GPU or not: a fixture or schedule the CPU path refuses fails the
// test here, not on the first GPU run.

#include <gtest/gtest.h>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include <repshift/cuda/device_buffer.cuh>
#include <repshift/cuda/device_status.cuh>

inline bool gpu_required() {
  const char* v = std::getenv("REPSHIFT_REQUIRE_GPU");
  return v && std::strcmp(v, "") != 0 && std::strcmp(v, "0") != 0;
}

#define REQUIRE_DEVICE()                                                                          \
  do {                                                                                            \
    const repshift::cuda::DeviceStatus& device_ = repshift::cuda::device_status();               \
    if (device_.kind == repshift::cuda::DeviceStatus::Unusable) FAIL() << device_.why;            \
    if (device_.kind == repshift::cuda::DeviceStatus::Absent) {                                   \
      if (gpu_required()) FAIL() << "REPSHIFT_REQUIRE_GPU is set: " << device_.why;              \
      GTEST_SKIP() << device_.why;                                                                \
    }                                                                                             \
  } while (0)

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

// The device storage types, for typed test suites named f32 / f16 / bf16.
using DeviceStorageTypes = ::testing::Types<float, __half, __nv_bfloat16>;
struct StorageTypeNames {
  template <class T>
  static std::string GetName(int) { return type_name<T>(); }
};
