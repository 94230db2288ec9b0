# cython: language_level=3
"""Thread-count helpers for the OpenMP core."""
from ace._core._openmp cimport ACE_OPENMP_ENABLED, omp_get_max_threads


def openmp_enabled():
    """True if the core was compiled with OpenMP."""
    return bool(ACE_OPENMP_ENABLED)


def max_threads():
    """The OpenMP default thread count (follows OMP_NUM_THREADS)."""
    return omp_get_max_threads()
