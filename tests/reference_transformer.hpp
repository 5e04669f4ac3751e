#pragma once
// Naive double-precision transformer block and ViT: materialised softmax
// attention, exact erf GELU, two-pass LayerNorm, plain triple loops. Shares
// no code with the library.

#include <cmath>
#include <vector>

#include "reference.hpp"

namespace ref {

using Mat = std::vector<double>;  // row-major [rows, cols]

inline Mat linear(const Mat& x, int rows, int in, const float* w, const float* b, int out) {
  Mat y(std::size_t(rows) * out);
  for (int r = 0; r < rows; ++r)
    for (int o = 0; o < out; ++o) {
      double s = b ? b[o] : 0.0;
      for (int i = 0; i < in; ++i) s += x[std::size_t(r) * in + i] * double(w[std::size_t(o) * in + i]);
      y[std::size_t(r) * out + o] = s;
    }
  return y;
}

inline Mat layer_norm(const Mat& x, int rows, int c, const float* g, const float* b, double eps) {
  Mat y(x.size());
  for (int r = 0; r < rows; ++r) {
    double mean = 0, var = 0;
    for (int i = 0; i < c; ++i) mean += x[std::size_t(r) * c + i];
    mean /= c;
    for (int i = 0; i < c; ++i) var += (x[std::size_t(r) * c + i] - mean) * (x[std::size_t(r) * c + i] - mean);
    var /= c;
    for (int i = 0; i < c; ++i)
      y[std::size_t(r) * c + i] = (x[std::size_t(r) * c + i] - mean) / std::sqrt(var + eps) * g[i] + b[i];
  }
  return y;
}

inline double gelu(double x) { return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0))); }

// qkv: [B*N, 3C] with bias applied; returns [B*N, C]; probs (optional)
// receives [B, H, N, N]; key_bias (optional, [B*N]) is added to the
// scaled logits of each key.
inline Mat attention(const Mat& qkv, int batch, int tokens, int heads, int head_dim,
                     std::vector<double>* probs = nullptr, const std::vector<double>* key_bias = nullptr) {
  const int c = heads * head_dim;
  Mat out(std::size_t(batch) * tokens * c, 0.0);
  if (probs) probs->assign(std::size_t(batch) * heads * tokens * tokens, 0.0);
  const double scale = 1.0 / std::sqrt(double(head_dim));
  std::vector<double> s(tokens);
  for (int b = 0; b < batch; ++b)
    for (int h = 0; h < heads; ++h)
      for (int i = 0; i < tokens; ++i) {
        const double* q = &qkv[(std::size_t(b) * tokens + i) * 3 * c + h * head_dim];
        double mx = -INFINITY;
        for (int j = 0; j < tokens; ++j) {
          const double* k = &qkv[(std::size_t(b) * tokens + j) * 3 * c + c + h * head_dim];
          double d = 0;
          for (int e = 0; e < head_dim; ++e) d += q[e] * k[e];
          s[j] = d * scale + (key_bias ? (*key_bias)[std::size_t(b) * tokens + j] : 0.0);
          mx = std::max(mx, s[j]);
        }
        double sum = 0;
        for (int j = 0; j < tokens; ++j) sum += (s[j] = std::exp(s[j] - mx));
        for (int j = 0; j < tokens; ++j) {
          const double p = s[j] / sum;
          if (probs) (*probs)[((std::size_t(b) * heads + h) * tokens + i) * tokens + j] = p;
          const double* v = &qkv[(std::size_t(b) * tokens + j) * 3 * c + 2 * c + h * head_dim];
          for (int e = 0; e < head_dim; ++e) out[(std::size_t(b) * tokens + i) * c + h * head_dim + e] += p * v[e];
        }
      }
  return out;
}

// ToMe-style merge, spelled out: A = protect, protect + 2, ...; B = the
// others after the prefix; the (tokens - keep) A tokens with the lowest
// score (NaN lowest, ties: the higher index merges first, i.e. the lower
// index survives) each join the B token whose key has the highest cosine
// (first on ties); rows average weighted by size. keys: [B*N, ck].
struct MergeResult {
  Mat rows;                    // [B * keep, c]
  std::vector<int> keep_idx;   // [B * keep]
  std::vector<double> sizes;   // [B * keep]
};

inline MergeResult merge(const Mat& x, const Mat& keys, const std::vector<double>& scores,
                         const std::vector<double>& sizes, int batch, int tokens, int c, int ck, int keep,
                         int protect) {
  MergeResult res;
  for (int b = 0; b < batch; ++b) {
    auto key = [&](int t) { return &keys[(std::size_t(b) * tokens + t) * ck]; };
    auto norm = [&](int t) {
      double s = 0;
      for (int i = 0; i < ck; ++i) s += key(t)[i] * key(t)[i];
      return std::sqrt(s);
    };
    auto score_of = [&](int t) { return scores[std::size_t(b) * tokens + t]; };
    // "a merges before a2": lower score, NaN lowest; equal -> higher index first.
    auto merges_before = [&](int a, int a2) {
      const double s1 = score_of(a), s2 = score_of(a2);
      if (std::isnan(s1) != std::isnan(s2)) return std::isnan(s1);
      if (!std::isnan(s1) && s1 != s2) return s1 < s2;
      return a > a2;
    };
    std::vector<int> set_a;
    for (int t = protect; t < tokens; t += 2) set_a.push_back(t);
    std::sort(set_a.begin(), set_a.end(), merges_before);
    std::vector<int> target(static_cast<std::size_t>(tokens));
    for (int t = 0; t < tokens; ++t) target[std::size_t(t)] = t;
    for (int m = 0; m < tokens - keep; ++m) {
      const int a = set_a[std::size_t(m)];
      int best = -1;
      double best_sim = -INFINITY;
      for (int t = protect + 1; t < tokens; t += 2) {
        double dot = 0;
        for (int i = 0; i < ck; ++i) dot += key(a)[i] * key(t)[i];
        const double na = norm(a), nt = norm(t);
        const double sim = na > 0 && nt > 0 ? dot / (na * nt) : 0.0;
        if (best < 0 || sim > best_sim) best = t, best_sim = sim;
      }
      target[std::size_t(a)] = best;
    }
    for (int t = 0; t < tokens; ++t) {
      if (target[std::size_t(t)] != t) continue;
      res.keep_idx.push_back(t);
      std::vector<double> acc(std::size_t(c), 0.0);
      double total = 0;
      for (int u = 0; u < tokens; ++u) {
        if (target[std::size_t(u)] != t) continue;
        const double w = sizes.empty() ? 1.0 : sizes[std::size_t(b) * tokens + u];
        total += w;
        for (int i = 0; i < c; ++i) acc[std::size_t(i)] += w * x[(std::size_t(b) * tokens + u) * c + i];
      }
      for (int i = 0; i < c; ++i) res.rows.push_back(acc[std::size_t(i)] / total);
      res.sizes.push_back(total);
    }
  }
  return res;
}

// Merge inside a reference block: input sizes (empty: all 1) and protect
// in, the merge's kept indices and sizes out.
struct MergeSpec {
  std::vector<double> sizes;
  int protect = 1;
  std::vector<int> keep_idx;
  std::vector<double> out_sizes;
};

// AttentionUpdate / MlpUpdate: the residual-update reading, D(x + F(x), x)
// (post-norm: before the LayerNorm).
enum class Site { Attention, Mlp, Block, AttentionUpdate, MlpUpdate };

struct BlockWeights {
  int dim, heads, hidden;
  double eps;
  const float *n1w, *n1b, *qkvw, *qkvb, *projw, *projb, *n2w, *n2b, *fc1w, *fc1b, *fc2w, *fc2b;
};

struct BlockResult {
  Mat y;                       // [B * tokens_out, C]
  std::vector<double> scores;  // [B * N] at the site
};

// Rows idx of each sample; with `fuse` (weights = the samples' scores),
// one more row: the dropped rows' score-weighted mean (EViT fusion).
inline Mat gather_rows(const Mat& x, int batch, int tokens, int c, const std::vector<int>& idx, int keep,
                       const std::vector<double>* fuse_weights = nullptr) {
  const int out_tokens = keep + (fuse_weights ? 1 : 0);
  Mat out(std::size_t(batch) * out_tokens * c, 0.0);
  for (int b = 0; b < batch; ++b) {
    std::vector<bool> kept(std::size_t(tokens), false);
    for (int k = 0; k < keep; ++k) {
      const int t = idx[std::size_t(b) * keep + k];
      kept[std::size_t(t)] = true;
      for (int i = 0; i < c; ++i) out[(std::size_t(b) * out_tokens + k) * c + i] = x[(std::size_t(b) * tokens + t) * c + i];
    }
    if (!fuse_weights) continue;
    double total = 0;
    for (int t = 0; t < tokens; ++t)
      if (!kept[std::size_t(t)]) total += (*fuse_weights)[std::size_t(b) * tokens + t];
    for (int t = 0; t < tokens; ++t)
      if (!kept[std::size_t(t)])
        for (int i = 0; i < c; ++i)
          out[(std::size_t(b) * out_tokens + keep) * c + i] +=
              (*fuse_weights)[std::size_t(b) * tokens + t] / total * x[(std::size_t(b) * tokens + t) * c + i];
  }
  return out;
}

// A block on x [B*N, C]; prunes with the given kept indices (keep_idx
// empty: no pruning) at the site's pruning point.
// cls_attention (optional): receives mean over heads of the attention
// map's CLS row, [B * N]; attention_received (optional): the mean over heads
// and queries of each key's column.
inline BlockResult block(const Mat& x, int batch, int tokens, const BlockWeights& w, bool post_norm, Site site,
                         Metric metric, const std::vector<int>& keep_idx, int keep,
                         std::vector<double>* cls_attention = nullptr, bool fuse = false,
                         MergeSpec* merge_spec = nullptr, std::vector<double>* attention_received = nullptr) {
  const int c = w.dim, rows = batch * tokens;
  BlockResult res;
  res.scores.resize(rows);
  Mat h = post_norm ? x : layer_norm(x, rows, c, w.n1w, w.n1b, w.eps);
  Mat qkv = linear(h, rows, c, w.qkvw, w.qkvb, 3 * c);
  std::vector<double> probs;
  std::vector<double> log_sizes;
  if (merge_spec && !merge_spec->sizes.empty())
    for (double sz : merge_spec->sizes) log_sizes.push_back(std::log(sz));
  Mat a = linear(attention(qkv, batch, tokens, w.heads, c / w.heads, &probs, log_sizes.empty() ? nullptr : &log_sizes),
                 rows, c, w.projw, w.projb, c);
  // The keys the merge matches on: qkv's K part.
  Mat keys(std::size_t(rows) * c);
  for (int r = 0; r < rows; ++r)
    for (int i = 0; i < c; ++i) keys[std::size_t(r) * c + i] = qkv[std::size_t(r) * 3 * c + c + i];
  auto compress = [&](const Mat& rows_in) {
    if (!merge_spec) return gather_rows(rows_in, batch, tokens, c, keep_idx, keep, fuse ? &res.scores : nullptr);
    MergeResult m = merge(rows_in, keys, res.scores, merge_spec->sizes, batch, tokens, c, c, keep, merge_spec->protect);
    merge_spec->keep_idx = m.keep_idx;
    merge_spec->out_sizes = m.sizes;
    return m.rows;
  };
  if (cls_attention) {
    cls_attention->assign(std::size_t(rows), 0.0);
    for (int b = 0; b < batch; ++b)
      for (int h = 0; h < w.heads; ++h)
        for (int t = 0; t < tokens; ++t)
          (*cls_attention)[std::size_t(b) * tokens + t] +=
              probs[((std::size_t(b) * w.heads + h) * tokens + 0) * tokens + t] / w.heads;
  }
  if (attention_received) {
    attention_received->assign(std::size_t(rows), 0.0);
    for (int b = 0; b < batch; ++b)
      for (int h = 0; h < w.heads; ++h)
        for (int q = 0; q < tokens; ++q)
          for (int t = 0; t < tokens; ++t)
            (*attention_received)[std::size_t(b) * tokens + t] +=
                probs[((std::size_t(b) * w.heads + h) * tokens + q) * tokens + t] / (double(w.heads) * tokens);
  }
  Mat x1(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) x1[i] = x[i] + a[i];
  if (site == Site::AttentionUpdate)
    for (int r = 0; r < rows; ++r) res.scores[r] = score(metric, &x1[std::size_t(r) * c], &x[std::size_t(r) * c], c);
  if (post_norm) x1 = layer_norm(x1, rows, c, w.n1w, w.n1b, w.eps);
  const bool attention_site = site == Site::Attention || site == Site::AttentionUpdate;
  if (site == Site::Attention)
    for (int r = 0; r < rows; ++r) res.scores[r] = score(metric, &a[std::size_t(r) * c], &x[std::size_t(r) * c], c);

  int t = tokens;
  Mat xin = x;
  const bool compresses = merge_spec ? keep < tokens : !keep_idx.empty();
  if (attention_site && compresses) {
    x1 = compress(x1);
    t = keep + (fuse ? 1 : 0);
  }
  const int r2 = batch * t;
  Mat m_in = post_norm ? x1 : layer_norm(x1, r2, c, w.n2w, w.n2b, w.eps);
  Mat hid = linear(m_in, r2, c, w.fc1w, w.fc1b, w.hidden);
  for (auto& v : hid) v = gelu(v);
  Mat m = linear(hid, r2, w.hidden, w.fc2w, w.fc2b, c);
  Mat y(m.size());
  for (std::size_t i = 0; i < y.size(); ++i) y[i] = x1[i] + m[i];
  if (site == Site::MlpUpdate)
    for (int r = 0; r < r2; ++r) res.scores[r] = score(metric, &y[std::size_t(r) * c], &x1[std::size_t(r) * c], c);
  if (post_norm) y = layer_norm(y, r2, c, w.n2w, w.n2b, w.eps);
  if (site == Site::Mlp)
    for (int r = 0; r < r2; ++r) res.scores[r] = score(metric, &m[std::size_t(r) * c], &x1[std::size_t(r) * c], c);
  if (site == Site::Block)
    for (int r = 0; r < r2; ++r) res.scores[r] = score(metric, &y[std::size_t(r) * c], &xin[std::size_t(r) * c], c);
  if (!attention_site && compresses) y = compress(y);
  res.y = std::move(y);
  return res;
}

}  // namespace ref
