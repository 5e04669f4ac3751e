# CUDA switches on by itself when nvcc is found; -DREPSHIFT_ENABLE_CUDA=OFF
# forces the CPU-only build. Sets REPSHIFT_HAS_CUDA.
set(REPSHIFT_HAS_CUDA OFF)
if(REPSHIFT_ENABLE_CUDA)
  include(CheckLanguage)
  check_language(CUDA)
  if(CMAKE_CUDA_COMPILER)
    # Architectures must be set before enable_language(CUDA); a short list
    # keeps CI's compile time small.
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES 80 90)
    endif()
    # The static runtime would put cudart twice on the link line.
    set(CMAKE_CUDA_RUNTIME_LIBRARY Shared)
    enable_language(CUDA)
    find_package(CUDAToolkit REQUIRED)
    set(REPSHIFT_HAS_CUDA ON)
  else()
    message(STATUS "repshift: nvcc not found, building the CPU path only")
  endif()
endif()
