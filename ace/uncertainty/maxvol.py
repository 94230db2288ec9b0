"""MaxVol: choose n rows of a tall matrix [N, n] spanning a (locally) maximal volume.

Start from QR with column pivoting of the transpose (a good, well-conditioned set), then swap:
with C = M A⁻¹ (A the chosen rows), the largest |C_ij| > tolerance means that putting row i in
place of chosen row j multiplies |det A| by |C_ij|. Stop when every |C_ij| <= tolerance; then each
row of M is a combination of the chosen rows with coefficients of modulus <= tolerance, which is
what the extrapolation grade measures (gamma = max_j |C_ij|).
"""
from __future__ import annotations

import numpy as np
import scipy.linalg

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


def maxvol(matrix, tolerance=DEFAULT_TOLERANCE, max_iterations=DEFAULT_MAX_ITERATIONS):
    """Indices of n rows of ``matrix`` [N, n] (N >= n, full column rank) of maximal volume.

    Raises RankDeficientError if the columns are linearly dependent on these rows.
    """
    matrix = np.asarray(matrix, dtype=float)
    n_rows, n = matrix.shape
    if n_rows < n:
        raise ValueError(f"{n_rows} rows cannot span {n} columns")
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    # the result does not depend on the scale of each column, the rank test does: unit columns
    _, r, pivots = scipy.linalg.qr((matrix / column_scales(matrix)).T, mode="economic",
                                   pivoting=True)
    diagonal = np.abs(np.diag(r))
    if not diagonal[-1] > RANK_TOLERANCE * diagonal[0]:
        raise RankDeficientError(int(np.sum(diagonal > RANK_TOLERANCE * diagonal[0])), n)
    chosen = np.array(pivots[:n], dtype=np.int64)
    coefficients = np.linalg.solve(matrix[chosen].T, matrix.T).T  # C = M A^-1, [N, n]
    for _ in range(max_iterations):
        i, j = np.unravel_index(np.argmax(np.abs(coefficients)), coefficients.shape)
        pivot = coefficients[i, j]
        if abs(pivot) <= tolerance:
            break
        # rank-one update of C for A' = A with row j replaced by M[i]
        column = coefficients[:, j].copy()
        row = coefficients[i].copy()
        row[j] -= 1.0
        coefficients -= np.outer(column / pivot, row)
        chosen[j] = i
    return chosen
