# ctest -P script: compiles SOURCE with CXX (-fsyntax-only) and passes only
# when the compile fails with exactly one "error:" line, and the output
# matches EXPECT: the static_assert, with no cascade of errors behind it.
execute_process(
  COMMAND ${CXX} -std=c++17 -fsyntax-only -fopenmp -I${INCLUDE_DIR} ${SOURCE}
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
set(log "${out}${err}")
if(rc EQUAL 0)
  message(FATAL_ERROR "${SOURCE} compiled; expected the error \"${EXPECT}\"")
endif()
if(NOT log MATCHES "${EXPECT}")
  message(FATAL_ERROR "${SOURCE}: the compiler did not print \"${EXPECT}\":\n${log}")
endif()
string(REGEX MATCHALL "error:" errors "${log}")
list(LENGTH errors count)
if(NOT count EQUAL 1)
  message(FATAL_ERROR "${SOURCE}: ${count} errors, expected the static_assert alone:\n${log}")
endif()
