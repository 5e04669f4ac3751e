#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what it needs, builds and
# runs the tests twice, optimised and under AddressSanitizer +
# UndefinedBehaviorSanitizer, then fuzzes the safetensors reader and the
# ViT loader for a fixed short time (libFuzzer; longer on demand with
# `bash tests/fuzz/run_fuzz.sh SECONDS`), then builds the torch package
# and runs its pytest suite. CUDA tests build when nvcc exists and skip
# themselves where no GPU (and no NVIDIA driver) does.
set -euo pipefail
cd "$(dirname "$0")/.."
bash cmake/install_deps.sh
jobs=$(nproc)

cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release
cmake --build build/release -j "$jobs"
ctest --test-dir build/release --output-on-failure -j "$jobs"

cmake -S . -B build/sanitize -DCMAKE_BUILD_TYPE=RelWithDebInfo -DREPSHIFT_SANITIZE=ON \
      -DREPSHIFT_BUILD_BENCH=OFF -DREPSHIFT_BUILD_EXAMPLES=OFF -DREPSHIFT_ENABLE_CUDA=OFF
cmake --build build/sanitize -j "$jobs"
LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp" \
  ctest --test-dir build/sanitize --output-on-failure -j "$jobs"

bash tests/fuzz/run_fuzz.sh "${REPSHIFT_FUZZ_SECONDS:-20}"

# The torch package: one venv (build/peer-venv, shared with the peer
# benchmarks) with torch, timm and transformers; `pip install .` builds the
# extension against that torch; pytest runs its tests.
bash tests/python/install_venv.sh
(cd build && peer-venv/bin/python -m pytest -q ../tests/python)
