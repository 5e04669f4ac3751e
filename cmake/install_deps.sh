#!/usr/bin/env bash
# Installs the Debian packages the build, tests and benchmarks need, only
# when one is missing (apt-get update is slow; a ready machine skips it).
# The CUDA toolkit is optional: CMake uses it when nvcc is on PATH.
set -euo pipefail
packages=(cmake make g++ python3 libgtest-dev libbenchmark-dev libopenblas-openmp-dev nlohmann-json3-dev)
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
