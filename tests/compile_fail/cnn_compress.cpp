#include <repshift/blocks/cnn_block.hpp>
namespace P = repshift::policies;
// Feature maps lose whole rows and columns: merging tokens has no meaning there.
using Invalid = repshift::Block<P::CnnRows, P::BlockOutput, P::L2, P::Merge>;
int main() { return sizeof(Invalid); }
