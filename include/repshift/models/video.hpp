#pragma once
// VideoTransformer: a UMT / VideoMAE-style video encoder. It is the ViT of
// models/vit.hpp (the same Block, layer loop, policies and executors) with
// a video config, ViTConfig::umt_base(frames, tubelet) / umt_large:
//   input     [batch, 3, frames, 224, 224] (T, on CUDA a device pointer);
//   tokens    one per tubelet x 16 x 16 cube, in (tube, row, column) order:
//             12 frames, tubelet 1 -> 12 x 196 = 2352; joint space-time
//             attention over all of them; no class token;
//   positions VideoMAE's fixed sinusoid table (computed, not in files);
//   head      logits = head(fc_norm(mean of the tokens)).
//
// Tensor names (safetensors, UMT's / VideoMAE's modeling_finetune):
//   patch_embed.proj.weight [dim, 3, tubelet, 16, 16], patch_embed.proj.bias,
//   blocks.{i}.norm1.{weight,bias}, blocks.{i}.attn.qkv.weight [3 dim, dim],
//   blocks.{i}.attn.q_bias, blocks.{i}.attn.v_bias [dim] (no k bias),
//   blocks.{i}.attn.proj.{weight,bias}, blocks.{i}.norm2.{weight,bias},
//   blocks.{i}.mlp.fc1.{weight,bias}, blocks.{i}.mlp.fc2.{weight,bias},
//   fc_norm.{weight,bias}, head.{weight,bias}.
//
// The paper's video schedules: PruneSchedule::video_retrieval() (r = 0.2 at
// blocks 0, 1, 2) and video_qa(depth) (r = 0.1 at every block).
//
//   rs::VideoTransformer<> umt(rs::ViTWeights::load(rs::ViTConfig::umt_base(12), file));
//   umt.forward(rs::Host{}, clips, batch, logits, rs::PruneSchedule::video_retrieval());

#include "vit.hpp"

namespace repshift {

// The CPU model, f32 (the CUDA one: rs::cuda::VideoTransformer<T, ...>).
template <class Site = policies::Mlp, class Importance = policies::L2, class Compress = policies::Prune>
using VideoTransformer = BasicVisionTransformer<Host, float, Site, Importance, Compress>;

}  // namespace repshift
