// The README's C++ blocks, verbatim (tests/docs/check_snippets.py checks
// that each README block appears in this file): compiled with the tests, so
// the code the README shows is code that builds against today's API.

#include <repshift/models/resnet.hpp>
#include <repshift/models/vim.hpp>
#include <repshift/models/vit.hpp>
#include <repshift/repshift.hpp>

namespace rs = repshift;
namespace P = rs::policies;

// The entry points, as README "The three entry points" shows them.
[[maybe_unused]] static void readme_entry_points(const float* before, const float* after, float* scores, int* keep_idx,
                                                 const float* x, float* out, int B, int N, int C) {
// [snippet]

// s[b,n] = Metric(after[b,n,:], before[b,n,:])         T = float, rs::bf16, rs::half
rs::shift_score<rs::policies::L2>(rs::Host{}, before, after, scores, B, N, C);

// keep_idx[b, 0..keep): the `keep` best tokens of sample b, tokens [0, protect)
// always included (CLS), ascending index order, ties to the lower index
const int keep = rs::policies::keep_count(N, 0.8, /*protect=*/1);   // floor(0.8 N)
rs::select_top(rs::Host{}, scores, keep_idx, B, N, keep, /*protect=*/1);

// out[b,k,:] = x[b, keep_idx[b,k], :]
rs::gather_tokens(rs::Host{}, x, keep_idx, out, B, N, keep, C);
// [/snippet]
// [snippet]
rs::shift_score<rs::policies::Cosine>(rs::Host{}, rs::make_view(before, {B, N, C}),
                                      rs::make_view(after, {B, N, C}), rs::make_view(scores, {B, N}));
// [/snippet]
}

// One example per backbone.
[[maybe_unused]] static void readme_tour(const float* images, int batch, float* logits) {
// [snippet]

// DeiT-S pruned by the paper's schedule (r = 0.2 at blocks 0, 3, 6: 197 -> 158 -> 127 -> 102 tokens).
rs::VisionTransformer<P::Mlp, P::L2> deit(rs::ViTWeights::random(rs::ViTConfig::deit_small(), 0));
deit.forward(rs::Host{}, images, batch, logits, rs::PruneSchedule::paper());

// Vim-T: order-preserving pruning that keeps the class token wherever it is.
rs::VisionMamba<P::L2> vim(rs::VimWeights::random(rs::VimConfig::vim_tiny(), 0));
vim.forward(rs::Host{}, images, batch, logits, rs::vim_schedule());

// ResNet-50: whole rows and columns of the feature maps removed after stages 1 and 2.
rs::ResNet<P::L2> resnet(rs::ResNetWeights::random(rs::ResNetConfig::resnet50(), 0));
resnet.forward(rs::Host{}, images, batch, logits, rs::LinePruneSchedule::paper());
// [/snippet]
}
