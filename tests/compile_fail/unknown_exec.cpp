#include <repshift/repshift.hpp>
struct MyAccelerator {};
int main() {
  float a[6] = {}, b[6] = {}, s[2];
  repshift::shift_score<repshift::policies::L2>(MyAccelerator{}, a, b, s, 1, 2, 3);
}
