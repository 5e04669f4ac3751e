#pragma once
// Device conversion of storage types to float: the one place kernels widen
// (and narrow), one element or one 16-byte vector at a time.

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>

namespace repshift {
namespace cuda_detail {

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }

// ... and the one place they narrow (round to nearest).
template <class T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) { return x; }
template <>
__device__ __forceinline__ __half from_float<__half>(float x) { return __float2half_rn(x); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

// 16 bytes of storage type: one vector load or store (4 floats, 8 halves).
template <class T, int N>
struct alignas(16) Pack {
  T v[N];
};

// f[0..N) = p[0..N) widened; p 16-byte aligned, N * sizeof(T) == 16.
template <class T, int N>
__device__ __forceinline__ void load_vector(const T* p, float (&f)[N]) {
  static_assert(N * sizeof(T) == 16, "one 16-byte vector");
  const Pack<T, N> v = *reinterpret_cast<const Pack<T, N>*>(p);
#pragma unroll
  for (int i = 0; i < N; ++i) f[i] = to_float(v.v[i]);
}

template <class T, int N>
__device__ __forceinline__ void store_vector(T* p, const float (&f)[N]) {
  static_assert(N * sizeof(T) == 16, "one 16-byte vector");
  Pack<T, N> v;
#pragma unroll
  for (int i = 0; i < N; ++i) v.v[i] = from_float<T>(f[i]);
  *reinterpret_cast<Pack<T, N>*>(p) = v;
}

template <class T>
inline constexpr bool is_device_storage_v =
    std::is_same_v<T, float> || std::is_same_v<T, __half> || std::is_same_v<T, __nv_bfloat16>;

}  // namespace cuda_detail
}  // namespace repshift
