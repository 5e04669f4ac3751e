#pragma once
// Naive double-precision Mamba / Vim blocks and model on top of
// reference_scan.hpp; the backward branch done the way Vim writes it (flip,
// run forward, flip back). Shares no code with the library.

#include <cmath>
#include <vector>

#include <repshift/blocks/ssm_weights.hpp>
#include <repshift/models/vim.hpp>

#include "reference_scan.hpp"
#include "reference_transformer.hpp"

namespace ref {

inline Mat rms_norm(const Mat& x, int rows, int c, const float* w, double eps) {
  Mat y(x.size());
  for (int r = 0; r < rows; ++r) {
    double sq = 0;
    for (int i = 0; i < c; ++i) sq += x[std::size_t(r) * c + i] * x[std::size_t(r) * c + i];
    const double inv = 1.0 / std::sqrt(sq / c + eps);
    for (int i = 0; i < c; ++i) y[std::size_t(r) * c + i] = x[std::size_t(r) * c + i] * inv * w[i];
  }
  return y;
}

// One scan branch of the mixer on the x part of in_proj, forward order.
inline Mat scan_branch(const Mat& xin, const Mat& z, int batch, int length, const repshift::SsmBlockWeights& w,
                       const repshift::ScanBranchWeights& s) {
  const int I = int(w.inner), N = int(w.state), R = int(w.dt_rank), width = R + 2 * N, rows = batch * length;
  const Mat u = conv_silu(xin, batch, length, I, s.conv_weight, s.conv_bias, int(w.conv_kernel));
  const Mat proj = linear(u, rows, I, s.x_proj_weight, nullptr, width);
  Mat dtr(std::size_t(rows) * R), B(std::size_t(rows) * N), C(std::size_t(rows) * N);
  for (int r = 0; r < rows; ++r) {
    for (int j = 0; j < R; ++j) dtr[std::size_t(r) * R + j] = proj[std::size_t(r) * width + j];
    for (int j = 0; j < N; ++j) {
      B[std::size_t(r) * N + j] = proj[std::size_t(r) * width + R + j];
      C[std::size_t(r) * N + j] = proj[std::size_t(r) * width + R + N + j];
    }
  }
  const Mat dt = linear(dtr, rows, R, s.dt_proj_weight, nullptr, I);
  return scan(u, dt, s.dt_proj_bias, s.A_log, B, C, s.D, &z, batch, length, I, N);
}

struct SsmResult {
  Mat y;                       // [batch * tokens, dim], unpruned
  std::vector<double> scores;  // D(y, x) per token
};

// y = x + out_proj(mix(RMSNorm x)); bidirectional as Vim: flip, scan, flip back.
inline SsmResult ssm_block(const Mat& x, int batch, int tokens, const repshift::SsmBlockWeights& w, Metric metric) {
  const int C = int(w.dim), I = int(w.inner), rows = batch * tokens;
  const Mat h = rms_norm(x, rows, C, w.norm_weight, w.norm_eps);
  const Mat xz = linear(h, rows, C, w.in_proj_weight, nullptr, 2 * I);
  Mat xin(std::size_t(rows) * I), z(std::size_t(rows) * I);
  for (int r = 0; r < rows; ++r)
    for (int i = 0; i < I; ++i) {
      xin[std::size_t(r) * I + i] = xz[std::size_t(r) * 2 * I + i];
      z[std::size_t(r) * I + i] = xz[std::size_t(r) * 2 * I + I + i];
    }
  Mat mix = scan_branch(xin, z, batch, tokens, w, w.forward);
  if (w.bidirectional()) {
    const Mat back = flip(scan_branch(flip(xin, batch, tokens, I), flip(z, batch, tokens, I), batch, tokens, w, w.backward),
                          batch, tokens, I);
    for (std::size_t i = 0; i < mix.size(); ++i) mix[i] = (mix[i] + back[i]) / 2;
  }
  const Mat out = linear(mix, rows, I, w.out_proj_weight, nullptr, C);
  SsmResult res;
  res.y.resize(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) res.y[i] = x[i] + out[i];
  for (int r = 0; r < rows; ++r)
    res.scores.push_back(score(metric, &res.y[std::size_t(r) * C], &x[std::size_t(r) * C], C));
  return res;
}

// Vim forward with the library's kept indices injected at the pruning
// layers (trace.keep_idx, in order); the class token's position is followed
// through them.
inline Mat vim(const repshift::VimWeights& w, const std::vector<float>& images, int batch,
               const std::vector<int>& pruning_layers, const std::vector<std::vector<int>>& keep_idx,
               std::vector<std::vector<int>>* cls_positions = nullptr,
               std::vector<std::vector<double>>* layer_scores = nullptr) {
  const auto& cfg = w.config;
  const int C = cfg.dim, g = cfg.grid(), ps = cfg.patch_size, N = cfg.tokens(), img = cfg.image_size;
  const int cls = cfg.cls_index();
  Mat x(std::size_t(batch) * N * C);
  for (int b = 0; b < batch; ++b)
    for (int n = 0; n < N; ++n)
      for (int o = 0; o < C; ++o) {
        double v = w.pos_embed[std::size_t(n) * C + o];
        if (n == cls) {
          v += w.cls_token[std::size_t(o)];
        } else {
          const int p = n < cls ? n : n - 1, py = p / g, px = p % g;
          v += w.patch_b[std::size_t(o)];
          for (int c = 0; c < cfg.in_chans; ++c)
            for (int ky = 0; ky < ps; ++ky)
              for (int kx = 0; kx < ps; ++kx)
                v += double(w.patch_w[((std::size_t(o) * cfg.in_chans + c) * ps + ky) * ps + kx]) *
                     images[((std::size_t(b) * cfg.in_chans + c) * img + py * ps + ky) * img + px * ps + kx];
        }
        x[(std::size_t(b) * N + n) * C + o] = v;
      }
  std::vector<int> cls_pos(std::size_t(batch), cls);
  int tokens = N;
  std::size_t next = 0;
  for (int l = 0; l < cfg.depth; ++l) {
    SsmResult r = ssm_block(x, batch, tokens, w.block(l), Metric::L2);
    x = std::move(r.y);
    if (next < pruning_layers.size() && pruning_layers[next] == l) {
      if (layer_scores) layer_scores->push_back(r.scores);  // [batch, tokens] entering the cut
      const std::vector<int>& idx = keep_idx[next++];
      const int keep = int(idx.size()) / batch;
      x = gather_rows(x, batch, tokens, C, idx, keep);
      for (int b = 0; b < batch; ++b) {
        int pos = -1;
        for (int k = 0; k < keep; ++k)
          if (idx[std::size_t(b) * keep + k] == cls_pos[std::size_t(b)]) pos = k;
        cls_pos[std::size_t(b)] = pos;  // -1 if the class token was dropped
      }
      if (cls_positions) cls_positions->push_back(cls_pos);
      tokens = keep;
    }
  }
  Mat pooled(std::size_t(batch) * C);
  for (int b = 0; b < batch; ++b)
    for (int c = 0; c < C; ++c)
      pooled[std::size_t(b) * C + c] = x[(std::size_t(b) * tokens + std::max(cls_pos[std::size_t(b)], 0)) * C + c];
  pooled = rms_norm(pooled, batch, C, w.norm_f_w.data(), cfg.eps);
  return linear(pooled, batch, C, w.head_w.data(), w.head_b.data(), cfg.num_classes);
}

}  // namespace ref
