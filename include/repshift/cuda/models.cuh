#pragma once
// The models on the GPU by their CUDA names: each is the one model
// template (models/*.hpp) with Exec = Cuda and a storage type T (float,
// __half, __nv_bfloat16 where the model allows it).

#include "../models/vim.hpp"
#include "../models/vit.hpp"
#include "backend.cuh"

namespace repshift {
namespace cuda {

template <class T, class Site = policies::Mlp, class Metric = policies::L2, class Compress = policies::Prune>
using VisionTransformer = BasicVisionTransformer<Cuda, T, Site, Metric, Compress>;
template <class T>
using ViTDeviceWeights = ViTModelWeights<Cuda, T>;

// Vision Mamba runs in f32 (the scan's state stays f32).
template <class Metric = policies::L2>
using VisionMamba = BasicVisionMamba<Cuda, float, Metric>;
using VimDeviceWeights = VimModelWeights<Cuda, float>;

}  // namespace cuda
}  // namespace repshift
