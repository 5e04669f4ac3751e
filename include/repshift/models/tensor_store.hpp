#pragma once
// TensorStore<Exec, T>: a model's tensors by name where Exec's kernels read
// them, in storage type T. On the CPU they are the host weights themselves
// (kept alive by the store); on CUDA each is converted to T and uploaded
// once. An empty host tensor (an absent optional one) is a null pointer.
// HostWeights is anything with for_each_tensor(name, shape, vector<float>).

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "../core/backend.hpp"
#include "../core/error.hpp"

namespace repshift {

namespace detail {

// A model's host weights, checked before its store is made from them.
template <class HostWeights>
const std::shared_ptr<const HostWeights>& checked_weights(const char* where,
                                                          const std::shared_ptr<const HostWeights>& host) {
  require_pointer(where, "weights", host.get());
  host->config.check(where);
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
      pointers_[name] = B::adopt_tensor(v, storage_[name]);
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
