#pragma once
// Backend<Host>: the entry points' CPU targets.

#include "../backend.hpp"
#include "../dtype.hpp"
#include "gather_tokens.hpp"
#include "select_top.hpp"
#include "shift_score.hpp"

namespace repshift {

template <>
struct Backend<Host> {
  template <class T>
  static constexpr bool supports_v = is_host_storage_v<T>;

  template <class Metric, class T>
  static void shift_score(const Host& host, const ShiftParams<T>& p) {
    cpu::shift_score<Metric>(host, p);
  }
  static void select_top(const Host& host, const SelectParams& p) { cpu::select_top(host, p); }
  template <class T>
  static void gather_tokens(const Host& host, const GatherParams<T>& p) {
    cpu::gather_tokens(host, p);
  }
};

}  // namespace repshift
