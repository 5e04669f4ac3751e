#!/usr/bin/env bash
# The main demo: installs what it needs, builds, and runs representation-
# shift pruning on trained models and real inputs (the digits ViT, the video
# transformer on moving-digit clips: accuracy pruned vs unpruned, PNGs of the
# surviving patches), then UMT-B's speed on 1568 video tokens.
#   bash examples/run_demo.sh [OUT_DIR=build/demo] [rounds]
# The DeiT speed demo: build/release/examples/02_vit_prune/vit_prune_demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash cmake/install_deps.sh
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/release -j "$(nproc)" --target prune_demo
out="${1:-build/demo}"
mkdir -p "$out"
./build/release/examples/05_real_data/prune_demo data "$out" "${2:-2}"
