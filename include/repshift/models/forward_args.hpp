#pragma once
// What every vision model's forward checks first, CPU and CUDA alike.

#include <climits>

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
    fail(where, "batch = {} exceeds the reserved {}: call reserve(batch) first", batch, reserved);
  }
}

}  // namespace detail
}  // namespace repshift
