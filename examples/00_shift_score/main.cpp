// 00_shift_score: score, select and gather a small batch with each of the
// three metrics and check every result against a naive double-precision
// loop written here. Prints PASS or FAIL per metric; exits non-zero on FAIL.

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

#include <fmt/format.h>

#include <repshift/repshift.hpp>

namespace rs = repshift;

namespace {

constexpr int kBatch = 4, kTokens = 65, kChannels = 96, kKeep = 40, kProtect = 1;

double naive_score(const char* metric, const float* a, const float* b) {
  double l1 = 0, sq = 0, dot = 0, aa = 0, bb = 0;
  for (int c = 0; c < kChannels; ++c) {
    l1 += std::abs(double(a[c]) - b[c]);
    sq += (double(a[c]) - b[c]) * (double(a[c]) - b[c]);
    dot += double(a[c]) * b[c];
    aa += double(a[c]) * a[c];
    bb += double(b[c]) * b[c];
  }
  if (metric[0] == 'l' && metric[1] == '1') return l1;
  if (metric[0] == 'l') return std::sqrt(sq);
  return 1.0 - dot / std::sqrt(aa * bb);
}

template <class Metric>
bool check(const std::vector<float>& before, const std::vector<float>& after) {
  std::vector<float> scores(kBatch * kTokens);
  std::vector<int> keep_idx(kBatch * kKeep);
  std::vector<float> kept(std::size_t(kBatch) * kKeep * kChannels);
  rs::shift_score<Metric>(rs::Host{}, before.data(), after.data(), scores.data(), kBatch, kTokens, kChannels);
  rs::select_top(rs::Host{}, scores.data(), keep_idx.data(), kBatch, kTokens, kKeep, kProtect);
  rs::gather_tokens(rs::Host{}, after.data(), keep_idx.data(), kept.data(), kBatch, kTokens, kKeep, kChannels);

  bool ok = true;
  double worst = 0;
  for (int b = 0; b < kBatch; ++b) {
    std::vector<double> ref(kTokens);
    for (int n = 0; n < kTokens; ++n) {
      const std::size_t row = std::size_t(b) * kTokens + n;
      ref[n] = naive_score(Metric::name, &after[row * kChannels], &before[row * kChannels]);
      worst = std::max(worst, std::abs(ref[n] - scores[row]) / (1.0 + std::abs(ref[n])));
    }
    // Reference selection: CLS, then the best kKeep-1 others by score (the
    // random data has no ties), ascending.
    std::vector<int> order(kTokens - kProtect);
    std::iota(order.begin(), order.end(), kProtect);
    std::sort(order.begin(), order.end(), [&](int i, int j) { return ref[i] > ref[j]; });
    std::vector<int> expect(order.begin(), order.begin() + (kKeep - kProtect));
    expect.push_back(0);
    std::sort(expect.begin(), expect.end());
    for (int k = 0; k < kKeep; ++k) {
      ok &= keep_idx[b * kKeep + k] == expect[k];
      for (int c = 0; c < kChannels; ++c) {
        ok &= kept[(std::size_t(b) * kKeep + k) * kChannels + c] ==
              after[(std::size_t(b) * kTokens + expect[k]) * kChannels + c];
      }
    }
  }
  ok &= worst < 1e-5;
  fmt::print("{:<7} scores max rel err {:.2e}, selection + gather {}: {}\n", Metric::name, worst,
             ok ? "identical" : "differ", ok ? "PASS" : "FAIL");
  return ok;
}

}  // namespace

int main() {
  std::mt19937 gen(2025);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> before(std::size_t(kBatch) * kTokens * kChannels), after(before.size());
  for (std::size_t i = 0; i < before.size(); ++i) {
    before[i] = normal(gen);
    after[i] = before[i] + 0.5f * normal(gen);
  }
  bool ok = check<rs::policies::L1>(before, after);
  ok &= check<rs::policies::L2>(before, after);
  ok &= check<rs::policies::Cosine>(before, after);
  return ok ? 0 : 1;
}
