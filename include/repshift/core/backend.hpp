#pragma once
// Backend<Exec>: where an entry point's checked params go to run. Each
// execution target specialises it (cpu/backend.hpp, cuda/backend.cuh); the
// primary template refuses, naming the type, so a wrong Exec fails at
// compile time instead of at run time.

#include <type_traits>

namespace repshift {

template <class Exec>
struct Backend {
  static_assert(sizeof(Exec) == 0,
                "repshift: no backend for this Exec. Pass rs::Host{} or, after including "
                "<repshift/cuda.hpp>, rs::Cuda{stream}.");
};

}  // namespace repshift
