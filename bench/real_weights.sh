#!/usr/bin/env bash
# One command for issue 8's numbers: conformance on real weights
# (all-MiniLM-L6-v2 vs NumPy; the digits ViT vs PyTorch's logits), the
# fidelity tables and plot (digits ViT, MiniLM), and the PyTorch peer
# comparison (DeiT-S/B, MiniLM). Results land in bench/results/.
#   bash bench/real_weights.sh            # everything (~30 min on 2 cores)
#   bash bench/real_weights.sh --no-peer  # conformance + fidelity only (~1 min)
set -euo pipefail
cd "$(dirname "$0")/.."
bash cmake/install_deps.sh
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/release -j "$(nproc)" --target minilm_embed test_models fidelity_digits fidelity_minilm model_timing
ctest --test-dir build/release --output-on-failure -R 'conformance.minilm|DigitsViT'
python3 bench/fidelity/fidelity.py build/release
if [[ "${1:-}" != "--no-peer" ]]; then
  python3 bench/peer/vs_pytorch.py build/release/bench/model_timing "bench/results/peer_cpu_$(date +%F).md"
fi
