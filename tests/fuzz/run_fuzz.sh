#!/usr/bin/env bash
# Builds the safetensors / model-loader fuzzer with clang's libFuzzer, ASan
# and UBSan (nonnull checks included, every finding fatal) and runs it.
#   bash tests/fuzz/run_fuzz.sh [SECONDS=30] [RUNS=-1]
# The test suite runs it briefly (run_all.sh); run it longer on demand,
# e.g. `bash tests/fuzz/run_fuzz.sh 600`. Prints libFuzzer's summary (exec
# count); exits non-zero on any crash, leak or UB report.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-30}
runs=${2:--1}
cxx=$(command -v clang++ || command -v clang++-14 || true)
if [ -z "$cxx" ]; then
  echo "run_fuzz: clang++ not found (apt-get install -y clang)"
  exit 1
fi
work=build/fuzz
mkdir -p "$work/corpus"
"$cxx" -std=c++17 -O1 -g -fsanitize=fuzzer,address,undefined,nullability -fno-sanitize-recover=all \
  -Iinclude -DFMT_HEADER_ONLY -fopenmp tests/fuzz/fuzz_safetensors.cpp -o "$work/fuzz_safetensors" -lopenblas
seeds=tests/fuzz/corpus
[ -n "$(ls -A "$seeds" 2>/dev/null)" ] || python3 tests/fuzz/make_corpus.py "$seeds"
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ASAN_OPTIONS=detect_leaks=1 \
  "$work/fuzz_safetensors" -max_total_time="$seconds" -runs="$runs" -max_len=4096 -print_final_stats=1 \
  -dict=tests/fuzz/safetensors.dict \
  "$work/corpus" "$seeds" 2>&1 | tail -25
