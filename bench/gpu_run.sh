#!/usr/bin/env bash
# Everything that needs a GPU, in one command for a lent GPU machine:
# builds the CUDA targets, runs the CUDA tests, compute-sanitizer (memcheck
# on every CUDA test binary, racecheck and synccheck on the shared-memory
# kernels: attention, merge, select, scan), then the CUDA benchmarks.
# Results go to $OUT (the device tool's return folder) or bench/results/,
# named gpu_<bench>_<device>_<date>.json, with a log of every step.
#   bash bench/gpu_run.sh            # all of it
#   bash bench/gpu_run.sh --no-bench # tests and sanitizers only
set -uo pipefail
cd "$(dirname "$0")/.."
bash cmake/install_deps.sh
out=${OUT:-bench/results}
mkdir -p "$out"
device=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 | tr -c 'A-Za-z0-9\n' '_' | tr -s _)
device=${device:-unknown_gpu}
stamp=$(date +%F)
log="$out/gpu_run_${device}_${stamp}.log"
status=0
step() {  # step NAME COMMAND...: run, log, remember a failure
  echo "==== $1" | tee -a "$log"
  shift
  if ! "$@" 2>&1 | tee -a "$log"; then
    echo "==== FAILED" | tee -a "$log"
    status=1
  fi
}

{ nvidia-smi; nvcc --version; } >>"$log" 2>&1
jobs=$(nproc)
cuda_tests=(test_cuda_tiling test_cuda_primitives test_cuda_backbones test_cuda_transformer test_cuda_cnn)
cuda_benches=(bench_cuda_primitives bench_cuda_transformer bench_cuda_backbones bench_cuda_ablation)
step configure cmake -S . -B build/gpu -DCMAKE_BUILD_TYPE=Release
step build cmake --build build/gpu -j "$jobs" --target "${cuda_tests[@]}" "${cuda_benches[@]}"
step ctest ctest --test-dir build/gpu -R "Cuda" --output-on-failure -j 4

sanitizer=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
if [ -x "$sanitizer" ]; then
  for t in test_cuda_primitives test_cuda_backbones test_cuda_transformer test_cuda_cnn; do
    step "memcheck $t" "$sanitizer" --tool memcheck --error-exitcode 1 "build/gpu/tests/$t"
  done
  # The kernels that share memory between threads, by test binary.
  declare -A shared=([test_cuda_transformer]="CudaTyped/*Attention*:CudaTyped/*Merge*:CudaBlock/*"
                     [test_cuda_primitives]="CudaSelectTop*"
                     [test_cuda_backbones]="*SelectiveScan*:CudaSsmBlock*")
  for tool in racecheck synccheck; do
    for t in "${!shared[@]}"; do
      step "$tool $t" "$sanitizer" --tool "$tool" --error-exitcode 1 "build/gpu/tests/$t" --gtest_filter="${shared[$t]}"
    done
  done
else
  echo "==== compute-sanitizer not found" | tee -a "$log"
  status=1
fi

if [ "${1:-}" != "--no-bench" ]; then
  for b in "${cuda_benches[@]}"; do
    step "$b" "build/gpu/bench/$b" --benchmark_repetitions=5 --benchmark_enable_random_interleaving=true \
      --benchmark_out="$out/gpu_${b#bench_}_${device}_${stamp}.json" --benchmark_out_format=json
  done
  # The sweep's table and plot, as for the CPU sweep.
  sweep="$out/gpu_cuda_ablation_${device}_${stamp}.json"
  [ -f "$sweep" ] && step "plot sweep" python3 bench/plot_ablation.py "$sweep" "$out" "gpu_${device}_${stamp}"
fi
echo "==== gpu_run status $status" | tee -a "$log"
exit $status
