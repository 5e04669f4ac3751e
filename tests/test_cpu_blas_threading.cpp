// The GEMM under whichever OpenBLAS build the loader picked: the OpenMP one
// (the default here, by RUNPATH) or the pthread one (ctest
// blas.pthreads_build runs this file again with LD_LIBRARY_PATH pointing at
// it). Either way the product equals a double reference, and the detected
// threading model is the one the environment says (REPSHIFT_EXPECT_BLAS).
// Then the one sgemm of the CPU kernels through each library it can take.

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

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
    std::vector<double> want(std::size_t(rows) * out);
    for (int r = 0; r < rows; ++r)
      for (int o = 0; o < out; ++o) {
        double s = 0;
        for (int k = 0; k < in; ++k) s += double(x[std::size_t(r) * in + k]) * w[std::size_t(o) * in + k];
        want[std::size_t(r) * out + o] = s;
      }
    std::vector<float> y(want.size(), NAN);
    rs::cpu::linear(rs::Host{}, x.data(), rows, in, w.data(), out, y.data(), in, out);
    EXPECT_LT(ref::max_rel_error(y, want), 1e-4) << rows << " rows";  // float sums of 384 products
    // Called from inside the caller's own OpenMP region (nesting off: the
    // split's team is one thread, not the two asked for), every row is
    // still computed: the pthread build's split ran only the first slice.
    std::vector<std::vector<float>> nested(2, std::vector<float>(want.size(), NAN));
#pragma omp parallel for num_threads(2)
    for (int i = 0; i < 2; ++i) {
      rs::cpu::linear(rs::Host{2}, x.data(), rows, in, w.data(), out, nested[std::size_t(i)].data(), in, out);
    }
    for (const auto& yn : nested) EXPECT_LT(ref::max_rel_error(yn, want), 1e-4) << rows << " rows, nested";
  }
}

// REPSHIFT_SGEMM set (or unset) for a scope, restored after it whatever
// the test throws.
class SgemmVariable {
 public:
  explicit SgemmVariable(const char* value) {
    if (const char* old = std::getenv("REPSHIFT_SGEMM")) saved_ = old, had_ = true;
    value ? ::setenv("REPSHIFT_SGEMM", value, 1) : ::unsetenv("REPSHIFT_SGEMM");
  }
  ~SgemmVariable() { had_ ? ::setenv("REPSHIFT_SGEMM", saved_.c_str(), 1) : ::unsetenv("REPSHIFT_SGEMM"); }

 private:
  std::string saved_;
  bool had_ = false;
};

using rs::cpu::kHaveOneDnn;

// Every shape of call the CPU kernels make (B transposed or not, strided
// rows, alpha, beta 0 over a C of NaN and beta != 0), through each library
// this build has, against a double reference.
TEST(Sgemm, EachLibraryMatchesTheReference) {
  std::vector<rs::cpu::SgemmLibrary> libraries = {rs::cpu::SgemmLibrary::Blas};
  if (kHaveOneDnn) libraries.push_back(rs::cpu::SgemmLibrary::OneDnn);
  struct Case { int M, N, K, lda_pad, ldb_pad, ldc_pad; float alpha, beta; };
  const Case cases[] = {{197, 197, 64, 0, 0, 0, 0.125f, 0.0f}, {61, 64, 61, 3, 0, 5, 1.0f, 0.0f},
                        {1, 13, 7, 0, 2, 0, 1.0f, 0.5f},       {33, 1, 129, 1, 1, 1, -2.0f, 1.0f},
                        {5, 4, 1, 0, 0, 2, 1.0f, 0.0f},        {6, 3, 0, 0, 0, 1, 1.0f, 0.5f}};
  for (const auto library : libraries) {
    for (bool trans_b : {true, false}) {
      for (const Case& c : cases) {
        const int lda = c.K + c.lda_pad, ldb = (trans_b ? c.K : c.N) + c.ldb_pad, ldc = c.N + c.ldc_pad;
        const auto A = ref::random_floats(std::size_t(c.M) * std::max(lda, 1), 3);
        const auto B = ref::random_floats(std::size_t(trans_b ? c.N : c.K) * std::max(ldb, 1) + 1, 4);
        auto C0 = ref::random_floats(std::size_t(c.M) * ldc, 5);
        for (int m = 0; m < c.M; ++m)
          for (int j = 0; j < c.N && c.beta == 0.0f; ++j) C0[std::size_t(m) * ldc + j] = NAN;  // never read
        std::vector<float> C = C0;
        rs::cpu::sgemm(library, trans_b, c.M, c.N, c.K, c.alpha, A.data(), std::max(lda, 1), B.data(), std::max(ldb, 1),
                       c.beta, C.data(), ldc);
        for (int m = 0; m < c.M; ++m) {
          for (int j = 0; j < ldc; ++j) {
            const std::size_t at = std::size_t(m) * ldc + j;
            if (j >= c.N) {  // the padding between rows: untouched
              ASSERT_EQ(C[at], C0[at]) << rs::cpu::name(library) << " wrote C[" << m << ", " << j << "]";
              continue;
            }
            double s = 0;
            for (int k = 0; k < c.K; ++k) {
              const float b = trans_b ? B[std::size_t(j) * ldb + k] : B[std::size_t(k) * ldb + j];
              s += double(A[std::size_t(m) * lda + k]) * b;
            }
            const double want = c.alpha * s + (c.beta == 0.0f ? 0.0 : c.beta * double(C0[at]));
            ASSERT_NEAR(C[at], want, 1e-5 * (c.K + 1) * (1 + std::abs(want)))
                << rs::cpu::name(library) << " trans_b " << trans_b << " M " << c.M << " N " << c.N << " K " << c.K;
          }
        }
      }
    }
    // Empty products touch nothing, even with the null pointers of empty tensors.
    float untouched = 3.0f;
    rs::cpu::sgemm(library, true, 0, 8, 8, 1.0f, nullptr, 8, nullptr, 8, 0.0f, nullptr, 8);
    rs::cpu::sgemm(library, false, 1, 0, 8, 1.0f, nullptr, 8, nullptr, 1, 0.0f, &untouched, 1);
    EXPECT_EQ(untouched, 3.0f);
  }
}

TEST(Sgemm, GenericOpenBlasCoresAreRecognised) {
  using rs::cpu::CpuIsa;
  EXPECT_TRUE(rs::cpu::blas_core_is_generic("Prescott", CpuIsa::Avx512));  // 0.3.21 on an Emerald Rapids Xeon
  EXPECT_TRUE(rs::cpu::blas_core_is_generic("Sandybridge", CpuIsa::Avx2));  // AVX without FMA kernels
  EXPECT_TRUE(rs::cpu::blas_core_is_generic("Nehalem", CpuIsa::Avx2));
  EXPECT_TRUE(rs::cpu::blas_core_is_generic("Unknown", CpuIsa::Avx512));
  EXPECT_TRUE(rs::cpu::blas_core_is_generic("Haswellish", CpuIsa::Avx2));  // whole names only
  EXPECT_FALSE(rs::cpu::blas_core_is_generic("SkylakeX", CpuIsa::Avx512));
  EXPECT_FALSE(rs::cpu::blas_core_is_generic("COOPERLAKE", CpuIsa::Avx512));
  EXPECT_FALSE(rs::cpu::blas_core_is_generic("Haswell", CpuIsa::Avx2));
  EXPECT_FALSE(rs::cpu::blas_core_is_generic("Zen", CpuIsa::Avx2));
  EXPECT_FALSE(rs::cpu::blas_core_is_generic("Excavator", CpuIsa::Avx2));
  EXPECT_FALSE(rs::cpu::blas_core_is_generic("Prescott", CpuIsa::Baseline));  // nothing better to run
  EXPECT_FALSE(rs::cpu::blas_core_is_generic("", CpuIsa::Avx512));  // another CBLAS: taken as tuned
  EXPECT_FALSE(rs::cpu::blas_core_is_generic(nullptr, CpuIsa::Avx512));
}

// REPSHIFT_SGEMM picks the library, in any case; a bad value is refused by name.
TEST(Sgemm, EnvironmentChoosesTheLibraryAndBadValuesAreRefused) {
  {
    const SgemmVariable unset(nullptr);
    std::printf("OpenBLAS core '%s' on a CPU with %s: sgemm through %s\n", rs::cpu::blas_core(),
                rs::cpu::to_string(rs::cpu::detected_cpu_isa()), rs::cpu::name(rs::cpu::sgemm_library()));
  }
  {
    const SgemmVariable blas("BLAS");
    EXPECT_EQ(rs::cpu::sgemm_library(), rs::cpu::SgemmLibrary::Blas);
  }
  {
    const SgemmVariable onednn("onednn");
    if (kHaveOneDnn) {
      EXPECT_EQ(rs::cpu::sgemm_library(), rs::cpu::SgemmLibrary::OneDnn);
    } else {
      EXPECT_THROW(rs::cpu::sgemm_library(), rs::InvalidArgument);
    }
  }
  const SgemmVariable mkl("mkl");
  try {
    rs::cpu::sgemm_library();
    ADD_FAILURE() << "REPSHIFT_SGEMM=mkl was accepted";
  } catch (const rs::InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("REPSHIFT_SGEMM: 'mkl' is not blas or onednn"), std::string::npos)
        << e.what();
  }
}
