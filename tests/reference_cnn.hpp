#pragma once
// Naive double-precision ResNet pieces: direct 7-loop convolution, the
// bottleneck, per-pixel shift with row / column means, line removal, and
// a whole ResNet with the library's kept lines injected. Shares no code
// with the library.

#include <algorithm>
#include <cmath>
#include <vector>

#include <repshift/models/resnet.hpp>

#include "reference.hpp"

namespace ref {

using Map = std::vector<double>;  // [B, C, H, W]

inline Map conv(const Map& x, int batch, int cin, int h, int w, const float* weight, const float* bias, int cout,
                int k, int stride, int pad, bool relu) {
  const int ho = (h + 2 * pad - k) / stride + 1, wo = (w + 2 * pad - k) / stride + 1;
  Map y(std::size_t(batch) * cout * ho * wo);
  for (int b = 0; b < batch; ++b)
    for (int o = 0; o < cout; ++o)
      for (int oy = 0; oy < ho; ++oy)
        for (int ox = 0; ox < wo; ++ox) {
          double s = bias ? bias[o] : 0.0;
          for (int c = 0; c < cin; ++c)
            for (int ky = 0; ky < k; ++ky)
              for (int kx = 0; kx < k; ++kx) {
                const int iy = oy * stride - pad + ky, ix = ox * stride - pad + kx;
                if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                s += double(weight[((std::size_t(o) * cin + c) * k + ky) * k + kx]) *
                     x[((std::size_t(b) * cin + c) * h + iy) * w + ix];
              }
          y[((std::size_t(b) * cout + o) * ho + oy) * wo + ox] = relu ? std::max(s, 0.0) : s;
        }
  return y;
}

struct LineScores {
  std::vector<double> rows, cols;  // [B, H], [B, W]
};

inline LineScores line_scores(Metric m, const Map& after, const Map& before, int batch, int c, int h, int w) {
  LineScores r{std::vector<double>(std::size_t(batch) * h, 0.0), std::vector<double>(std::size_t(batch) * w, 0.0)};
  std::vector<double> a(static_cast<std::size_t>(c)), bf(static_cast<std::size_t>(c));
  for (int b = 0; b < batch; ++b)
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) {
        for (int ch = 0; ch < c; ++ch) {
          const std::size_t i = ((std::size_t(b) * c + ch) * h + y) * w + x;
          a[std::size_t(ch)] = after[i];
          bf[std::size_t(ch)] = before[i];
        }
        const double s = score(m, a.data(), bf.data(), c);
        r.rows[std::size_t(b) * h + y] += s / w;
        r.cols[std::size_t(b) * w + x] += s / h;
      }
  return r;
}

inline Map remove_lines(const Map& x, int batch, int c, int h, int w, const std::vector<int>& rows,
                        const std::vector<int>& cols, int kr, int kc) {
  Map y;
  for (int b = 0; b < batch; ++b)
    for (int ch = 0; ch < c; ++ch)
      for (int i = 0; i < kr; ++i)
        for (int j = 0; j < kc; ++j)
          y.push_back(x[((std::size_t(b) * c + ch) * h + rows[std::size_t(b) * kr + i]) * w +
                        cols[std::size_t(b) * kc + j]]);
  return y;
}

// The bottleneck, unpruned: y = ReLU(conv3(ReLU(conv2(ReLU(conv1 x)))) + shortcut).
inline Map bottleneck(const Map& x, int batch, int h, int w, const repshift::BottleneckWeights& bw) {
  const int in = int(bw.in_channels), mid = int(bw.mid_channels), out = int(bw.out_channels), s = int(bw.stride);
  const Map t1 = conv(x, batch, in, h, w, bw.conv1_weight, bw.conv1_bias, mid, 1, 1, 0, true);
  const Map t2 = conv(t1, batch, mid, h, w, bw.conv2_weight, bw.conv2_bias, mid, 3, s, 1, true);
  const int ho = (h + 2 - 3) / s + 1, wo = (w + 2 - 3) / s + 1;
  Map y = conv(t2, batch, mid, ho, wo, bw.conv3_weight, bw.conv3_bias, out, 1, 1, 0, false);
  const Map sc = bw.down_weight ? conv(x, batch, in, h, w, bw.down_weight, bw.down_bias, out, 1, s, 0, false) : x;
  for (std::size_t i = 0; i < y.size(); ++i) y[i] = std::max(y[i] + sc[i], 0.0);
  return y;
}

// A whole ResNet with the library's kept rows / columns injected after the
// stages the schedule names (trace order), so a near-tie the float path
// breaks the other way cannot derail the comparison. scores, when given,
// receives each such step's own line scores (L2 shift of the stage's last
// block, in double), against which the test judges the library's choice.
inline std::vector<double> resnet(const repshift::ResNetWeights& wts, const std::vector<float>& images, int batch,
                                  const repshift::LinePruneSchedule& schedule,
                                  const std::vector<std::vector<int>>& kept_rows,
                                  const std::vector<std::vector<int>>& kept_cols,
                                  std::vector<LineScores>* scores = nullptr) {
  const auto& cfg = wts.config;
  Map x(images.begin(), images.end());
  int size = cfg.image_size;
  x = conv(x, batch, cfg.in_chans, size, size, wts.stem.weight.data(), wts.stem.bias.data(), cfg.stem_channels, 7, 2,
           3, true);
  size = (size + 6 - 7) / 2 + 1;
  const int pooled = (size + 2 - 3) / 2 + 1;
  Map p(std::size_t(batch) * cfg.stem_channels * pooled * pooled, -INFINITY);
  for (int bc = 0; bc < batch * cfg.stem_channels; ++bc)
    for (int oy = 0; oy < pooled; ++oy)
      for (int ox = 0; ox < pooled; ++ox)
        for (int ky = 0; ky < 3; ++ky)
          for (int kx = 0; kx < 3; ++kx) {
            const int iy = oy * 2 - 1 + ky, ix = ox * 2 - 1 + kx;
            if (iy < 0 || iy >= size || ix < 0 || ix >= size) continue;
            double& dst = p[(std::size_t(bc) * pooled + oy) * pooled + ox];
            const double v = x[(std::size_t(bc) * size + iy) * size + ix];
            dst = (v > dst || v != v) ? v : dst;  // NaN wins, as torch's max_pool2d
          }
  x = std::move(p);
  size = pooled;
  std::size_t step = 0;
  for (int s = 0; s < 4; ++s)
    for (int i = 0; i < cfg.blocks[std::size_t(s)]; ++i) {
      const auto bw = wts.block(s, i);
      const bool prunes = i + 1 == cfg.blocks[std::size_t(s)] && schedule.at(s + 1);
      const Map before = prunes ? x : Map{};
      x = bottleneck(x, batch, size, size, bw);
      size = (size + 2 - 3) / int(bw.stride) + 1;
      if (prunes) {
        if (scores) scores->push_back(line_scores(Metric::L2, x, before, batch, int(bw.out_channels), size, size));
        const int kept = size - schedule.at(s + 1)->rows;
        x = remove_lines(x, batch, int(bw.out_channels), size, size, kept_rows[step], kept_cols[step], kept, kept);
        ++step;
        size = kept;
      }
    }
  const int C = cfg.out_channels(3);
  std::vector<double> logits(std::size_t(batch) * cfg.num_classes);
  for (int b = 0; b < batch; ++b)
    for (int k = 0; k < cfg.num_classes; ++k) {
      double s = wts.fc_b[std::size_t(k)];
      for (int c = 0; c < C; ++c) {
        double mean = 0;
        for (int i = 0; i < size * size; ++i) mean += x[(std::size_t(b) * C + c) * size * size + i];
        s += wts.fc_w[std::size_t(k) * C + c] * mean / (size * size);
      }
      logits[std::size_t(b) * cfg.num_classes + k] = s;
    }
  return logits;
}

}  // namespace ref
