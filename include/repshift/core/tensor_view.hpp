#pragma once
// A non-owning view: pointer, shape and strides (in elements). The
// tensor-view overloads of the entry points accept any batch and token
// strides (a slice of a larger buffer, a transposed batch) as long as the
// innermost (channel) dimension is contiguous, which every kernel needs for
// vector loads; anything else is refused with an InvalidArgument.

#include <array>
#include <cstdint>
#include <type_traits>

namespace repshift {

template <class T, int Rank>
struct TensorView {
  static_assert(Rank >= 1 && Rank <= 4, "TensorView supports rank 1..4");
  using value_type = T;
  static constexpr int rank = Rank;

  T* data = nullptr;
  std::array<std::int64_t, Rank> shape{};
  std::array<std::int64_t, Rank> stride{};

  // Row-major contiguous view of `shape`.
  static TensorView contiguous(T* data, std::array<std::int64_t, Rank> shape) {
    TensorView v;
    v.data = data;
    v.shape = shape;
    std::int64_t s = 1;
    for (int d = Rank - 1; d >= 0; --d) {
      v.stride[d] = s;
      s *= shape[d];
    }
    return v;
  }

  // A read-only view of the same memory (only for non-const T).
  template <class U = T, class = std::enable_if_t<!std::is_const_v<U>>>
  operator TensorView<const U, Rank>() const {  // NOLINT: implicit on purpose, like T* -> const T*
    return {data, shape, stride};
  }
};

// make_view(ptr, {B, N, C}) -> contiguous view; the deduction keeps call
// sites short.
template <class T, std::size_t Rank>
TensorView<T, int(Rank)> make_view(T* data, const std::int64_t (&shape)[Rank]) {
  std::array<std::int64_t, Rank> s{};
  for (std::size_t d = 0; d < Rank; ++d) s[d] = shape[d];
  return TensorView<T, int(Rank)>::contiguous(data, s);
}

}  // namespace repshift
