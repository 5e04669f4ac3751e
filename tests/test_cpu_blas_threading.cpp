// The GEMM under whichever OpenBLAS build the loader picked: the OpenMP one
// (the default here, by RUNPATH) or the pthread one (ctest
// blas.pthreads_build runs this file again with LD_LIBRARY_PATH pointing at
// it). Either way the product equals a double reference, and the detected
// threading model is the one the environment says (REPSHIFT_EXPECT_BLAS).

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include <repshift/cpu/gemm.hpp>

#include "reference.hpp"

namespace rs = repshift;

TEST(BlasThreading, DetectedModelAndLinearMatchTheReference) {
  const rs::cpu::BlasThreading model = rs::cpu::blas_threading();
  std::printf("BLAS threading: %s\n", rs::cpu::name(model));
  if (const char* want = std::getenv("REPSHIFT_EXPECT_BLAS")) {
    EXPECT_EQ(std::string(rs::cpu::name(model)), want);
  }

  // The DeiT-S MLP shape at batch 2 (and an odd row count): rows split over
  // the OpenMP threads under the pthread build, one call otherwise.
  for (int rows : {394, 7, 1}) {
    const int in = 384, out = 160;
    const auto x = ref::random_floats(std::size_t(rows) * in, 1);
    const auto w = ref::random_floats(std::size_t(out) * in, 2);
    std::vector<float> y(std::size_t(rows) * out, NAN);
    rs::cpu::linear(rs::Host{}, x.data(), rows, in, w.data(), out, y.data(), in, out);
    std::vector<double> want(y.size());
    for (int r = 0; r < rows; ++r)
      for (int o = 0; o < out; ++o) {
        double s = 0;
        for (int k = 0; k < in; ++k) s += double(x[std::size_t(r) * in + k]) * w[std::size_t(o) * in + k];
        want[std::size_t(r) * out + o] = s;
      }
    EXPECT_LT(ref::max_rel_error(y, want), 1e-4) << rows << " rows";  // float sums of 384 products
  }
}
