#pragma once
// What every model's forward checks first, CPU and CUDA alike: its
// arguments, and that no other thread is inside the same model object.

#include <atomic>
#include <climits>
#include <thread>

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

// A model object holds its scratch, so two threads in one model at once
// would race on it and return wrong values silently. Each forward (and
// reserve) enters the model's OneCaller, which refuses a second thread by
// name; the thread already inside may enter again (a forward that grows
// the scratch calls reserve). One atomic exchange per call. Copies of a
// model start free, as a copy has its own scratch.
class OneCaller {
 public:
  OneCaller() = default;
  OneCaller(const OneCaller&) noexcept {}
  OneCaller& operator=(const OneCaller&) noexcept { return *this; }

  class [[nodiscard]] Entered {
   public:
    Entered(const Entered&) = delete;
    Entered& operator=(const Entered&) = delete;
    ~Entered() {
      if (owner_) owner_->store(std::thread::id{}, std::memory_order_release);
    }

   private:
    friend class OneCaller;
    explicit Entered(std::atomic<std::thread::id>* owner) : owner_(owner) {}
    std::atomic<std::thread::id>* owner_;  // null: a nested entry, released by the outer one
  };

  Entered enter(const char* where) {
    const std::thread::id self = std::this_thread::get_id();
    std::thread::id held{};
    if (owner_.compare_exchange_strong(held, self, std::memory_order_acquire)) return Entered(&owner_);
    if (held == self) return Entered(nullptr);
    fail(where, "another thread is running this model object: give each thread its own model (models can share one "
                "set of weights)");
  }

 private:
  std::atomic<std::thread::id> owner_{};
};

}  // namespace detail
}  // namespace repshift
