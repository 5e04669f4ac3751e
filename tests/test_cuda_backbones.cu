// The CUDA kernels of the SsmScan and CnnRows backbones: the selective scan
// and causal conv against the double reference (reference_scan.hpp), both
// directions, state 16 (registers) and other sizes, channel counts off the
// CTA width, several shared-memory chunks; line scores and line removal
// against the CPU path (itself tested against a double reference).
// Skipped (GTEST_SKIP -> ctest "Skipped") without a device.

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include <repshift/cpu/line_prune.hpp>
#include <repshift/cuda.hpp>

#include "reference_scan.hpp"

namespace rs = repshift;

namespace {

bool have_device() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

#define REQUIRE_DEVICE() \
  if (!have_device()) GTEST_SKIP() << "no CUDA device"

struct DeviceFloats {
  float* ptr = nullptr;
  std::size_t n = 0;
  explicit DeviceFloats(const std::vector<float>& host) : n(host.size()) {
    rs::cuda_detail::check(cudaMalloc(&ptr, n * sizeof(float)), "cudaMalloc");
    rs::cuda_detail::check(cudaMemcpy(ptr, host.data(), n * sizeof(float), cudaMemcpyHostToDevice), "cudaMemcpy");
  }
  ~DeviceFloats() { cudaFree(ptr); }
  DeviceFloats(const DeviceFloats&) = delete;
  DeviceFloats& operator=(const DeviceFloats&) = delete;
  std::vector<float> download() const {
    std::vector<float> host(n);
    rs::cuda_detail::check(cudaMemcpy(host.data(), ptr, n * sizeof(float), cudaMemcpyDeviceToHost), "cudaMemcpy");
    return host;
  }
};

std::vector<float> random_floats(std::size_t n, unsigned seed, float lo, float hi) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(gen);
  return v;
}

double max_rel_error(const std::vector<float>& got, const ref::Mat& want) {
  double worst = 0;
  for (std::size_t i = 0; i < got.size(); ++i)
    worst = std::max(worst, std::abs(double(got[i]) - want[i]) / (1.0 + std::abs(want[i])));
  return worst;
}

struct ScanCase {
  int batch, length, channels, state;
};

}  // namespace

class CudaSelectiveScan : public ::testing::TestWithParam<ScanCase> {};

TEST_P(CudaSelectiveScan, BothDirectionsMatchTheSequentialReference) {
  REQUIRE_DEVICE();
  const ScanCase k = GetParam();
  const std::size_t rows = std::size_t(k.batch) * k.length;
  const int d = k.channels, n = k.state;
  const auto u = random_floats(rows * d, 1, -2.0f, 2.0f), z = random_floats(rows * d, 2, -2.0f, 2.0f);
  const auto dt = random_floats(rows * d, 3, -4.0f, 1.0f), bc = random_floats(rows * 2 * n, 4, -1.0f, 1.0f);
  const auto dt_bias = random_floats(std::size_t(d), 5, -1.0f, 0.0f);
  const auto A_log = random_floats(std::size_t(d) * n, 6, -1.0f, 2.0f), D = random_floats(std::size_t(d), 7, 0.0f, 1.0f);
  ref::Mat ud(u.begin(), u.end()), zd(z.begin(), z.end()), dtd(dt.begin(), dt.end()), B(rows * n), C(rows * n);
  for (std::size_t r = 0; r < rows; ++r)
    for (int i = 0; i < n; ++i) B[r * n + i] = bc[r * 2 * n + i], C[r * n + i] = bc[r * 2 * n + n + i];
  const ref::Mat fwd = ref::scan(ud, dtd, dt_bias.data(), A_log.data(), B, C, D.data(), &zd, k.batch, k.length, d, n);
  auto flip = [&](const ref::Mat& m, int w) { return ref::flip(m, k.batch, k.length, w); };
  const ref::Mat bwd = flip(ref::scan(flip(ud, d), flip(dtd, d), dt_bias.data(), A_log.data(), flip(B, n), flip(C, n),
                                      D.data(), nullptr, k.batch, k.length, d, n), d);

  DeviceFloats du(u), dz(z), ddt(dt), dbc(bc), dbias(dt_bias), dA(A_log), dD(D);
  DeviceFloats out(std::vector<float>(rows * d, 1.0f));
  rs::SelectiveScanParams p;
  p.u = du.ptr;
  p.dt = ddt.ptr;
  p.dt_bias = dbias.ptr;
  p.A_log = dA.ptr;
  p.B = dbc.ptr;
  p.C = dbc.ptr + n;
  p.D = dD.ptr;
  p.z = dz.ptr;
  p.out = out.ptr;
  p.batch = k.batch;
  p.length = k.length;
  p.channels = d;
  p.state = n;
  p.u_stride = p.dt_stride = p.z_stride = p.out_stride = d;
  p.bc_stride = 2 * n;
  rs::cuda::selective_scan<rs::ScanDirection::Forward>(rs::Cuda{}, p);
  EXPECT_LT(max_rel_error(out.download(), fwd), 2e-4);

  // Backward, ungated, halved and accumulated onto the forward result.
  p.z = nullptr;
  p.out_scale = 0.5f;
  rs::cuda::selective_scan<rs::ScanDirection::Backward, true>(rs::Cuda{}, p);
  ref::Mat both(fwd.size());
  for (std::size_t i = 0; i < both.size(); ++i) both[i] = fwd[i] + 0.5 * bwd[i];
  EXPECT_LT(max_rel_error(out.download(), both), 2e-4);
}

INSTANTIATE_TEST_SUITE_P(Shapes, CudaSelectiveScan,
                         ::testing::Values(ScanCase{2, 197, 384, 16}, ScanCase{1, 33, 37, 16}, ScanCase{3, 70, 5, 5},
                                           ScanCase{1, 1, 130, 64}),
                         [](const auto& info) {
                           const ScanCase& k = info.param;
                           return "B" + std::to_string(k.batch) + "L" + std::to_string(k.length) + "D" +
                                  std::to_string(k.channels) + "N" + std::to_string(k.state);
                         });

TEST(CudaCausalConv, BothDirectionsMatchTheReference) {
  REQUIRE_DEVICE();
  const int batch = 2, length = 45, d = 131, k = 4;
  const auto x = random_floats(std::size_t(batch) * length * d, 8, -2.0f, 2.0f);
  const auto w = random_floats(std::size_t(d) * k, 9, -1.0f, 1.0f), bias = random_floats(std::size_t(d), 10, -1.0f, 1.0f);
  DeviceFloats dx(x), dw(w), db(bias), out(std::vector<float>(x.size()));
  rs::CausalConvParams p;
  p.x = dx.ptr;
  p.weight = dw.ptr;
  p.bias = db.ptr;
  p.out = out.ptr;
  p.batch = batch;
  p.length = length;
  p.channels = d;
  p.kernel = k;
  p.x_stride = p.out_stride = d;
  const ref::Mat xd(x.begin(), x.end());
  rs::cuda::causal_conv1d_silu<rs::ScanDirection::Forward>(rs::Cuda{}, p);
  EXPECT_LT(max_rel_error(out.download(), ref::conv_silu(xd, batch, length, d, w.data(), bias.data(), k)), 1e-5);
  rs::cuda::causal_conv1d_silu<rs::ScanDirection::Backward>(rs::Cuda{}, p);
  const ref::Mat mirrored = ref::flip(ref::conv_silu(ref::flip(xd, batch, length, d), batch, length, d, w.data(),
                                                     bias.data(), k), batch, length, d);
  EXPECT_LT(max_rel_error(out.download(), mirrored), 1e-5);
}

TEST(CudaLines, ScoresAndRemovalMatchTheHostPath) {
  REQUIRE_DEVICE();
  const int batch = 2, c = 19, h = 13, w = 11, kr = 9, kc = 7;
  const auto before = random_floats(std::size_t(batch) * c * h * w, 11, -2.0f, 2.0f);
  const auto after = random_floats(before.size(), 12, -2.0f, 2.0f);
  std::vector<float> rows(std::size_t(batch) * h), cols(std::size_t(batch) * w);
  rs::LineScoreParams host;
  host.before = before.data();
  host.after = after.data();
  host.row_scores = rows.data();
  host.col_scores = cols.data();
  host.batch = batch;
  host.channels = c;
  host.height = h;
  host.width = w;
  rs::cpu::line_scores<rs::policies::Cosine>(rs::Host{}, host);

  DeviceFloats db(before), da(after), drows(std::vector<float>(rows.size())), dcols(std::vector<float>(cols.size()));
  DeviceFloats pixel(std::vector<float>(std::size_t(batch) * h * w));
  rs::LineScoreParams dev = host;
  dev.before = db.ptr;
  dev.after = da.ptr;
  dev.row_scores = drows.ptr;
  dev.col_scores = dcols.ptr;
  dev.pixel_scores = pixel.ptr;
  rs::cuda::line_scores<rs::policies::Cosine>(rs::Cuda{}, dev);
  const ref::Mat want_rows(rows.begin(), rows.end()), want_cols(cols.begin(), cols.end());
  EXPECT_LT(max_rel_error(drows.download(), want_rows), 1e-5);
  EXPECT_LT(max_rel_error(dcols.download(), want_cols), 1e-5);

  // Removal: same lines on both paths; then an out-of-range column is zeroed and reported.
  std::vector<int> keep_rows = {0, 1, 2, 4, 5, 7, 9, 11, 12, 1, 2, 3, 4, 6, 8, 9, 10, 12};
  std::vector<int> keep_cols = {0, 2, 3, 5, 6, 8, 10, 0, 1, 2, 4, 5, 7, 9};
  std::vector<float> out(std::size_t(batch) * c * kr * kc);
  rs::RemoveLinesParams r{before.data(), keep_rows.data(), keep_cols.data(), out.data(), batch, c, h, w, kr, kc};
  rs::cpu::remove_lines(rs::Host{}, r);
  int* d_rows = nullptr;
  int* d_cols = nullptr;
  int* status = nullptr;
  rs::cuda_detail::check(cudaMalloc(&d_rows, keep_rows.size() * sizeof(int)), "cudaMalloc");
  rs::cuda_detail::check(cudaMalloc(&d_cols, keep_cols.size() * sizeof(int)), "cudaMalloc");
  rs::cuda_detail::check(cudaMalloc(&status, 4 * sizeof(int)), "cudaMalloc");
  rs::cuda_detail::check(cudaMemset(status, 0, 4 * sizeof(int)), "cudaMemset");
  rs::cuda_detail::check(cudaMemcpy(d_rows, keep_rows.data(), keep_rows.size() * sizeof(int), cudaMemcpyHostToDevice),
                         "cudaMemcpy");
  rs::cuda_detail::check(cudaMemcpy(d_cols, keep_cols.data(), keep_cols.size() * sizeof(int), cudaMemcpyHostToDevice),
                         "cudaMemcpy");
  DeviceFloats dout(std::vector<float>(out.size(), NAN));
  rs::RemoveLinesParams rd{db.ptr, d_rows, d_cols, dout.ptr, batch, c, h, w, kr, kc};
  const rs::Cuda exec{nullptr, status};
  rs::cuda::remove_lines(exec, rd);
  EXPECT_EQ(dout.download(), out);
  EXPECT_NO_THROW(rs::cuda::throw_if_status(exec));
  keep_cols[9] = w;  // sample 1, column slot 2
  rs::cuda_detail::check(cudaMemcpy(d_cols, keep_cols.data(), keep_cols.size() * sizeof(int), cudaMemcpyHostToDevice),
                         "cudaMemcpy");
  rs::cuda::remove_lines(exec, rd);
  try {
    rs::cuda::throw_if_status(exec);
    ADD_FAILURE() << "the out-of-range column was not reported";
  } catch (const rs::InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("keep_cols[9] = 11"), std::string::npos) << e.what();
  }
  cudaFree(d_rows);
  cudaFree(d_cols);
  cudaFree(status);
}
