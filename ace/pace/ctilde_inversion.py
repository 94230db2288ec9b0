"""The C-tilde importer's inversion: B-function coefficients from the folded coefficients of
one (mu0; mus, ns, ls) tuple, by least squares over our independent couplings (the folding and
its half m-space: docs/model.md, coupling and the C-tilde basis)."""
from __future__ import annotations

import numpy as np

from ace.basis.coupling import canonical_rows, independent_couplings, row_codes
from ace.basis.ctilde import bfunction_ms_coefficients, equal_groups
from ace.basis.model import BFunction

# Relative residual above which C-tilde coefficients are not a combination of B-functions.
CTILDE_RESIDUAL_TOLERANCE = 1e-9


def _canonical(ms, groups):
    """Rows in our half m-space, in our order of m's within identical factors.

    Re(c prod A_m) = Re(c prod A_-m) for real c (A_{l,-m} = (-1)^m A*_{lm}, sum m = 0), so a
    row may be replaced by its mirror; PACE sorts the m's of identical factors ascending, which
    can put a row of our half into the other one. Each row becomes whichever of m, -m is in our
    half after sorting within identical factors (first nonzero m positive).
    """
    rows, mirrored = canonical_rows(ms, groups), canonical_rows(-ms, groups)
    first = np.argmax(rows != 0, axis=1)
    negative = rows[np.arange(len(rows)), first] < 0
    rows[negative] = mirrored[negative]
    return rows


def solve_couplings(rd, label, mu0, mus, ns, ls, ms, ctildes):
    """B-coefficients over our independent couplings reproducing the C-tilde rows exactly.

    Rows equal up to permutations of identical factors or mirroring are merged (their products
    are equal under Re); then ctildes = sum_LS c_LS coef_LS(rows) is solved by least squares
    and the residual must be round-off.
    """
    groups = equal_groups(mus, ns, ls)
    try:
        couplings = independent_couplings(ls, groups)
    except ValueError as exc:
        raise rd.error(label, f"not supported: {exc}") from None
    scale = np.abs(ctildes).max(initial=0.0)
    if scale == 0:
        return []
    if not couplings:
        raise rd.error(label, "nonzero coefficients but the ls admit no invariant coupling")
    lmax = max(ls)
    target_codes = row_codes(_canonical(ms, groups), lmax)
    pieces = [bfunction_ms_coefficients(BFunction(mu0, mus, ns, ls, LS)) for LS in couplings]
    column_codes = [row_codes(f_ms, lmax) for f_ms, _ in pieces]
    codes, inverse = np.unique(np.concatenate([target_codes] + column_codes), return_inverse=True)
    inverse = inverse.ravel()
    rhs = np.zeros((len(codes), ctildes.shape[1]))
    np.add.at(rhs, inverse[:len(target_codes)], ctildes)
    matrix = np.zeros((len(codes), len(couplings)))
    start = len(target_codes)
    for c, (_, f_coef) in enumerate(pieces):
        matrix[inverse[start:start + len(f_coef)], c] = f_coef
        start += len(f_coef)
    solution, *_ = np.linalg.lstsq(matrix, rhs, rcond=None)
    residual = np.abs(matrix @ solution - rhs).max(initial=0.0)
    if residual > CTILDE_RESIDUAL_TOLERANCE * scale:
        raise rd.error(label, f"the C-tilde coefficients are not a combination of rotation-"
                              f"invariant couplings (relative residual {residual / scale:.2e} > "
                              f"{CTILDE_RESIDUAL_TOLERANCE:g})")
    return [(BFunction(mu0, mus, ns, ls, LS), solution[c]) for c, LS in enumerate(couplings)]
