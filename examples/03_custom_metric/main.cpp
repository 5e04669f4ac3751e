// 03_custom_metric: a metric is any struct with the Accum/init/accumulate/
// combine/finalize contract (policies/metric.hpp). Here: the largest
// per-channel change, L-infinity, used exactly like the built-in ones.

#include <cmath>
#include <vector>

#include <fmt/format.h>
#include <repshift/repshift.hpp>

namespace rs = repshift;

struct LInf {
  struct Accum { float max_abs; };
  static constexpr const char* name = "linf";
  static REPSHIFT_HD Accum init() { return {0.0f}; }
  static REPSHIFT_HD void accumulate(Accum& acc, float a, float b) {
    acc.max_abs = std::fmax(acc.max_abs, std::fabs(a - b));
  }
  static REPSHIFT_HD Accum combine(Accum x, Accum y) { return {std::fmax(x.max_abs, y.max_abs)}; }
  static REPSHIFT_HD float finalize(Accum acc) { return acc.max_abs; }
};
static_assert(rs::policies::is_metric_v<LInf>);

int main() {
  const int batch = 1, tokens = 4, channels = 3;
  const std::vector<float> before{0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3};
  const std::vector<float> after{0, 5, 0, 1, 1, 1.5f, 2, -2, 2, 3, 3, 3};
  std::vector<float> scores(tokens);
  rs::shift_score<LInf>(rs::Host{}, before.data(), after.data(), scores.data(), batch, tokens, channels);
  std::vector<int> keep(2);
  rs::select_top(rs::Host{}, scores.data(), keep.data(), batch, tokens, 2);
  fmt::print("linf scores: {:.1f} {:.1f} {:.1f} {:.1f}, kept tokens {} {}\n", scores[0], scores[1], scores[2],
             scores[3], keep[0], keep[1]);
  const bool ok = scores[0] == 5 && scores[1] == 0.5f && scores[2] == 4 && scores[3] == 0 &&
                  keep[0] == 0 && keep[1] == 2;
  fmt::print("{}\n", ok ? "PASS" : "FAIL");
  return ok ? 0 : 1;
}
