#!/usr/bin/env bash
# The main demo: installs what it needs, builds, and runs DeiT-S on the CPU
# unpruned vs the paper's pruning schedule.
#   bash examples/run_demo.sh [deit_t|deit_s|deit_b] [batch] [rounds]
set -euo pipefail
cd "$(dirname "$0")/.."
bash cmake/install_deps.sh
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/release -j "$(nproc)" --target vit_prune_demo
./build/release/examples/02_vit_prune/vit_prune_demo "${@:-deit_s}"
