"""Compiled Cython/OpenMP kernels. Python wrappers live in ace.evaluator; keep logic out of here."""
from ace._core._threads import max_threads, openmp_enabled

__all__ = ["effective_n_threads", "openmp_enabled"]


def effective_n_threads(n_threads=None):
    """Number of OpenMP threads to use.

    None follows OMP_NUM_THREADS (the OpenMP default); a negative n counts from the top
    (-1 = all available, -2 = all but one); 0 is an error.
    """
    if n_threads is None:
        return max_threads()
    import numbers
    if isinstance(n_threads, bool) or not isinstance(n_threads, numbers.Integral):
        raise ValueError(f"num_threads must be a whole number or None, not {n_threads!r}")
    n_threads = int(n_threads)
    if n_threads == 0:
        raise ValueError("num_threads must not be 0")
    if n_threads < 0:
        import os
        available = os.cpu_count() or 1
        return max(1, available + 1 + n_threads)
    from ace.limits import check_num_threads
    return check_num_threads(n_threads)
