# cython: language_level=3
"""MaxVol's swap phase: one pass over the coefficient matrix per swap.

With C = M A⁻¹ [N, n] (A the chosen rows of M), a swap of row i into place j is the rank-one
update C -= (C[:, j] / C_ij) (C[i] - e_j), and the next swap is the largest |C|. Done with numpy
that is four sweeps over C per swap (the outer product, the subtraction, |C|, argmax) and
temporaries of C's size; here the update and the search for the next pivot share one sweep, and
threads take fixed blocks of rows. Ties go to the smallest flat index, as numpy's argmax, so the
result does not depend on the thread count.
"""
import numpy as np

from cython.parallel cimport prange
from libc.math cimport fabs


cdef void block_max(const double[:, ::1] C, Py_ssize_t r0, Py_ssize_t r1, double* value,
                    Py_ssize_t* where) noexcept nogil:
    """Largest |C| over rows r0..r1-1 and its first flat index."""
    cdef Py_ssize_t r, c, n = C.shape[1], best_at = -1
    cdef double a, best = -1.0
    for r in range(r0, r1):
        for c in range(n):
            a = fabs(C[r, c])
            if a > best:
                best = a
                best_at = r * n + c
    value[0] = best
    where[0] = best_at


def maxvol_swaps(double[:, ::1] C, long long[::1] chosen, double tolerance, int max_iterations,
                 int n_threads):
    """Swap rows into ``chosen`` (updating C in place) until every |C| <= ``tolerance`` or
    ``max_iterations`` swaps. Returns (swaps done, largest |C| at the end)."""
    cdef Py_ssize_t N = C.shape[0], n = C.shape[1]
    if N == 0 or n == 0:
        return 0, 0.0
    n_threads = max(1, min(n_threads, <int>N))
    column_np = np.empty(N)
    row_np = np.empty(n)
    values_np = np.empty(n_threads)
    where_np = np.empty(n_threads, dtype=np.intp)
    cdef double[::1] column = column_np, row = row_np, values = values_np
    cdef Py_ssize_t[::1] where = where_np
    cdef int t, swaps = 0
    cdef Py_ssize_t r, c, i, j, r0, r1, best_at, flat
    cdef double best, pivot, factor, a, top

    with nogil:
        for t in prange(n_threads, schedule="static", num_threads=n_threads):
            block_max(C, t * N // n_threads, (t + 1) * N // n_threads, &values[t], &where[t])
        while True:
            top = -1.0
            flat = -1
            for t in range(n_threads):  # blocks in row order: the first maximum wins
                if values[t] > top:
                    top = values[t]
                    flat = where[t]
            if top <= tolerance or swaps >= max_iterations:
                break
            i = flat // n
            j = flat % n
            pivot = C[i, j]
            for r in range(N):
                column[r] = C[r, j] / pivot
            for c in range(n):
                row[c] = C[i, c]
            row[j] -= 1.0
            chosen[j] = i
            swaps += 1
            for t in prange(n_threads, schedule="static", num_threads=n_threads):
                r0 = t * N // n_threads
                r1 = (t + 1) * N // n_threads
                best = -1.0
                best_at = -1
                for r in range(r0, r1):
                    factor = column[r]
                    for c in range(n):
                        C[r, c] = C[r, c] - factor * row[c]
                        a = fabs(C[r, c])
                        if a > best:
                            best = a
                            best_at = r * n + c
                values[t] = best
                where[t] = best_at
    return swaps, top
