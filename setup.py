"""Build the Cython/OpenMP core in ace/_core.

OpenMP is probed with a tiny test compile; without it the core is built serial, with a warning.
Flags: -O3, never -ffast-math (it breaks NaN checks and finite differences) or -march=native.
"""
import glob
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import warnings

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

OPENMP_PROBE = r"""
#include <omp.h>
int main(void) {
    int n = 0;
    #pragma omp parallel reduction(+:n)
    n += 1;
    return n > 0 ? 0 : 1;
}
"""


def openmp_flags():
    """Return (compile_args, link_args) enabling OpenMP, or ([], []) if the compiler lacks it."""
    compiler = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    compiler = compiler.split()[0]
    tmp = tempfile.mkdtemp()
    try:
        src = os.path.join(tmp, "probe.c")
        with open(src, "w") as fh:
            fh.write(OPENMP_PROBE)
        result = subprocess.run([compiler, "-fopenmp", src, "-o", os.path.join(tmp, "probe")],
                                capture_output=True)
        if result.returncode == 0:
            return ["-fopenmp"], ["-fopenmp"]
    except OSError:
        pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    warnings.warn("the C compiler does not support OpenMP: ace's core is built serial "
                  "(num_threads has no effect)")
    return [], []


compile_omp, link_omp = openmp_flags()
extensions = [
    Extension(
        "ace._core." + os.path.splitext(os.path.basename(path))[0],
        [path],
        include_dirs=[numpy.get_include(), os.path.join("ace", "_core")],
        extra_compile_args=["-O3"] + compile_omp,
        extra_link_args=link_omp,
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )
    for path in sorted(glob.glob(os.path.join("ace", "_core", "*.pyx")))
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "initializedcheck": False,
            "cdivision": True,
        },
    ),
)
