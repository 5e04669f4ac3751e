#pragma once
// Exceptions thrown at the API edge. Every message names the entry point,
// the argument and its value, e.g.
//   "repshift::select_top: keep = 300 must be <= tokens = 197".

#include <cstdint>
#include <stdexcept>
#include <string>

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

[[noreturn]] inline void fail(const char* where, const std::string& what) {
  throw InvalidArgument(std::string("repshift::") + where + ": " + what);
}

template <class P>
void require_pointer(const char* where, const char* name, P* ptr) {
  if (ptr == nullptr) fail(where, std::string(name) + " is a null pointer");
}

inline void require_positive(const char* where, const char* name, std::int64_t value) {
  if (value <= 0) fail(where, std::string(name) + " = " + std::to_string(value) + " must be > 0");
}

inline void require_non_negative(const char* where, const char* name, std::int64_t value) {
  if (value < 0) fail(where, std::string(name) + " = " + std::to_string(value) + " must be >= 0");
}

// a <= b, with both names in the message.
inline void require_at_most(const char* where, const char* a_name, std::int64_t a,
                            const char* b_name, std::int64_t b) {
  if (a > b) {
    fail(where, std::string(a_name) + " = " + std::to_string(a) + " must be <= " + b_name + " = " +
                    std::to_string(b));
  }
}

// a is a multiple of b (b > 0), with both names in the message.
inline void require_multiple(const char* where, const char* a_name, std::int64_t a, const char* b_name,
                             std::int64_t b) {
  if (a % b != 0) {
    fail(where, std::string(a_name) + " = " + std::to_string(a) + " is not a multiple of " + b_name + " = " +
                    std::to_string(b));
  }
}

// The element count of a [d0, d1, d2] array of `elem_bytes`-byte elements
// must be addressable with std::ptrdiff_t byte offsets; the kernels index
// with 64-bit offsets, never with int.
inline std::int64_t checked_extent(const char* where, const char* what, std::int64_t d0,
                                   std::int64_t d1, std::int64_t d2, std::int64_t elem_bytes) {
  std::int64_t n01 = 0, n = 0, bytes = 0;
  if (__builtin_mul_overflow(d0, d1, &n01) || __builtin_mul_overflow(n01, d2, &n) ||
      __builtin_mul_overflow(n, elem_bytes, &bytes)) {
    fail(where, std::string(what) + " size " + std::to_string(d0) + " x " + std::to_string(d1) +
                    " x " + std::to_string(d2) + " overflows the 64-bit index type");
  }
  return n;
}

}  // namespace detail
}  // namespace repshift
