// The C++ blocks of docs/backbones.md, verbatim between [snippet] markers
// (tests/docs/check_snippets.py checks that each block appears here):
// compiled with the tests, so the docs show code that builds against
// today's API. The functions are never called.

#include <vector>

#include <repshift/models/resnet.hpp>
#include <repshift/models/video.hpp>
#include <repshift/models/vim.hpp>
#include <repshift/models/vit.hpp>
#include <repshift/repshift.hpp>

namespace rs = repshift;
namespace P = rs::policies;

[[maybe_unused]] static void transformer_block(const float* x, float* y, const rs::TransformerBlockWeights& weights,
                                               const float* images, int batch, float* logits) {
// [snippet]
// One block: pre-LN (ViT/DeiT) or post-LN (BERT), the shift measured at Site
// with Metric inside the residual epilogue, tokens pruned to `keep`.
using B = rs::Block<P::Transformer, P::Mlp, P::L2, P::Prune, P::PreNorm>;
rs::TransformerBlockArgs args;                 // x [B,N,C] -> y [B,keep,C]
args.x = x; args.y = y; args.batch = 8; args.tokens = 197;
args.keep = rs::policies::keep_after_drop(197, 0.2, 1); args.protect = 1;   // 158
rs::Workspace<rs::Host> ws;                    // reusable scratch; B::reserve(ws, weights, batch, tokens) sizes it once
B::forward(rs::Host{}, weights, args, ws);     // weights: rs::TransformerBlockWeights (views)

// A whole DeiT: random (timm init) or timm-named safetensors weights.
rs::VisionTransformer<P::Mlp, P::L2> deit(rs::ViTWeights::random(rs::ViTConfig::deit_small(), 0));
// rs::ViTWeights::load(rs::ViTConfig::deit_small(), rs::io::SafeTensorsFile("deit_s.safetensors"))
deit.forward(rs::Host{}, images, batch, logits, rs::PruneSchedule::paper());
// [/snippet]
}

[[maybe_unused]] static void video() {
// [snippet]
// UMT-B over 12 frames of 224x224: 12 x 196 = 2352 space-time tokens.
rs::VideoTransformer<> umt(rs::ViTWeights::random(rs::ViTConfig::umt_base(12), 0));
// rs::ViTWeights::load(rs::ViTConfig::umt_base(12), rs::io::SafeTensorsFile("umt_b.safetensors"))
std::vector<float> clips(2 * 3 * 12 * 224 * 224), logits(2 * 400);      // [B, 3, T, H, W]
umt.forward(rs::Host{}, clips.data(), 2, logits.data());                  // unpruned
rs::ViTTrace trace;
umt.forward(rs::Host{}, clips.data(), 2, logits.data(), rs::PruneSchedule::video_retrieval(), &trace);
// 2352 tokens enter block 0, 1882 block 1, 1506 block 2, 1205 blocks 3-11:
// trace.tokens; trace.keep_idx[k] [B, kept] indexes the input of block
// trace.pruned_layers[k], trace.source[k] the same tokens' original positions.
// [/snippet]
}

[[maybe_unused]] static void ssm_block(const float* x, float* y, int* cls_position, const rs::SsmBlockWeights& weights,
                                       const float* images, int batch, float* logits) {
// [snippet]
// One bidirectional Mamba block (Vim): y = x + out_proj(mix(RMSNorm x)), the
// shift D(y, x) scored in the residual epilogue that forms y; pruning keeps
// token order (the next scan needs it) and the class token wherever it is.
using B = rs::Block<P::SsmScan, P::BlockOutput, P::L2>;           // Site = BlockOutput, Prune, PreNorm
auto args = rs::SsmBlockArgs::dense(x, y, /*batch=*/8, /*tokens=*/197);
args.keep = 158;
args.keep_token = cls_position;   // int[batch]: the class token's index in, its index after pruning out
rs::Workspace<rs::Host> ws;       // rs::Workspace<rs::Cuda, float> ws(blas) + B::reserve(ws, weights, rows) on the GPU
B::forward(rs::Host{}, weights, args, ws);   // weights: rs::SsmBlockWeights (views, Vim's tensor names)

// Vim-T (24 layers, d_model 192, state 16, expand 2, patch 16, class token in the middle)
rs::VisionMamba<P::L2> vim(rs::VimWeights::random(rs::VimConfig::vim_tiny(), 0));
// rs::VimWeights::load(rs::VimConfig::vim_tiny(), rs::io::SafeTensorsFile("vim_t.safetensors"))
vim.forward(rs::Host{}, images, batch, logits, rs::vim_schedule());   // drop 0.2 at blocks 0, 6, 12
// [/snippet]
}

[[maybe_unused]] static void cnn_block(const float* x, float* y, const rs::BottleneckWeights& bottleneck_weights,
                                       const float* images, int batch, float* logits) {
// [snippet]
// One bottleneck on NCHW maps (args.layout = rs::MapLayout::Nhwc for channels last):
// y = ReLU(conv3(ReLU(conv2(ReLU(conv1 x)))) + x). Its
// residual epilogue also accumulates the per-pixel shift Metric(y[:, h, w], x[:, h, w]),
// averaged per row and column; the best keep_rows x keep_cols lines stay, densely.
using B = rs::Block<P::CnnRows, P::BlockOutput, P::L2>;
auto args = rs::CnnBlockArgs::dense(x, y, /*batch=*/8, /*height=*/56, /*width=*/56);
args.keep_rows = args.keep_cols = 48;                 // y: [8, 256, 48, 48]
rs::Workspace<rs::Host> ws;                           // reusable scratch; grows on the CPU
B::forward(rs::Host{}, bottleneck_weights, args, ws);  // rs::BottleneckWeights (BN folded)

// ResNet-50, pruned where the paper prunes: 8 + 8 lines after stage 1, 4 + 4 after stage 2.
rs::ResNet<P::L2> resnet(rs::ResNetWeights::random(rs::ResNetConfig::resnet50(), 0));
// rs::ResNetWeights::load(rs::ResNetConfig::resnet50(), rs::io::SafeTensorsFile("resnet50.safetensors"))  // torchvision names
resnet.forward(rs::Host{}, images, batch, logits, rs::LinePruneSchedule::paper());
// [/snippet]
}

[[maybe_unused]] static void packed(const int* lengths, int batch, const float* before, const float* after,
                                    float* scores, int total, int C, int* keep_idx, int max_len, int max_keep,
                                    const float* x, float* out, float* y, int* out_cu,
                                    const rs::TransformerBlockWeights& weights) {
  using B = rs::Block<P::Transformer, P::Mlp, P::L2>;
  rs::Workspace<rs::Host> ws;
// [snippet]
// Sentences of 23, 5 and 40 tokens: cu_seqlens = {0, 23, 28, 68}.
const auto cu = rs::cu_seqlens_of(lengths, batch);
const auto schedule = rs::PruneSchedule::drop({{0, 0.3}});          // each sample keeps N - floor(0.3 N)
const auto kept_cu = rs::kept_cu_seqlens(cu.data(), batch, [&](int n) { return schedule.keep_at(0, n); });
rs::shift_score_varlen<rs::policies::L2>(rs::Host{}, before, after, scores, cu.data(), batch, total, C);
rs::select_top_varlen(rs::Host{}, scores, cu.data(), kept_cu.data(), keep_idx, batch, max_len, max_keep, /*protect=*/1);
rs::gather_tokens_varlen(rs::Host{}, x, cu.data(), keep_idx, kept_cu.data(), out, batch, max_len, max_keep, C);

// The transformer Block, any policy: x packed, each sample its own keep count.
rs::TransformerBlockArgs a;
a.x = x; a.y = y; a.batch = batch; a.protect = 1;
a.cu_seqlens = cu.data(); a.kept_cu_seqlens = kept_cu.data();
a.out_cu_seqlens = out_cu;                                          // written: y's rows per sample
B::forward(rs::Host{}, weights, a, ws);
// [/snippet]
}
