#pragma once
// TensorStore<Exec, T>: a model's tensors by name where Exec's kernels read
// them, in storage type T. On the CPU they are the host weights themselves
// (kept alive by the store); on CUDA each is converted to T and uploaded
// once. An empty host tensor (an absent optional one) is a null pointer.
// HostWeights is anything with for_each_tensor(name, shape, vector<float>).

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "../core/backend.hpp"
#include "../core/error.hpp"
#include "../io/safetensors.hpp"

namespace repshift {

namespace detail {

// A model's host weights, checked before a store is made from them or they
// are saved: the config, then every tensor's size against the shape the
// config gives it (the tensors are public fields, which a caller may have
// edited).
template <class HostWeights>
void check_host_weights(const char* where, const HostWeights& host) {
  host.config.check(where);
  host.for_each_tensor([&](const std::string& name, const std::vector<std::int64_t>& shape,
                           const std::vector<float>& v) {
    std::int64_t n = 1;
    for (const std::int64_t d : shape) {
      if (__builtin_mul_overflow(n, d, &n)) fail(where, "weights tensor '{}': its shape overflows 64 bits", name);
    }
    if (std::int64_t(v.size()) != n) {
      fail(where, "weights tensor '{}' holds {} values, but the config gives it shape {}: {} values", name, v.size(),
           io::shape_string(shape), n);
    }
  });
}

template <class HostWeights>
const std::shared_ptr<const HostWeights>& checked_weights(const char* where,
                                                          const std::shared_ptr<const HostWeights>& host) {
  require_pointer(where, "weights", host.get());
  check_host_weights(where, *host);
  return host;
}

}  // namespace detail

template <class Exec, class T>
class TensorStore {
  using B = Backend<Exec>;

 public:
  template <class HostWeights>
  explicit TensorStore(const std::shared_ptr<const HostWeights>& host) {
    detail::require_pointer("TensorStore", "host weights", host.get());
    host->for_each_tensor([&](const std::string& name, const auto&, const std::vector<float>& v) {
      pointers_[name] = B::adopt_tensor(name, v, storage_[name]);
    });
    if constexpr (B::aliases_host_tensors) host_ = host;
  }
  const T* operator[](const std::string& name) const {
    const auto it = pointers_.find(name);
    if (it == pointers_.end()) detail::fail("TensorStore", "no tensor named {}", name);
    return it->second;
  }

 private:
  std::shared_ptr<const void> host_;  // the CPU's tensors alias it
  std::map<std::string, typename B::template Buffer<T>> storage_;
  std::map<std::string, const T*> pointers_;
};

}  // namespace repshift
