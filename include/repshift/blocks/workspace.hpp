#pragma once
// Workspace<Exec, T>: the scratch of a block forward, in the executor's
// memory (Backend<Exec>::Buffer), for every block and both executors: T
// values (activations in the storage type), f32 values (scores, token
// sizes, attention maps) and int32 values (kept indices), plus the layer's
// TokenPlan and its offsets where the kernels read them.
//
// Each block says what it needs (Block::workspace_extent) and carves its
// buffers from these three arenas. reserve() is the one place that
// allocates and never shrinks. On the forward path, require() grows the
// workspace where Backend<Exec>::grows_on_demand (the CPU) and refuses it
// otherwise (CUDA: cudaMalloc would synchronise; call reserve() first).

#include <cstdint>
#include <memory>
#include <string>
#include <typeindex>
#include <typeinfo>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "../core/backend.hpp"
#include "../core/error.hpp"
#include "../core/varlen.hpp"

namespace repshift {

// Elements a forward needs in each arena, and the int32 offsets a packed
// layer's plan stages for its kernels (3 x (batch + 1): in, kept, out).
struct WorkspaceExtent {
  std::int64_t values = 0, floats = 0, ints = 0, offsets = 0;
  bool fits_in(const WorkspaceExtent& held) const {
    return values <= held.values && floats <= held.floats && ints <= held.ints && offsets <= held.offsets;
  }
};

// Where a layer's TokenPlan lies for the kernels: null when the batch is
// padded (the kernels then use the uniform counts).
struct PlanOffsets {
  const int* in = nullptr;
  const int* kept = nullptr;
  const int* out = nullptr;
};

template <class Exec, class T = float>
class Workspace {
  using B = Backend<Exec>;

 public:
  using Context = typename B::Context;
  template <class U>
  using Buffer = typename B::template Buffer<U>;

  Workspace() = default;                          // the CPU: no context
  explicit Workspace(Context ctx) : ctx_(ctx) {}  // CUDA: the cuBLASLt handle (a cuda::Blas)
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;

  void reserve(const WorkspaceExtent& e) {
    constexpr const char* where = "Workspace::reserve";
    detail::require_non_negative(where, "values", e.values);
    detail::require_non_negative(where, "floats", e.floats);
    detail::require_non_negative(where, "ints", e.ints);
    detail::require_non_negative(where, "offsets", e.offsets);
    detail::checked_extent(where, "values", 1, 1, e.values, sizeof(T));
    detail::checked_extent(where, "floats", 1, 1, e.floats, sizeof(float));
    values_.resize(std::size_t(e.values));
    floats_.resize(std::size_t(e.floats));
    ints_.resize(std::size_t(e.ints));
    plan_ints_.resize(std::size_t(e.offsets));
  }
  WorkspaceExtent held() const {
    return {std::int64_t(values_.size()), std::int64_t(floats_.size()), std::int64_t(ints_.size()),
            std::int64_t(plan_ints_.size())};
  }

  // The forward path's check: grows (CPU) or refuses (CUDA) a workspace
  // smaller than `e`; `what` and its arguments name the call's size in the
  // message, formatted only when it is refused (not on every forward).
  template <class... Args>
  void require(const char* where, const WorkspaceExtent& e, fmt::format_string<Args...> what, Args&&... args) {
    if (e.fits_in(held())) return;
    if constexpr (B::grows_on_demand) {
      reserve(e);
    } else {
      detail::fail(where, "the workspace is smaller than {} needs: call reserve() first",
                   fmt::format(what, std::forward<Args>(args)...));
    }
  }

  T* values() const { return values_.data(); }
  float* floats() const { return floats_.data(); }
  int* ints() const { return ints_.data(); }
  // What the ops get: CUDA's handles as made; on the CPU, state this
  // workspace keeps (oneDNN's packed weights: cpu/onednn_linear.hpp).
  Context context() { return B::context(ctx_, *this); }

  // What an executor's ops keep between calls besides the arenas (the CPU
  // convolutions' im2col buffer and oneDNN primitives: ConvOps<Exec>::State),
  // made on first use and owned here, one per type.
  template <class State>
  State& kept() {
    for (const auto& k : kept_) {
      if (k.first == std::type_index(typeid(State))) return *static_cast<State*>(k.second.get());
    }
    kept_.emplace_back(std::type_index(typeid(State)), std::make_shared<State>());
    return *static_cast<State*>(kept_.back().second.get());
  }

  // The layer's plan, made on the host, and its offsets staged for the
  // kernels (packed batches; padded ones get null offsets).
  TokenPlan& plan() { return plan_; }
  PlanOffsets stage_plan(const Exec& exec, bool packed) {
    if (!packed) return {};
    staged_.clear();
    for (const auto* cu : {&plan_.in, &plan_.kept, &plan_.out}) staged_.insert(staged_.end(), cu->begin(), cu->end());
    const int* base = B::stage_ints(exec, staged_, plan_ints_);
    const std::size_t n = plan_.in.size();
    return {base, base + n, base + 2 * n};
  }

 private:
  Context ctx_{};
  Buffer<T> values_;
  Buffer<float> floats_;
  Buffer<int> ints_, plan_ints_;
  TokenPlan plan_;
  std::vector<int> staged_;
  std::vector<std::pair<std::type_index, std::shared_ptr<void>>> kept_;
};

}  // namespace repshift
