// An unknown executor on an entry point without a Metric: the same one error.
#include <repshift/repshift.hpp>
struct MyAccelerator {};
int main() {
  float scores[4] = {};
  int keep_idx[2];
  repshift::select_top(MyAccelerator{}, scores, keep_idx, 1, 4, 2);
}
