"""PyTorch, timm and scikit-learn for the peer and training scripts live in
their own venv (build/peer-venv, ~5 GB), created on first use, so the test
command never needs them. `ensure(...)` re-executes the calling script inside
the venv when a module is missing from the current interpreter."""
import importlib.util
import os
import subprocess
import sys

VENV = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "build", "peer-venv")
PACKAGES = ["torch", "torchvision", "timm", "transformers", "scikit-learn", "matplotlib"]


def ensure(*modules):
    if all(importlib.util.find_spec(m) for m in modules):
        return
    python = os.path.join(VENV, "bin", "python")
    if os.path.abspath(sys.executable) == os.path.abspath(python):
        sys.exit(f"{', '.join(modules)} still missing inside {VENV}")
    if not os.path.exists(python):
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
    if subprocess.run([python, "-c", "import " + ", ".join(modules)], capture_output=True).returncode:
        subprocess.run([python, "-m", "pip", "install", "-q", *PACKAGES], check=True)
    os.execv(python, [python] + sys.argv)
