# Flags for the project's own programs (tests, benchmarks, examples); the
# installed INTERFACE target imposes none of these on users.
# NO_NATIVE: compile for the baseline or an explicit ISA instead of this CPU.
function(repshift_project_flags target)
  cmake_parse_arguments(ARG "NO_NATIVE" "" "" ${ARGN})
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic -Werror>)
  if(REPSHIFT_NATIVE AND NOT ARG_NO_NATIVE)
    target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-march=native>)
  endif()
  if(REPSHIFT_SANITIZE)
    target_compile_options(${target} PRIVATE
      $<$<COMPILE_LANGUAGE:CXX>:-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer>)
    target_link_options(${target} PRIVATE -fsanitize=address,undefined -fno-sanitize-recover=all)
  endif()
endfunction()

# nvcc: warnings are errors for device and host code. The host compiler's
# flags go as ONE comma-joined -Xcompiler word (CMake de-duplicates repeated
# -Xcompiler words, which breaks the command line).
function(repshift_cuda_flags target)
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CUDA>:--Werror all-warnings -Xcompiler=-Wall,-Wextra,-Werror>)
endfunction()
