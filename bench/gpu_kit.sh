#!/usr/bin/env bash
# Builds the CUDA tests and benches here, on a machine with nvcc and this
# project's dependencies (no GPU needed), into gpu-kit.tar.xz, which a lent
# GPU machine unpacks and runs as it is. That machine's image has nvcc,
# CMake and PyTorch but none of Debian's GoogleTest, Google Benchmark,
# OpenBLAS, oneDNN or fmt, nothing can be installed there, and its minutes
# are few. The kit holds the binaries for sm_90 (stripped) and the shared
# libraries they load (the CUDA runtime they were linked with included)
# but for the C/C++ runtime and what the GPU machine has of its own and is
# too large to carry (the driver, cuBLASLt: 517 MiB, cuDNN): 95 MiB as
# files, 16 MiB as the xz archive, within the device tool's 64 MiB with
# the checkout.
#
#   bash bench/gpu_kit.sh          # here: build/gpu, then gpu-kit/ and gpu-kit.tar.xz
#   then on the GPU machine, carrying gpu-kit.tar.xz (bench/gpu_run.sh
#   unpacks it and takes its binaries where there is no build/gpu):
#   bash bench/gpu_run.sh test; bash bench/gpu_run.sh sanitize; ...
set -euo pipefail
cd "$(dirname "$0")/.."
kit=gpu-kit
max_mib=50
targets=(tests/test_cuda_primitives tests/test_cuda_backbones tests/test_cuda_transformer tests/test_cuda_cnn
         bench/bench_cuda_primitives bench/bench_cuda_transformer bench/bench_cuda_backbones bench/bench_cuda_ablation)
nvcc=${CUDACXX:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
[ -x "$nvcc" ] || { echo "gpu_kit: no nvcc (CUDACXX, PATH or /usr/local/cuda/bin)" >&2; exit 1; }

cmake -S . -B build/gpu -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 -DREPSHIFT_BUILD_EXAMPLES=OFF \
  -DCMAKE_CUDA_COMPILER="$nvcc"
# The targets this build has (no cuDNN: no CNN test or backbone bench).
available=$(cmake --build build/gpu --target help)
names=()
for t in "${targets[@]}"; do grep -q "\.\.\. ${t##*/}\$" <<<"$available" && names+=("${t##*/}"); done
cmake --build build/gpu -j "$(nproc)" --target "${names[@]}"

rm -rf "$kit"
mkdir -p "$kit/bin" "$kit/lib"
for t in "${targets[@]}"; do
  [ -x "build/gpu/$t" ] || continue  # cuDNN's targets exist only where cuDNN was found
  strip --strip-unneeded -o "$kit/bin/${t##*/}" "build/gpu/$t"
done
if ldd "$kit"/bin/* | grep 'not found'; then
  echo "gpu_kit: the loader misses a library here already" >&2
  exit 1
fi
# What the loader resolves, but for the C and C++ runtimes and CUDA's large libraries.
ldd "$kit"/bin/* | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u | while read -r lib; do
  case "${lib##*/}" in
    libc.so* | libm.so* | libpthread.so* | libdl.so* | librt.so* | ld-linux* | libstdc++.so* | libgcc_s.so*) ;;
    libcuda.so* | libcublas* | libcudnn* | libnvrtc* | libnvJitLink*) ;;
    *) cp -L "$lib" "$kit/lib/" ;;
  esac
done
{
  echo "built $(date -u +%FT%TZ) from $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- include tests bench || echo ' (with local changes)')"
  echo "nvcc: $("$nvcc" --version | tail -1)"
  echo "sm_90; run on the GPU machine with bench/gpu_run.sh (LD_LIBRARY_PATH: gpu-kit/lib, then CUDA's)"
  echo "needs there: a driver for CUDA 13 (r580+), glibc >= $(ldd --version | head -1 | grep -o '[0-9.]*$'), and" \
    "$(ldd "$kit"/bin/* | grep -o 'lib\(cublasLt\|cudnn\)[a-z_]*\.so\.[0-9]*' | sort -u | tr '\n' ' ')"
  (cd "$kit" && du -b bin/* lib/*)
} >"$kit/MANIFEST"
tar -cf - "$kit" | xz -T0 -6 >"$kit.tar.xz"
cat "$kit/MANIFEST"
size=$(du -m "$kit.tar.xz" | cut -f1)
echo "$kit.tar.xz: ${size} MiB ($(du -sm "$kit" | cut -f1) MiB unpacked)"
if [ "$size" -gt "$max_mib" ]; then
  echo "gpu_kit: ${size} MiB is more than the ${max_mib} MiB the device tool can carry beside the checkout" >&2
  exit 1
fi
