#include <repshift/repshift.hpp>
struct NotAMetric {};
int main() {
  float a[6] = {}, b[6] = {}, s[2];
  repshift::shift_score<NotAMetric>(repshift::Host{}, a, b, s, 1, 2, 3);
}
