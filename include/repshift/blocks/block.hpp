#pragma once
// Block<Backbone, Site, Metric, Compress, Norm>: one layer of a backbone
// that measures representation shift at Site with Metric inside its own
// epilogues and compresses tokens with Compress. The primary template
// refuses; each supported backbone specialises it (blocks/transformer_block.hpp,
// blocks/ssm_block.hpp, blocks/cnn_block.hpp).

#include "../policies/compress.hpp"
#include "../policies/norm.hpp"

namespace repshift {

template <class Backbone, class Site, class Metric, class Compress = policies::Prune,
          class Norm = policies::PreNorm>
struct Block {
  static_assert(sizeof(Backbone) == 0,
                "repshift::Block: this Backbone x Compress combination is not implemented "
                "(supported: Block<Transformer, Site, Metric, Prune|Fuse|Merge, PreNorm|PostNorm>, "
                "Block<SsmScan, Block, Metric, Prune, PreNorm>, Block<CnnRows, Block, Metric, Prune, PreNorm>)");
};

}  // namespace repshift
