# repshift::blas: the CBLAS the blocks call. The OpenMP build of OpenBLAS is
# preferred: it shares libgomp's thread pool with our kernels, so BLAS calls
# and OpenMP epilogues alternate without two sets of spinning threads
# fighting for the cores (the pthread build halves DeiT-S throughput on 2
# cores; bench/results has the numbers). Falls back to any BLAS CMake finds.
# Used both by this project and, through repshiftConfig.cmake, by consumers.
if(NOT TARGET repshift::blas)
  find_package(OpenMP REQUIRED COMPONENTS CXX)
  find_library(REPSHIFT_OPENBLAS_OPENMP NAMES openblas
               PATHS /usr/lib/x86_64-linux-gnu/openblas-openmp /usr/lib/aarch64-linux-gnu/openblas-openmp
               NO_DEFAULT_PATH)
  add_library(repshift::blas INTERFACE IMPORTED)
  if(REPSHIFT_OPENBLAS_OPENMP)
    message(STATUS "repshift: BLAS = ${REPSHIFT_OPENBLAS_OPENMP} (OpenMP build)")
    target_link_libraries(repshift::blas INTERFACE "${REPSHIFT_OPENBLAS_OPENMP}" OpenMP::OpenMP_CXX)
  else()
    set(BLA_VENDOR OpenBLAS)
    find_package(BLAS)
    if(NOT BLAS_FOUND)
      unset(BLA_VENDOR)
      find_package(BLAS REQUIRED)
    endif()
    message(STATUS "repshift: BLAS = ${BLAS_LIBRARIES}")
    target_link_libraries(repshift::blas INTERFACE BLAS::BLAS)
  endif()
endif()
