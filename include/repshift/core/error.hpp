#pragma once
// Exceptions thrown at the API edge. Every message names the entry point,
// the argument and its value, e.g.
//   "repshift::select_top: keep = 300 must be <= tokens = 197".

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <utility>

#include <fmt/format.h>
#include <fmt/ranges.h>  // fmt::join (fmt 11 moved it here)

#include "config.hpp"

namespace repshift {

// Thrown for every argument the library refuses (shape, count, pointer,
// stride, dtype, overflow). Derives from std::invalid_argument so callers
// can catch either.
class InvalidArgument : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// Thrown for a malformed file (safetensors) or an input the library cannot
// read as promised.
class FormatError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

namespace detail {

// Every message is a literal fmt format string: a runtime value (a tensor
// name, a file path) goes in as an argument, so a brace in it is printed,
// never parsed.
template <class... Args>
[[noreturn]] void fail(const char* where, fmt::format_string<Args...> what, Args&&... args) {
  throw InvalidArgument(fmt::format("repshift::{}: {}", where, fmt::format(what, std::forward<Args>(args)...)));
}

template <class P>
void require_pointer(const char* where, const char* name, P* ptr) {
  if (ptr == nullptr) fail(where, "{} is a null pointer", name);
}

inline void require_positive(const char* where, const char* name, std::int64_t value) {
  if (value <= 0) fail(where, "{} = {} must be > 0", name, value);
}

// A normalisation epsilon: finite and > 0 (+inf would make every LayerNorm
// output its bias, whatever the input).
inline void require_epsilon(const char* where, const char* name, float value) {
  if (!(value > 0.0f && value < INFINITY)) fail(where, "{} = {} must be finite and > 0", name, value);
}

inline void require_non_negative(const char* where, const char* name, std::int64_t value) {
  if (value < 0) fail(where, "{} = {} must be >= 0", name, value);
}

// a <= b, with both names in the message.
inline void require_at_most(const char* where, const char* a_name, std::int64_t a,
                            const char* b_name, std::int64_t b) {
  if (a > b) fail(where, "{} = {} must be <= {} = {}", a_name, a, b_name, b);
}

// a is a multiple of b (b > 0), with both names in the message.
inline void require_multiple(const char* where, const char* a_name, std::int64_t a, const char* b_name,
                             std::int64_t b) {
  if (a % b != 0) fail(where, "{} = {} is not a multiple of {} = {}", a_name, a, b_name, b);
}

// The element count of a [d0, d1, d2] array of `elem_bytes`-byte elements
// must be addressable with std::ptrdiff_t byte offsets; the kernels index
// with 64-bit offsets, never with int.
inline std::int64_t checked_extent(const char* where, const char* what, std::int64_t d0,
                                   std::int64_t d1, std::int64_t d2, std::int64_t elem_bytes) {
  std::int64_t n01 = 0, n = 0, bytes = 0;
  if (__builtin_mul_overflow(d0, d1, &n01) || __builtin_mul_overflow(n01, d2, &n) ||
      __builtin_mul_overflow(n, elem_bytes, &bytes)) {
    fail(where, "{} size {} x {} x {} overflows the 64-bit index type", what, d0, d1, d2);
  }
  return n;
}

// Sizes a model keeps as int (token counts, row widths, one sample's map):
// the product of `factors` stays within 2^29, which leaves room for the
// small multiples taken of it (a class token, 3 x dim for qkv).
inline void require_int_size(const char* where, const char* what, std::initializer_list<std::int64_t> factors) {
  constexpr std::int64_t kLimit = std::int64_t(1) << 29;
  std::int64_t n = 1;
  bool over = false;
  for (const std::int64_t f : factors) over = over || __builtin_mul_overflow(n, f, &n) || n > kLimit;
  if (!over) return;
  fail(where, "{} = {} exceeds 2^29", what, fmt::join(factors.begin(), factors.end(), " x "));
}

// The element span of `count` rows of `row` elements, `stride` apart:
// (count - 1) x stride + row, addressable as for checked_extent.
inline std::int64_t checked_span(const char* where, const char* what, std::int64_t count, std::int64_t stride,
                                 std::int64_t row, std::int64_t elem_bytes) {
  std::int64_t span = 0, bytes = 0;
  if (__builtin_mul_overflow(count - 1, stride, &span) || __builtin_add_overflow(span, row, &span) ||
      __builtin_mul_overflow(span, elem_bytes, &bytes)) {
    fail(where, "{}: {} rows of {} elements, {} apart, overflow the 64-bit index type", what, count, row, stride);
  }
  return span;
}

}  // namespace detail
}  // namespace repshift
