#!/usr/bin/env bash
# The main demo: installs what it needs, builds, and runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash cmake/install_deps.sh
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/release -j "$(nproc)" --target select_gather_demo
./build/release/examples/01_select_gather/select_gather_demo "$@"
