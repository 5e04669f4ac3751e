#pragma once
// HostBuffer<T>: the CPU twin of cuda::DeviceBuffer<T>, the scratch type
// Backend<Host> hands to workspaces and models. resize() only grows and
// does not keep the contents; new storage is zeroed.

#include <cstddef>
#include <memory>

namespace repshift {
namespace cpu {

template <class T>
class HostBuffer {
 public:
  HostBuffer() = default;
  explicit HostBuffer(std::size_t count) { resize(count); }

  void resize(std::size_t count) {
    if (count <= size_) return;
    ptr_ = std::make_unique<T[]>(count);
    size_ = count;
  }
  T* data() const { return ptr_.get(); }
  std::size_t size() const { return size_; }

 private:
  std::unique_ptr<T[]> ptr_;
  std::size_t size_ = 0;
};

}  // namespace cpu
}  // namespace repshift
