#pragma once
// Strict command-line values for the conformance tools: the whole text must
// be the number, or rs::InvalidArgument names the argument and the text
// (std::atoi would read "abc" as 0, std::stoi would only say "stoi").

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <string>

#include <fmt/format.h>

#include <repshift/core/error.hpp>

namespace cli {

inline double real_arg(const std::string& name, const std::string& text) {
  char* end = nullptr;
  errno = 0;
  const double value = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || errno == ERANGE) {
    throw repshift::InvalidArgument(fmt::format("{} = '{}' is not a number", name, text));
  }
  return value;
}

inline int int_arg(const std::string& name, const std::string& text) {
  char* end = nullptr;
  errno = 0;
  const long value = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno == ERANGE || value < INT_MIN || value > INT_MAX) {
    throw repshift::InvalidArgument(fmt::format("{} = '{}' is not an integer", name, text));
  }
  return int(value);
}

}  // namespace cli
