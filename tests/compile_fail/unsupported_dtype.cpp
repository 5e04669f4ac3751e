#include <repshift/repshift.hpp>
int main() {
  double a[6] = {}, b[6] = {};
  float s[2];
  repshift::shift_score<repshift::policies::L2>(repshift::Host{}, a, b, s, 1, 2, 3);
}
