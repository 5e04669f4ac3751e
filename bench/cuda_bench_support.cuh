#pragma once
// Shared by the CUDA benches: device detection, zeroed device bytes, and
// CUDA-event timing (manual time per iteration, after one warm-up call).

#include <benchmark/benchmark.h>
#include <fmt/format.h>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdio>
#include <cstdlib>

#include <repshift/cuda/device_status.cuh>
#include <repshift/cuda/error.cuh>

namespace bench {

// True where a GPU is usable; false (every case reports "no CUDA device")
// on a machine without an NVIDIA driver. A GPU that is there but cannot be
// used ends the program with the runtime's message and exit code 1: no
// table of skipped cases may pass for a run.
inline bool have_device() {
  const repshift::cuda::DeviceStatus& s = repshift::cuda::device_status();
  if (s.kind == repshift::cuda::DeviceStatus::Unusable) {
    fmt::print(stderr, "{}\n", s.why);
    std::exit(1);
  }
  return s.kind == repshift::cuda::DeviceStatus::Usable;
}

struct DeviceBytes {
  void* ptr = nullptr;
  explicit DeviceBytes(std::size_t bytes) {
    repshift::cuda_detail::check(cudaMalloc(&ptr, bytes), "cudaMalloc");
    repshift::cuda_detail::check(cudaMemset(ptr, 0, bytes), "cudaMemset");
  }
  ~DeviceBytes() { cudaFree(ptr); }
  DeviceBytes(const DeviceBytes&) = delete;
  DeviceBytes& operator=(const DeviceBytes&) = delete;
  template <class T> T* as() const { return static_cast<T*>(ptr); }
};

template <class F>
void time_with_events(benchmark::State& state, F&& launch) {
  cudaEvent_t start, stop;
  repshift::cuda_detail::check(cudaEventCreate(&start), "cudaEventCreate");
  repshift::cuda_detail::check(cudaEventCreate(&stop), "cudaEventCreate");
  launch();  // warm-up (and cuBLASLt's plan for the shape)
  repshift::cuda_detail::check(cudaDeviceSynchronize(), "warm-up");
  for (auto _ : state) {
    cudaEventRecord(start);
    launch();
    cudaEventRecord(stop);
    cudaEventSynchronize(stop);
    float ms = 0.0f;
    cudaEventElapsedTime(&ms, start, stop);
    state.SetIterationTime(double(ms) / 1e3);
  }
  repshift::cuda_detail::check(cudaGetLastError(), "benchmark loop");
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
}

template <class T> constexpr const char* dtype() { return "f32"; }
template <> constexpr const char* dtype<__half>() { return "f16"; }
template <> constexpr const char* dtype<__nv_bfloat16>() { return "bf16"; }

}  // namespace bench
