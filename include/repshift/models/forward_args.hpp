#pragma once
// What every vision model's forward checks first, CPU and CUDA alike.

#include <climits>
#include <string>

#include "../core/error.hpp"

namespace repshift {
namespace detail {

// images and logits set, batch > 0 and, for a model that allocates in
// reserve() (the CUDA ones), no larger than what was reserved.
inline void check_model_forward(const char* where, const void* images, const void* logits, int batch,
                                int reserved = INT_MAX) {
  require_pointer(where, "images", images);
  require_pointer(where, "logits", logits);
  require_positive(where, "batch", batch);
  if (batch > reserved) {
    fail(where, "batch = " + std::to_string(batch) + " exceeds the reserved " + std::to_string(reserved) +
                    ": call reserve(batch) first");
  }
}

}  // namespace detail
}  // namespace repshift
