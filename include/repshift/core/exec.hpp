#pragma once
// Execution targets, passed by value as the first argument of every entry
// point: rs::Host{} runs on the CPU with OpenMP, rs::Cuda{stream}
// (repshift/cuda.hpp) enqueues on a CUDA stream.

#include <type_traits>

namespace repshift {

// CPU execution. num_threads <= 0 keeps OpenMP's current setting.
struct Host {
  int num_threads = 0;
};

template <class E>
inline constexpr bool is_host_v = std::is_same_v<E, Host>;

}  // namespace repshift
