#pragma once
// The cuDNN-backed models by their CUDA names (target repshift::cudnn):
// each is the one model template (models/*.hpp) with Exec = Cuda. Apart
// from cuda/models.cuh, which needs no cuDNN.
//
//   rs::cuda::Dnn dnn;
//   rs::cuda::Blas blas;
//   rs::cuda::ResNet<> net(rs::ResNetWeights::random(rs::ResNetConfig::resnet50(), 0), {blas, dnn});
//   net.reserve(64);
//   net.forward(rs::Cuda{stream}, d_images, 64, d_logits, rs::LinePruneSchedule::paper());

#include "../models/resnet.hpp"
#include "backend.cuh"
#include "cudnn_conv_ops.cuh"

namespace repshift {
namespace cuda {

template <class Importance = policies::L2>
using ResNet = BasicResNet<Cuda, float, Importance>;
using ResNetDeviceWeights = ResNetModelWeights<Cuda, float>;

}  // namespace cuda
}  // namespace repshift
