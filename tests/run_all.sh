#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what it needs, builds and
# runs the tests twice, optimised and under AddressSanitizer +
# UndefinedBehaviorSanitizer, then fuzzes the safetensors reader and the
# ViT loader for a fixed short time (libFuzzer; longer on demand with
# `bash tests/fuzz/run_fuzz.sh SECONDS`), runs the oneDNN tests again
# against oneDNN 3.2, then builds the torch package
# and runs its pytest suite. CUDA tests build when nvcc exists and skip
# themselves where no GPU (and no NVIDIA driver) does.
set -euo pipefail
cd "$(dirname "$0")/.."
# Each stage's start in the log, in seconds: CI has 90 minutes on 2 cores.
stage() { echo "[run_all] ${SECONDS}s: $*"; }
stage "dependencies"
bash cmake/install_deps.sh
jobs=$(nproc)

stage "release build"
cmake -S . -B build/release -DCMAKE_BUILD_TYPE=Release
cmake --build build/release -j "$jobs"
stage "release tests"
ctest --test-dir build/release --output-on-failure -j "$jobs"

stage "sanitizer build"
# -O1 -g1: half the compile time of -O2 -g (a heavy test file: 44 s against
# 100 s), line tables enough for the reports' file:line.
cmake -S . -B build/sanitize -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1 -DNDEBUG" \
      -DREPSHIFT_SANITIZE=ON -DREPSHIFT_BUILD_BENCH=OFF -DREPSHIFT_BUILD_EXAMPLES=OFF -DREPSHIFT_ENABLE_CUDA=OFF
cmake --build build/sanitize -j "$jobs"
stage "sanitizer tests"
LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp" \
  ctest --test-dir build/sanitize --output-on-failure -j "$jobs"

stage "fuzzer"
bash tests/fuzz/run_fuzz.sh "${REPSHIFT_FUZZ_SECONDS:-20}"

# oneDNN 3.x: the dense layers and NHWC convolutions also build against it
# (cpu/onednn_compat.hpp). PyPI's oneDNN 3.2 (GNU OpenMP); the tests
# labelled onednn (tests/CMakeLists.txt: the programs that reach oneDNN,
# and their runs under other ISAs and sgemm libraries) run against it.
stage "oneDNN 3.2 build"
dnnl3=$PWD/build/onednn-3.2
bash cmake/install_onednn3.sh "$dnnl3"
build3=build/onednn3-tests
# -O1: these run for the answers, not for speed (the release build times).
cmake -S . -B "$build3" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="-O1 -DNDEBUG" -DREPSHIFT_ENABLE_CUDA=OFF \
      -DREPSHIFT_BUILD_BENCH=OFF -DREPSHIFT_BUILD_EXAMPLES=OFF -Ddnnl_DIR="$dnnl3/lib/cmake/dnnl"
cmake --build "$build3" -j "$jobs" --target test_models test_cpu_cnn test_cpu_transformer
# The tests run against 3.2: its lib/ leads the search path (an
# LD_LIBRARY_PATH in the environment outranks the binaries' RUNPATH), and
# OneDnn.LoadedLibraryIsTheOneBuiltAgainst checks the version that loaded.
dnnl3_path="$dnnl3/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
echo "$build3/tests/test_models: $(LD_LIBRARY_PATH=$dnnl3_path ldd "$build3/tests/test_models" 2>&1 | grep dnnl || true)"
stage "oneDNN 3.2 tests"
LD_LIBRARY_PATH=$dnnl3_path REPSHIFT_EXPECT_ONEDNN=3.2 \
  ctest --test-dir "$build3" -L onednn --output-on-failure -j "$jobs"

# The torch package: one venv (build/peer-venv, shared with the peer
# benchmarks) with torch, timm and transformers; `pip install .` builds the
# extension against that torch; pytest runs its tests.
stage "torch package"
bash tests/python/install_venv.sh
stage "pytest"
(cd build && peer-venv/bin/python -m pytest -q ../tests/python)
stage "done"
