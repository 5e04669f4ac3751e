#include <repshift/blocks/ssm_block.hpp>
namespace P = repshift::policies;
// A Mamba mixer has no MLP sub-layer: SsmScan measures Site = Block only.
using Invalid = repshift::Block<P::SsmScan, P::Mlp, P::L2>;
int main() { return sizeof(Invalid); }
