# CUDA switches on by itself when nvcc is found; -DREPSHIFT_ENABLE_CUDA=OFF
# forces the CPU-only build. Sets REPSHIFT_HAS_CUDA.
set(REPSHIFT_HAS_CUDA OFF)
if(REPSHIFT_ENABLE_CUDA)
  # CMake 3.25 looks for nvcc only through CUDACXX, CUDA_PATH and PATH; a
  # toolkit that sits only in its default folder would switch CUDA off
  # without a word. Look there too.
  if(NOT CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX})
    find_program(REPSHIFT_NVCC nvcc
                 HINTS ENV CUDA_HOME ENV CUDA_PATH
                 PATHS /usr/local/cuda /opt/cuda /usr/local/cuda-13.0 /usr/local/cuda-12.8
                 PATH_SUFFIXES bin)
    if(REPSHIFT_NVCC)
      set(CMAKE_CUDA_COMPILER "${REPSHIFT_NVCC}" CACHE FILEPATH "CUDA compiler")
    endif()
  endif()
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
