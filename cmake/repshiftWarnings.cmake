# Flags for the project's own programs (tests, benchmarks, examples); the
# installed INTERFACE target imposes none of these on users.
function(repshift_project_flags target)
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic -Werror>)
  if(REPSHIFT_NATIVE)
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
