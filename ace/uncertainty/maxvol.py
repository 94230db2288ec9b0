"""MaxVol: choose n rows of a tall matrix [N, n] spanning a (locally) maximal volume.

Start from the pivot rows of an LU factorisation with partial pivoting, then swap:
with C = M A⁻¹ (A the chosen rows), the largest |C_ij| > tolerance means that putting row i in
place of chosen row j multiplies |det A| by |C_ij|. Stop when every |C_ij| <= tolerance; then each
row of M is a combination of the chosen rows with coefficients of modulus <= tolerance, which is
what the extrapolation grade measures (gamma = max_j |C_ij|).
"""
from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg

from ace._core import effective_n_threads
from ace._core._maxvol import maxvol_swaps

DEFAULT_TOLERANCE = 1.001  # pacemaker's
DEFAULT_MAX_ITERATIONS = 1000
RANK_TOLERANCE = 1e-10  # relative pivot size below which the rows do not span a direction


class RankDeficientError(ValueError):
    """The rows span fewer than n directions."""

    def __init__(self, rank, n):
        super().__init__(f"the projections have rank {rank} < {n}: some functions are "
                         "linearly dependent (or identically zero) on these atoms")
        self.rank = rank


def column_scales(matrix):
    """Largest |entry| of each column (1 for an all-zero column)."""
    scale = np.abs(matrix).max(axis=0, initial=0.0)
    scale[scale == 0] = 1.0
    return scale


def maxvol(matrix, tolerance=DEFAULT_TOLERANCE, max_iterations=DEFAULT_MAX_ITERATIONS,
           num_threads=None, return_largest=False):
    """Indices of n rows of ``matrix`` [N, n] (N >= n, full column rank) of maximal volume.

    With ``return_largest``: (indices, largest |C_ij|), the extrapolation grade of the worst
    row of ``matrix`` against the chosen rows (<= tolerance unless ``max_iterations`` ran out).
    Raises RankDeficientError if the columns are linearly dependent on these rows.
    """
    matrix = np.asarray(matrix, dtype=float)
    n_rows, n = matrix.shape
    if n_rows < n:
        raise ValueError(f"{n_rows} rows cannot span {n} columns")
    if n == 0:
        chosen = np.zeros(0, dtype=np.int64)
        return (chosen, 0.0) if return_largest else chosen
    chosen, coefficients = initial_rows(matrix)
    if coefficients is None:
        coefficients = np.ascontiguousarray(np.linalg.solve(matrix[chosen].T, matrix.T).T)
    chosen = chosen.astype(np.longlong)
    _, largest = maxvol_swaps(coefficients, chosen, float(tolerance), int(max_iterations),
                              effective_n_threads(num_threads))
    chosen = chosen.astype(np.int64)
    return (chosen, float(largest)) if return_largest else chosen


def initial_rows(matrix):
    """n well-conditioned rows of ``matrix`` [N, n] to start the swaps from, the pivot rows of
    its LU factorisation with partial pivoting (the classical MaxVol start), and the
    coefficients C = M A⁻¹ [N, n] of every row in them (None when the rank test sent it to QR).

    With P M D = L U (D the column scales, L unit lower-trapezoidal [N, n]) the chosen rows are
    A D = L₁ U, so C = M A⁻¹ = Pᵀ L L₁⁻¹: one triangular solve, half the arithmetic of solving
    with A afresh (1.4 of the 3.7 s of MaxVol on mlearn Mo before).

    LU is a level-3 BLAS factorisation; QR with column pivoting of the transpose (the start
    before) picks slightly better rows but is mostly level-2 and took 30 of the 47 s of the
    active set of the mlearn Mo training set (10k atoms, 2000 functions); the swaps that follow
    make up the difference. The rank test (pivots relative to the largest, on unit columns)
    falls back to pivoted QR only to count the rank when it fails.
    """
    n_rows, n = matrix.shape
    scale = column_scales(matrix)  # the rank test must not depend on column scales
    with warnings.catch_warnings():  # a singular factor is answered below
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        lu, pivots = scipy.linalg.lu_factor(matrix / scale, overwrite_a=True, check_finite=False)
    diagonal = np.abs(np.diag(lu))
    if not diagonal.min() > RANK_TOLERANCE * diagonal.max():
        # partial pivoting can miss a direction that pivoted QR finds: ask it
        _, r, qr_pivots = scipy.linalg.qr((matrix / scale).T, mode="economic", pivoting=True)
        qr_diagonal = np.abs(np.diag(r))
        rank = int(np.sum(qr_diagonal > RANK_TOLERANCE * qr_diagonal[0]))
        if rank < n:
            raise RankDeficientError(rank, n)
        return np.array(qr_pivots[:n], dtype=np.int64), None
    order = np.arange(n_rows)
    for k, p in enumerate(pivots):  # LAPACK's row interchanges, applied in order
        order[k], order[p] = order[p], order[k]
    # L in place of the factors (no copy of the tall matrix): U's part zeroed, unit diagonal
    lower = lu
    lower[np.triu_indices(n)] = 0.0
    lower[np.arange(n), np.arange(n)] = 1.0
    # X L1 = L, i.e. L1^T X^T = L^T, solved into L's own memory (its transpose is Fortran-ordered)
    permuted = scipy.linalg.solve_triangular(lower[:n].copy(), lower.T, trans="T", lower=True,
                                             unit_diagonal=True, overwrite_b=True,
                                             check_finite=False).T
    coefficients = np.empty((n_rows, n))
    coefficients[order] = permuted
    return order[:n].astype(np.int64), coefficients
