"""Builds the torch extension repshift._C (python/repshift/csrc/ops.cpp, C++20
 as torch 2.x headers require; the library itself is C++17)
against the installed torch with torch.utils.cpp_extension, using this
repository's headers (include/) in place. `pip install .` from the root.
CUDA ops (ops_cuda.cu and the fused block per storage type,
block_cuda_{f32,f16,bf16}.cu) are built too when torch is a CUDA build and
nvcc of the same major version is found (CUDA_HOME, e.g. /usr/local/cuda),
for TORCH_CUDA_ARCH_LIST (default "8.0;9.0": A100, H100/H200); a GPU is
needed only to run them. REPSHIFT_TORCH_CUDA=0 builds the CPU ops alone.
fmt (the library's messages) is used header-only, as the CMake target does:
torch's include path puts torch's own fmt ahead of the system's, and
header-only use needs no libfmt of either version to link.
The dense layers run on Debian's oneDNN 2.x with prepacked weights where
libdnnl-dev is installed, as in the C++ build. torch ships oneDNN 3.x headers
in its include folder, which would shadow Debian's (the headers must match
the libdnnl the extension links), so a folder holding only a link to
/usr/include/oneapi goes first on the include path. torch's own oneDNN is
linked into libtorch_cpu with hidden symbols, so the two never meet."""
import atexit
import os
import re
import shutil
import subprocess
import tempfile

import torch
from setuptools import setup
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

ROOT = os.path.dirname(os.path.abspath(__file__))
OPENBLAS_OPENMP = "/usr/lib/x86_64-linux-gnu/openblas-openmp"
ONEDNN_HEADERS = "/usr/include/oneapi"
HAS_ONEDNN = os.path.exists(os.path.join(ONEDNN_HEADERS, "dnnl", "dnnl.hpp")) and os.path.exists(
    "/usr/lib/x86_64-linux-gnu/libdnnl.so")


def onednn_include_dirs():
    if not HAS_ONEDNN:
        return []
    shim = tempfile.mkdtemp(prefix="repshift-onednn-include-")
    atexit.register(shutil.rmtree, shim, ignore_errors=True)  # after the build, which runs inside setup()
    os.symlink(ONEDNN_HEADERS, os.path.join(shim, "oneapi"))
    return [shim]


def cuda_ops_wanted():
    if os.environ.get("REPSHIFT_TORCH_CUDA", "1") == "0" or torch.version.cuda is None or CUDA_HOME is None:
        return False
    nvcc = os.path.join(CUDA_HOME, "bin", "nvcc")
    if not os.path.exists(nvcc):
        return False
    out = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout
    found = re.search(r"release (\d+)\.", out)
    return found is not None and found.group(1) == torch.version.cuda.split(".")[0]


CSRC = os.path.join("python", "repshift", "csrc")
WITH_CUDA = cuda_ops_wanted()
if WITH_CUDA:
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0")
Extension = CUDAExtension if WITH_CUDA else CppExtension
SOURCES = [os.path.join(CSRC, "ops.cpp")] + ([os.path.join(CSRC, f) for f in (
    "ops_cuda.cu", "block_cuda_f32.cu", "block_cuda_f16.cu", "block_cuda_bf16.cu")] if WITH_CUDA else [])
# oneDNN serves the CPU ops only (ops.cpp): the .cu files never see it
# (nvcc's C++20 front end crashes on its headers).
# -march=native by default, for this machine's CPU; REPSHIFT_NATIVE=0 builds
# a wheel that runs on any x86-64 (the vector kernels still pick AVX2 or
# AVX-512 at run time, cpu/cpu_isa.hpp), e.g. one to cache or share.
NATIVE = os.environ.get("REPSHIFT_NATIVE", "1") != "0"
CXX_FLAGS = ["-O3", "-std=c++20", "-fopenmp", "-DNDEBUG"] + (["-march=native"] if NATIVE else []) + (
    ["-DREPSHIFT_HAS_ONEDNN=1"] if HAS_ONEDNN else [])
# nvcc: torch's headers need C++20, whose consteval format checks in torch's
# fmt 12 nvcc's front end cannot evaluate (it crashes), so they are off;
# no flag may contain "arch" (e.g. -march), or torch drops its -gencode flags.
NVCC_FLAGS = ["-O3", "-std=c++20", "-DNDEBUG", "-DFMT_USE_CONSTEVAL=0", "-Xcompiler=-fopenmp"]

setup(
    ext_modules=[
        Extension(
            "repshift._C",
            SOURCES,
            include_dirs=onednn_include_dirs() + [os.path.join(ROOT, "include"),
                                                  "/usr/include/x86_64-linux-gnu/openblas-openmp"],
            define_macros=[("FMT_HEADER_ONLY", "1")],
            extra_compile_args={"cxx": CXX_FLAGS, "nvcc": NVCC_FLAGS},
            # Debian's OpenMP build of OpenBLAS, by RUNPATH: it shares libgomp with torch and our
            # kernels (the pthread build, if the loader picked it, is detected and adapted to).
            library_dirs=[OPENBLAS_OPENMP] if os.path.isdir(OPENBLAS_OPENMP) else [],
            extra_link_args=["-fopenmp"] + ([f"-Wl,-rpath,{OPENBLAS_OPENMP}"] if os.path.isdir(OPENBLAS_OPENMP) else []),
            libraries=["openblas"] + (["dnnl"] if HAS_ONEDNN else []) + (["cublasLt", "cublas"] if WITH_CUDA else []),
        )
    ],
    cmdclass={"build_ext": BuildExtension},
)
