#pragma once
// The sm_80+ warp instructions the tensor-core attention is built from, as
// inline PTX (the PTX ISA's names; fragment layouts in MmaLayout,
// cuda/attention_tiling.hpp):
//   mma_16816     D += A B, m16n8k16, f16 or bf16 in, f32 accumulate
//   ldmatrix_x4   four 8 x 8 b16 matrices from shared memory into fragments
//                 (_trans: transposed, for a row-major B operand)
//   cp_async_16   16 bytes global -> shared without a register round trip,
//                 zero-filling what the source does not supply; completion
//                 by commit / wait groups
//   pack2         two floats rounded into one register of two 16-bit values
// They exist from sm_80 (Ampere) on. Compiled for an older architecture,
// each traps instead of failing the consumer's build; launches check the
// device first (require_sm80) and refuse with a message.

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstring>
#include <type_traits>

#include "../core/error.hpp"
#include "device_bound.cuh"
#include "error.cuh"

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
#define REPSHIFT_SM80_ASM(...) __trap()
#else
#define REPSHIFT_SM80_ASM(...) asm volatile(__VA_ARGS__)
#endif

namespace repshift {
namespace cuda_detail {

// Refuses, naming `where`, on a current device older than sm_80.
inline void require_sm80(const char* where) {
  const int device = current_device();
  int major = 0;
  check(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device), "cudaDeviceGetAttribute");
  if (major < 8) detail::fail(where, "needs an sm_80 (Ampere) or newer GPU; device {} is sm_{}x", device, major);
}

// Refuses a kernel whose device code was compiled below sm_80 (a build for
// sm_75 that the driver JIT-compiles on an A100): its sm_80 instructions
// became __trap(), which would leave the context unusable.
inline void require_sm80_code(const char* where, const void* kernel) {
  cudaFuncAttributes attr{};
  check(cudaFuncGetAttributes(&attr, kernel), "cudaFuncGetAttributes");
  if (attr.ptxVersion < 80) {
    detail::fail(where, "was compiled for compute_{} (CMAKE_CUDA_ARCHITECTURES); its tensor-core code needs 80 or newer",
                 attr.ptxVersion);
  }
}

__device__ __forceinline__ unsigned shared_address(const void* p) {
  return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

// `bytes` (0 or 16) read from global, the rest of the 16 zero; global must
// be a valid address even when nothing is read.
__device__ __forceinline__ void cp_async_16(void* shared, const void* global, int bytes) {
  REPSHIFT_SM80_ASM("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(shared_address(shared)), "l"(global),
               "r"(bytes));
}
__device__ __forceinline__ void cp_async_commit() { REPSHIFT_SM80_ASM("cp.async.commit_group;\n" ::: "memory"); }
// Wait until at most `Pending` of this thread's committed groups are in flight.
template <int Pending>
__device__ __forceinline__ void cp_async_wait() {
  REPSHIFT_SM80_ASM("cp.async.wait_group %0;\n" ::"n"(Pending) : "memory");
}

__device__ __forceinline__ void ldmatrix_x4(unsigned (&r)[4], const void* row) {
  REPSHIFT_SM80_ASM("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(shared_address(row)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(unsigned (&r)[4], const void* row) {
  REPSHIFT_SM80_ASM("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(shared_address(row)));
}

template <class T>
__device__ __forceinline__ void mma_16816(float (&d)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
  static_assert(std::is_same_v<T, __half> || std::is_same_v<T, __nv_bfloat16>, "f16 or bf16 operands");
  if constexpr (std::is_same_v<T, __half>) {
    REPSHIFT_SM80_ASM(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    REPSHIFT_SM80_ASM(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

// lo in the low 16 bits (the lower column / k of a fragment register).
template <class T>
__device__ __forceinline__ unsigned pack2(float lo, float hi) {
  unsigned r;
  if constexpr (std::is_same_v<T, __half>) {
    const __half2 v = __floats2half2_rn(lo, hi);
    memcpy(&r, &v, sizeof r);
  } else {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    memcpy(&r, &v, sizeof r);
  }
  return r;
}

}  // namespace cuda_detail
}  // namespace repshift

#undef REPSHIFT_SM80_ASM
