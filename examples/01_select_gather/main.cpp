// 01_select_gather: the three primitives on a DeiT-S-shaped batch
// (B x 197 tokens x 384 channels: CLS + a 14 x 14 patch grid).
//
// Synthetic activations stand in for a block's MLP site: every patch
// changes a little, patches on an "object" (a disk in the grid) change a
// lot. Representation shift should find the object: the demo scores with
// each metric, keeps the paper's first-layer rate (80%, CLS protected),
// gathers the survivors, and draws which patches of image 0 were kept.
//
//   select_gather_demo [batch=8] [keep_ratio=0.5]

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include <fmt/format.h>
#include <repshift/repshift.hpp>

namespace rs = repshift;

namespace {

constexpr int kGrid = 14, kTokens = 1 + kGrid * kGrid, kChannels = 384;

double now_ms() {
  using clock = std::chrono::steady_clock;
  return std::chrono::duration<double, std::milli>(clock::now().time_since_epoch()).count();
}

bool on_object(int b, int patch) {
  // Each image has its object somewhere else.
  const double cy = 4.0 + (b * 3) % 6, cx = 5.0 + (b * 5) % 5, radius = 3.2;
  const int y = patch / kGrid, x = patch % kGrid;
  return (y - cy) * (y - cy) + (x - cx) * (x - cx) <= radius * radius;
}

template <class Metric>
void run(int batch, double keep_ratio, const std::vector<float>& before, const std::vector<float>& after) {
  const int keep = rs::policies::keep_count(kTokens, keep_ratio, /*protect=*/1);
  std::vector<float> scores(std::size_t(batch) * kTokens);
  std::vector<int> keep_idx(std::size_t(batch) * keep);
  std::vector<float> kept(std::size_t(batch) * keep * kChannels);

  const double t0 = now_ms();
  rs::shift_score<Metric>(rs::Host{}, before.data(), after.data(), scores.data(), batch, kTokens, kChannels);
  const double t1 = now_ms();
  rs::select_top(rs::Host{}, scores.data(), keep_idx.data(), batch, kTokens, keep, /*protect=*/1);
  const double t2 = now_ms();
  rs::gather_tokens(rs::Host{}, after.data(), keep_idx.data(), kept.data(), batch, kTokens, keep, kChannels);
  const double t3 = now_ms();

  int object_kept = 0, object_total = 0;
  for (int b = 0; b < batch; ++b) {
    for (int p = 0; p < kGrid * kGrid; ++p) object_total += on_object(b, p);
    for (int k = 1; k < keep; ++k) object_kept += on_object(b, keep_idx[std::size_t(b) * keep + k] - 1);
  }
  fmt::print("\n[{}] kept {} of {} tokens per image (CLS + {} patches); {} of {} object patches kept\n",
             Metric::name, keep, kTokens, keep - 1, object_kept, object_total);
  fmt::print("  score {:.3f} ms ({:.1f} GB/s)   select {:.3f} ms   gather {:.3f} ms\n", t1 - t0,
             2.0 * before.size() * sizeof(float) / ((t1 - t0) * 1e6), t2 - t1, t3 - t2);

  std::vector<char> map(kGrid * kGrid, '.');
  for (int k = 1; k < keep; ++k) map[keep_idx[k] - 1] = '#';
  fmt::print("  image 0: @ object kept, o object dropped, # background kept, . background dropped\n");
  for (int y = 0; y < kGrid; ++y) {
    fmt::print("    ");
    for (int x = 0; x < kGrid; ++x) {
      const int p = y * kGrid + x;
      const bool kept_p = map[p] == '#', object = on_object(0, p);
      fmt::print("{} ", object ? (kept_p ? '@' : 'o') : (kept_p ? '#' : '.'));
    }
    fmt::print("\n");
  }
}

}  // namespace

int main(int argc, char** argv) {
  const int batch = argc > 1 ? std::atoi(argv[1]) : 8;
  const double keep_ratio = argc > 2 ? std::atof(argv[2]) : 0.5;
  try {
    // Validate up front so bad command-line values get a clear message.
    rs::detail::require_positive("select_gather_demo", "batch", batch);
    rs::policies::keep_count(kTokens, keep_ratio, 1);
  } catch (const std::exception& e) {
    fmt::print(stderr, "{}\nusage: {} [batch>0] [keep_ratio in (0,1]]\n", e.what(), argv[0]);
    return 2;
  }

  fmt::print("repshift demo: score -> select -> gather on a DeiT-S-shaped batch [{}, {}, {}], keep {:.0f}%\n",
             batch, kTokens, kChannels, keep_ratio * 100);
  std::mt19937 gen(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> before(std::size_t(batch) * kTokens * kChannels), after(before.size());
  for (int b = 0; b < batch; ++b) {
    for (int n = 0; n < kTokens; ++n) {
      // Object patches shift ~3x more than background; the CLS token barely.
      const float shift = n == 0 ? 0.05f : (on_object(b, n - 1) ? 0.9f : 0.3f);
      for (int c = 0; c < kChannels; ++c) {
        const std::size_t i = (std::size_t(b) * kTokens + n) * kChannels + c;
        before[i] = normal(gen);
        after[i] = before[i] + shift * normal(gen);
      }
    }
  }
  run<rs::policies::L2>(batch, keep_ratio, before, after);
  run<rs::policies::L1>(batch, keep_ratio, before, after);
  run<rs::policies::Cosine>(batch, keep_ratio, before, after);
  return 0;
}
