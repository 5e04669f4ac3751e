#pragma once
// Backend<Exec>: where an entry point's checked params go to run. Each
// execution target specialises it (cpu/backend.hpp, cuda/backend.cuh); the
// primary template refuses, naming the type, so a wrong Exec fails at
// compile time instead of at run time.

#include <type_traits>

namespace repshift {

// Each execution target sets it to true next to its Backend specialisation.
template <class Exec>
inline constexpr bool is_backend_v = false;

template <class Exec>
struct Backend {
  static_assert(is_backend_v<Exec>,
                "repshift: no backend for this Exec. Pass rs::Host{} or, after including "
                "<repshift/cuda.hpp>, rs::Cuda{stream}.");
};

// is_backend_v, read after instantiating Backend<Exec>: for a wrong Exec the
// static_assert above fires, and an entry point that guards its backend call
// with this instantiates nothing else, so that message is the only error.
template <class Exec, bool = sizeof(Backend<Exec>) != 0>
inline constexpr bool backend_checked_v = is_backend_v<Exec>;

}  // namespace repshift
