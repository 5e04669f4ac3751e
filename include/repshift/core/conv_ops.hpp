#pragma once
// ConvOps<Exec>: the 2-D convolutions of the CnnRows blocks and models on
// one executor. They live apart from Backend<Exec> because each needs a
// library besides the executor's own: oneDNN for the CPU's NHWC path
// (optional: cpu/conv_ops.hpp) and cuDNN on CUDA (target repshift::cudnn:
// cuda/cudnn_conv_ops.cuh), so cuda/backend.cuh needs no cuDNN.
//
// Each specialisation has
//   State          what the convolutions keep between calls (held by the
//                  Workspace: Workspace::kept<State>());
//   default_layout the fastest MapLayout this build runs;
//   check_layout   refuses a layout it cannot run, naming why;
//   conv2d<E>      y = conv(x) (+ bias, + ReLU per E), both maps in a layout.

namespace repshift {

template <class Exec>
struct ConvOps {
  static_assert(sizeof(Exec) == 0,
                "repshift: no convolutions for this Exec. rs::Host: <repshift/cpu/conv_ops.hpp> (included by "
                "blocks/cnn_block.hpp); rs::Cuda: <repshift/cuda/cudnn_conv_ops.cuh> (target repshift::cudnn).");
};

}  // namespace repshift
