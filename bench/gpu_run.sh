#!/usr/bin/env bash
# Everything that needs a GPU, in phases that each fit one short call on a
# lent GPU machine (one H100/H200, 16 cores: each well under 8 minutes).
#
#   bash bench/gpu_run.sh build      # configure + build the CUDA targets for sm_90 (no network)
#   bash bench/gpu_run.sh test       # CUDA tests; a skip is a failure (REPSHIFT_REQUIRE_GPU=1)
#   bash bench/gpu_run.sh sanitize   # compute-sanitizer on our kernels only (memcheck, racecheck, synccheck)
#   bash bench/gpu_run.sh bench      # the goals first: score vs copy bandwidth, DeiT-S f16, attention
#   bash bench/gpu_run.sh sweep      # the ablation sweep + its table and plot
#
# Every phase writes gpu_<phase>_<device>_<date>.log (and the benches their
# JSON) to $OUT (the device tool's return folder) or bench/results/. Phases
# are resumable: a step that succeeded leaves a marker in build/gpu/done/
# and is skipped when the phase runs again (FORCE=1 runs everything).
# `build` installs nothing: it needs cmake, a C++ compiler, GoogleTest,
# Google Benchmark, OpenBLAS, nlohmann-json and fmt on the machine, and
# finds nvcc on PATH, in $CUDACXX or in /usr/local/cuda/bin. The lent GPU
# machines have none of Debian's libraries: there, skip `build` and carry
# gpu-kit.tar.xz (bench/gpu_kit.sh builds it on the CPU machine); the
# other phases unpack it and run its binaries wherever build/gpu has
# none. cuDNN targets are built and run only where cuDNN was found.
set -uo pipefail
cd "$(dirname "$0")/.."
phase=${1:-}
case "$phase" in build|test|sanitize|bench|sweep) ;; *) sed -n '2,21p' "$0"; exit 2 ;; esac

out=${OUT:-bench/results}
case $out in /*) ;; *) out=$PWD/$out ;; esac
# The programs: build/gpu's (phase build made them here), else those of a
# carried gpu-kit/, whose own markers let a new kit run again on a warm machine.
kit=
if [ "$phase" != build ] && [ ! -x build/gpu/tests/test_cuda_primitives ]; then
  if [ -f gpu-kit.tar.xz ]; then  # unpacked afresh by every phase: a second
    rm -rf gpu-kit
    python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall()' gpu-kit.tar.xz || tar -xJf gpu-kit.tar.xz
  fi
  [ -f gpu-kit/MANIFEST ] && kit=gpu-kit
  # No programs at all would otherwise pass every phase having run nothing.
  if [ -z "$kit" ]; then
    echo "gpu_run $phase: no programs: build/gpu has none and gpu-kit.tar.xz was not carried (or did not unpack)" >&2
    exit 1
  fi
fi
done_dir=build/gpu/done${kit:+/kit-$(cksum <gpu-kit/MANIFEST | cut -d' ' -f1)}
mkdir -p "$out" "$done_dir"
device=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 | tr -c 'A-Za-z0-9\n' '_' | tr -s _)
device=${device:-unknown_gpu}
stamp=$(date +%F)
log="$out/gpu_${phase}_${device}_${stamp}.log"
status=0

# Every program a step runs is bounded (seconds, STEP_SECONDS to change;
# 30 minutes for the build), so that one hung or slow step cannot spend the
# machine's whole budget. --foreground keeps it in the script's process
# group, so that a timeout around the whole phase ends the running step too.
if [ "$phase" = build ]; then step_seconds=${STEP_SECONDS:-1800}; else step_seconds=${STEP_SECONDS:-240}; fi

# step NAME COMMAND...: run once (skipped when its marker exists), bounded,
# log, remember a failure (and return it).
step() {
  local name=$1 marker="$done_dir/${phase}_${1//[^A-Za-z0-9_.-]/_}"
  shift
  if [ -f "$marker" ] && [ -z "${FORCE:-}" ]; then
    echo "==== $name: done earlier (FORCE=1 to rerun)" | tee -a "$log"
    return
  fi
  echo "==== $name" | tee -a "$log"
  timeout --foreground --kill-after=10 "$step_seconds" "$@" 2>&1 | tee -a "$log"
  local rc=${PIPESTATUS[0]}
  if [ "$rc" -eq 0 ]; then
    touch "$marker"
    return
  fi
  local why="exit status $rc"
  { [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; } && why="timed out after $step_seconds s (STEP_SECONDS)"
  echo "==== FAILED ($why): $name" | tee -a "$log"
  status=1
  return 1
}

# A target's program; one that does not exist (a build without cuDNN) is
# left out rather than failing.
target() { if [ -n "$kit" ]; then echo "$kit/bin/${1##*/}"; else echo "build/gpu/$1"; fi; }
have_target() { [ -x "$(target "$1")" ]; }
if [ -n "$kit" ]; then
  # The kit's libraries, then CUDA's: the toolkit's, or PyTorch's wheels'
  # (cuBLASLt, cuDNN) where the toolkit has none.
  dirs=("$PWD/$kit/lib")
  for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do [ -d "$d" ] && dirs+=("$d"); done
  while read -r wheels; do
    for d in "$wheels"/*/lib; do [ -d "$d" ] && dirs+=("$d"); done
  done < <(python3 -c 'import nvidia; print(*nvidia.__path__, sep="\n")' 2>/dev/null || true)
  LD_LIBRARY_PATH=$(IFS=:; echo "${dirs[*]}")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  export LD_LIBRARY_PATH
  { head -1 "$kit/MANIFEST"; echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"; } >>"$log"
fi
# The data the tests read (data/digits_vit), wherever this checkout is.
export REPSHIFT_SOURCE_DIR=$PWD

if [ -z "${CUDACXX:-}" ] && ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
  export CUDACXX=/usr/local/cuda/bin/nvcc
fi
{ date; nvidia-smi 2>&1 | head -15; "${CUDACXX:-nvcc}" --version 2>&1 | tail -2; } >>"$log"

case "$phase" in
build)
  step configure cmake -S . -B build/gpu -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DREPSHIFT_BUILD_EXAMPLES=OFF
  if ! grep -q "CMAKE_CUDA_COMPILER:.*nvcc" build/gpu/CMakeCache.txt 2>/dev/null; then
    echo "==== nvcc was not found: no CUDA targets" | tee -a "$log"
    status=1
  fi
  targets=()
  available=$(cmake --build build/gpu --target help 2>/dev/null)
  for t in test_cuda_tiling test_cuda_primitives test_cuda_backbones test_cuda_transformer test_cuda_cnn \
           bench_cuda_primitives bench_cuda_transformer bench_cuda_backbones bench_cuda_ablation; do
    grep -q "\.\.\. $t\$" <<<"$available" && targets+=("$t")
  done
  echo "building: ${targets[*]}" | tee -a "$log"
  FORCE=1 step build cmake --build build/gpu -j "$(nproc)" --target "${targets[@]}"
  ;;
test)
  export REPSHIFT_REQUIRE_GPU=1
  for t in test_cuda_primitives test_cuda_backbones test_cuda_transformer test_cuda_cnn; do
    have_target "tests/$t" || continue
    step "loader $t" bash -c '! ldd "$1" 2>&1 | grep "not found"' _ "$(target "tests/$t")" || continue
    step "$t" "$(target "tests/$t")" --gtest_output="xml:$out/gpu_${t}_${device}_${stamp}.xml"
  done
  # The installed package built into an outside program: needs build/gpu.
  [ -f build/gpu/CTestTestfile.cmake ] && step consumer ctest --test-dir build/gpu -R consumer --output-on-failure
  ;;
sanitize)
  sanitizer=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
  if [ ! -x "$sanitizer" ]; then
    echo "==== compute-sanitizer not found" | tee -a "$log"
    exit 1
  fi
  # Only our kernels (namespace repshift): cuBLASLt's and cuDNN's are not ours to check.
  # API errors are not counted: tests fail calls on purpose (a 4 EiB cudaMalloc).
  ours=(--kernel-name-base demangled --kernel-name kns=repshift --report-api-errors no --error-exitcode 1)
  for t in test_cuda_primitives test_cuda_backbones test_cuda_transformer test_cuda_cnn; do
    have_target "tests/$t" && step "memcheck $t" "$sanitizer" --tool memcheck "${ours[@]}" "$(target "tests/$t")"
  done
  # The kernels that share memory between threads, by test binary.
  declare -A shared=([test_cuda_transformer]="CudaTyped/*Attention*:CudaTyped/*Merge*:CudaBlock/*"
                     [test_cuda_primitives]="CudaSelectTop*"
                     [test_cuda_backbones]="*SelectiveScan*:CudaSsmBlock*")
  for tool in racecheck synccheck; do
    for t in "${!shared[@]}"; do
      have_target "tests/$t" && step "$tool $t" "$sanitizer" --tool "$tool" "${ours[@]}" "$(target "tests/$t")" --gtest_filter="${shared[$t]}"
    done
  done
  ;;
bench)
  # The goals first: the score kernel against copy bandwidth, DeiT-S f16
  # pruned vs unpruned at batch 64 / 256, attention; then the rest. 0.1 s
  # a run (Google Benchmark 1.7's plain seconds), 3 interleaved
  # repetitions: about 2 minutes in all on an H100.
  run_bench() {  # run_bench NAME FILTER
    have_target "bench/$1" || return 0
    step "$1 $2" "$(target "bench/$1")" --benchmark_filter="$2" --benchmark_min_time=0.1 \
      --benchmark_repetitions=3 --benchmark_enable_random_interleaving=true \
      --benchmark_out="$out/gpu_${1#bench_}_${2//[^A-Za-z0-9]/_}_${device}_${stamp}.json" --benchmark_out_format=json
  }
  run_bench bench_cuda_primitives "CudaShiftScore|CudaCopy"
  run_bench bench_cuda_transformer "CudaDeiT"
  run_bench bench_cuda_transformer "CudaAttention"
  run_bench bench_cuda_primitives "CudaSelectTop|CudaGather"
  run_bench bench_cuda_transformer "CudaBlock"
  run_bench bench_cuda_backbones "."
  ;;
sweep)
  if have_target bench/bench_cuda_ablation; then
    json="$out/gpu_cuda_ablation_${device}_${stamp}.json"
    step sweep "$(target bench/bench_cuda_ablation)" --benchmark_min_time=0.1 \
      --benchmark_repetitions=3 --benchmark_enable_random_interleaving=true --benchmark_out="$json" \
      --benchmark_out_format=json
    [ -f "$json" ] && step "plot sweep" python3 bench/plot_ablation.py "$json" "$out" "gpu_${device}_${stamp}"
  fi
  ;;
esac
echo "==== gpu_run $phase status $status" | tee -a "$log"
exit $status
