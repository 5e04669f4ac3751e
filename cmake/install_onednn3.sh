#!/usr/bin/env bash
# oneDNN 3.2 built for GNU OpenMP, from PyPI (onednn-cpu-gomp; the headers
# and CMake config come in onednn-devel-cpu-gomp), into PREFIX, only when it
# is missing. The project's default is Debian's oneDNN 2.x (libdnnl-dev,
# cmake/install_deps.sh); the dense layers and NHWC convolutions also build
# against 3.x (cpu/onednn_compat.hpp):
#   bash cmake/install_onednn3.sh [PREFIX]   (default: build/onednn-3.2 of this checkout)
#   cmake -S . -B build/onednn3 -Ddnnl_DIR=<PREFIX, absolute>/lib/cmake/dnnl ...
set -euo pipefail
prefix=${1:-$(cd "$(dirname "$0")/.." && pwd)/build/onednn-3.2}
# The first of the files a build needs that PREFIX lacks (empty: none).
missing() {
  for f in lib/cmake/dnnl/dnnl-config.cmake lib/libdnnl.so.3; do
    [ -e "$prefix/$f" ] || { echo "$prefix/$f"; return; }
  done
}
if [ -n "$(missing)" ]; then
  echo "installing oneDNN 3.2 (PyPI onednn-cpu-gomp 2023.2.0) into $prefix"
  # --ignore-installed: with --prefix, pip still skips a package that the
  # running Python already has ("Requirement already satisfied"), leaving
  # PREFIX empty (and a build pointed at it without oneDNN).
  python3 -m pip install -q --root-user-action=ignore --no-deps --ignore-installed --prefix "$prefix" \
    onednn-cpu-gomp==2023.2.0 onednn-devel-cpu-gomp==2023.2.0
  lacking=$(missing)
  if [ -n "$lacking" ]; then
    echo "install_onednn3.sh: $lacking is missing after pip install" >&2
    exit 1
  fi
fi
