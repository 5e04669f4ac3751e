#pragma once
// The models on the GPU by their CUDA names: each is the one model
// template (models/*.hpp) with Exec = Cuda and a storage type T (float,
// __half, __nv_bfloat16 where the model allows it).

#include "../models/bert.hpp"
#include "../models/video.hpp"
#include "../models/vim.hpp"
#include "../models/vit.hpp"
#include "backend.cuh"

namespace repshift {
namespace cuda {

template <class T, class Site = policies::Mlp, class Importance = policies::L2, class Compress = policies::Prune>
using VisionTransformer = BasicVisionTransformer<Cuda, T, Site, Importance, Compress>;
// The video encoder is the same model with a video config (models/video.hpp).
template <class T, class Site = policies::Mlp, class Importance = policies::L2, class Compress = policies::Prune>
using VideoTransformer = BasicVisionTransformer<Cuda, T, Site, Importance, Compress>;
template <class T>
using ViTDeviceWeights = ViTModelWeights<Cuda, T>;

template <class T, class Site = policies::Mlp, class Importance = policies::L2, class Compress = policies::Prune>
using BertEncoder = BasicBertEncoder<Cuda, T, Site, Importance, Compress>;
template <class T>
using BertDeviceWeights = BertModelWeights<Cuda, T>;

// Vision Mamba runs in f32 (the scan's state stays f32).
template <class Importance = policies::L2>
using VisionMamba = BasicVisionMamba<Cuda, float, Importance>;
using VimDeviceWeights = VimModelWeights<Cuda, float>;

}  // namespace cuda
}  // namespace repshift
