// rs::Host{n} holds for the libraries a forward calls too: oneDNN's matmul
// and convolutions and OpenBLAS's GEMMs open their own OpenMP regions,
// sized by the calling thread's nthreads ICV, not by our num_threads
// clauses (cpu/parallel.hpp: LibraryThreads). Observable: libgomp starts a
// worker thread the first time a team needs it, so with OpenMP's default
// raised above every team this process has formed, a forward on Host{1}
// must start no thread, and the same forward on Host{} must (which shows
// the check can fail). The ICV is restored afterwards, and the results
// agree with the all-threads run.

#include <gtest/gtest.h>

#include <omp.h>

#include <filesystem>
#include <functional>
#include <vector>

#include <repshift/models/resnet.hpp>
#include <repshift/models/vit.hpp>

#include "model_fixtures.hpp"
#include "reference.hpp"

namespace rs = repshift;

namespace {

int threads_in_process() {
  int n = 0;
  for ([[maybe_unused]] const auto& task : std::filesystem::directory_iterator("/proc/self/task")) ++n;
  return n;
}

double rel(const std::vector<float>& got, const std::vector<float>& want) {
  return ref::max_rel_error(got, std::vector<double>(want.begin(), want.end()));
}

// run(host) does one forward and returns its output.
void expect_one_thread_on_host_one(const std::function<std::vector<float>(const rs::Host&)>& run) {
  if (!std::filesystem::exists("/proc/self/task")) GTEST_SKIP() << "no /proc/self/task to count threads in";
  const int wide = threads_in_process() + 2;  // a team this wide needs a worker not started yet
  omp_set_num_threads(wide);
  const int before = threads_in_process();

  const std::vector<float> one = run(rs::Host{1});
  EXPECT_EQ(threads_in_process(), before) << "a forward on Host{1} started threads";
  EXPECT_EQ(omp_get_max_threads(), wide) << "the caller's OpenMP thread count was not restored";

  const std::vector<float> all = run(rs::Host{});
  EXPECT_GT(threads_in_process(), before) << "a forward on Host{} (" << wide << " threads) started none";
  EXPECT_LT(rel(one, all), 1e-5);
}

}  // namespace

TEST(HostThreads, VisionTransformerDenseLayersAndAttention) {
  const auto cfg = fixtures::tiny_vit();
  rs::VisionTransformer<> model(fixtures::lively_vit(cfg, 7));
  const int batch = 2;
  const auto images = ref::random_floats(std::size_t(batch) * 3 * cfg.image_size * cfg.image_size, 8);
  expect_one_thread_on_host_one([&](const rs::Host& host) {
    std::vector<float> logits(std::size_t(batch) * cfg.num_classes);
    model.forward(host, images.data(), batch, logits.data(), rs::PruneSchedule::drop({{0, 0.25}}));
    return logits;
  });
}

TEST(HostThreads, MapAttentionGemms) {
  const int batch = 1, tokens = 256, heads = 2, dh = 64;  // large enough for OpenBLAS to use threads
  const auto qkv = ref::random_floats(std::size_t(batch) * tokens * 3 * heads * dh, 9);
  expect_one_thread_on_host_one([&](const rs::Host& host) {
    std::vector<float> out(std::size_t(batch) * tokens * heads * dh);
    std::vector<float> map(std::size_t(batch) * heads * tokens * tokens);
    const auto p = rs::AttentionParams::contiguous(qkv.data(), nullptr, out.data(), batch, tokens, heads, dh);
    rs::Backend<rs::Host>::attention_with_map(host, p, map.data());
    return out;
  });
}

class HostThreadsResNet : public ::testing::TestWithParam<rs::MapLayout> {};
INSTANTIATE_TEST_SUITE_P(BothLayouts, HostThreadsResNet, ::testing::Values(rs::MapLayout::Nchw, rs::MapLayout::Nhwc),
                         [](const auto& info) { return info.param == rs::MapLayout::Nchw ? "Nchw" : "Nhwc"; });

TEST_P(HostThreadsResNet, Convolutions) {
  const auto cfg = fixtures::tiny_resnet();
  rs::ResNet<> model(rs::ResNetWeights::random(cfg, 10));
  if (GetParam() == rs::MapLayout::Nhwc && rs::ResNet<>::default_layout() != rs::MapLayout::Nhwc) {
    GTEST_SKIP() << "NHWC needs oneDNN";
  }
  model.set_layout(GetParam());
  const int batch = 2;
  const auto images = ref::random_floats(std::size_t(batch) * cfg.in_chans * cfg.image_size * cfg.image_size, 11);
  expect_one_thread_on_host_one([&](const rs::Host& host) {
    std::vector<float> logits(std::size_t(batch) * cfg.num_classes);
    model.forward(host, images.data(), batch, logits.data());
    return logits;
  });
}
