#include <repshift/blocks/transformer_block.hpp>
namespace P = repshift::policies;
// ClsAttention exists only where the attention map does: Site must be Attention.
using Invalid = repshift::Block<P::Transformer, P::Mlp, P::ClsAttention>;
int main() { return sizeof(Invalid); }
