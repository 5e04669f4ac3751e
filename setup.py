"""Builds the torch extension repshift._C (python/repshift/csrc/ops.cpp, C++20
 as torch 2.x headers require; the library itself is C++17)
against the installed torch with torch.utils.cpp_extension, using this
repository's headers (include/) in place. `pip install .` from the root.
CPU kernels only: the CUDA ops are not part of this build yet.
fmt (the library's messages) is used header-only, as the CMake target does:
torch's include path puts torch's own fmt ahead of the system's, and
header-only use needs no libfmt of either version to link.
The dense layers run on Debian's oneDNN 2.x with prepacked weights where
libdnnl-dev is installed, as in the C++ build. torch ships oneDNN 3.x headers
in its include folder, which would shadow Debian's (3.x dropped the 2.x
operation descriptors the library uses), so a folder holding only a link to
/usr/include/oneapi goes first on the include path. torch's own oneDNN is
linked into libtorch_cpu with hidden symbols, so the two never meet."""
import atexit
import os
import shutil
import tempfile

from setuptools import setup
from torch.utils.cpp_extension import BuildExtension, CppExtension

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


setup(
    ext_modules=[
        CppExtension(
            "repshift._C",
            [os.path.join("python", "repshift", "csrc", "ops.cpp")],
            include_dirs=onednn_include_dirs() + [os.path.join(ROOT, "include"),
                                                  "/usr/include/x86_64-linux-gnu/openblas-openmp"],
            define_macros=[("FMT_HEADER_ONLY", "1")] + ([("REPSHIFT_HAS_ONEDNN", "1")] if HAS_ONEDNN else []),
            extra_compile_args=["-O3", "-std=c++20", "-fopenmp", "-DNDEBUG", "-march=native"],
            # Debian's OpenMP build of OpenBLAS, by RUNPATH: it shares libgomp with torch and our
            # kernels (the pthread build, if the loader picked it, is detected and adapted to).
            library_dirs=[OPENBLAS_OPENMP] if os.path.isdir(OPENBLAS_OPENMP) else [],
            extra_link_args=["-fopenmp"] + ([f"-Wl,-rpath,{OPENBLAS_OPENMP}"] if os.path.isdir(OPENBLAS_OPENMP) else []),
            libraries=["openblas"] + (["dnnl"] if HAS_ONEDNN else []),
        )
    ],
    cmdclass={"build_ext": BuildExtension},
)
