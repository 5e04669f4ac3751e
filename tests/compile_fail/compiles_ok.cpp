#include <repshift/repshift.hpp>
int main() {
  float a[6] = {}, b[6] = {}, s[2];
  repshift::shift_score<repshift::policies::L2>(repshift::Host{}, a, b, s, 1, 2, 3);
}
