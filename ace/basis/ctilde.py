"""Folding B-functions and their coefficients into PACE's C-tilde form (docs/model.md, section 5).

A B-function is B = Σ_m C_m Π_t A_{μ_t n_t l_t m_t} over the full m-space. Because
C_{-m} = C_m (Σl is even) and A_{l,-m} = (-1)^m conj(A_{lm}), it equals
Σ_rows coef Re(Π_t A_{m_t}) over half of m-space (first nonzero m positive, doubled, plus the
all-zero tuple), with permutation-equivalent tuples of identical factors merged.
All couplings of one (μ0; μ, n, l) tuple share these products, so their coefficients add up
into one C-tilde function per tuple.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ace.basis.coupling import generalized_cg, half_space
from ace.basis.model import BFunction

# Relative size below which a folded coefficient row is a cancellation round-off.
ZERO_ROW_TOLERANCE = 1e-14


@dataclass
class CTildeFunction:
    """Products of A's of one (mu0; mus, ns, ls) tuple with folded coefficients.

    The density p of the central atom gets Σ_rows ctildes[row, p] Re(Π_t A_{mus_t ns_t ls_t
    ms[row, t]}). ``ns`` are 0-based (rank 1: the radial base index k).
    """

    mu0: int
    mus: tuple
    ns: tuple
    ls: tuple
    ms: np.ndarray  # [ncomb, rank] int
    ctildes: np.ndarray  # [ncomb, ndensity]

    @property
    def rank(self) -> int:
        return len(self.mus)


def equal_groups(mus, ns, ls) -> tuple:
    """Label per factor; factors with equal (μ, n, l) share a label."""
    return tuple(zip(mus, ns, ls))


@lru_cache(maxsize=None)
def _ms_coefficients(mus: tuple, ns: tuple, ls: tuple, LS: tuple):
    ms, coef = half_space(*generalized_cg(ls, LS), equal_groups(mus, ns, ls))
    ms.setflags(write=False)
    coef.setflags(write=False)
    return ms, coef


def bfunction_ms_coefficients(f: BFunction) -> tuple:
    """Half-space m-tuples and coefficients of one B-function (read-only, cached).

    B = Σ_rows coef Re(Π_t Ã_{μ_t n_t l_t m_t}) with Ã_{l,-m} = (-1)^m conj(Ã_{lm}).
    Rank 1 gives ms [[0]], coef [1.0].
    """
    return _ms_coefficients(tuple(f.mus), tuple(f.ns), tuple(f.ls), tuple(f.LS))


def _fold_group(functions, coefficients) -> tuple:
    """Sum coef_B(ms) * c_B over the B-functions of one tuple, on the union of their rows."""
    rows = {}
    parts = []
    for f, c in zip(functions, coefficients):
        ms, coef = bfunction_ms_coefficients(f)
        index = [rows.setdefault(row, len(rows)) for row in map(tuple, ms)]
        parts.append((index, coef, c))
    ctildes = np.zeros((len(rows), coefficients.shape[1]))
    for index, coef, c in parts:
        ctildes[index] += coef[:, None] * c[None, :]
    ms = np.array(list(rows), dtype=int).reshape(len(rows), functions[0].rank)
    order = np.lexsort(ms.T[::-1])
    return ms[order], ctildes[order]


def to_ctilde(functions, coefficients) -> list:
    """Fold B-functions with coefficients [nfunc, ndensity] into C-tilde functions.

    B-functions with the same (mu0, mus, ns, ls) become one C-tilde function; rows whose
    coefficients all vanish (relative to the function's largest) are dropped, and so are
    functions left without rows. Output is sorted by (mu0, rank, mus, ns, ls).
    """
    coefficients = np.asarray(coefficients, dtype=float)
    if coefficients.ndim == 1:
        coefficients = coefficients[:, None]
    if len(coefficients) != len(functions):
        raise ValueError(f"{len(functions)} functions but {len(coefficients)} coefficient rows")
    groups = {}
    for i, f in enumerate(functions):
        key = (f.mu0, f.rank, tuple(f.mus), tuple(f.ns), tuple(f.ls))
        groups.setdefault(key, []).append(i)
    folded = []
    for (mu0, _, mus, ns, ls), members in sorted(groups.items()):
        ms, ctildes = _fold_group([functions[i] for i in members], coefficients[members])
        size = np.abs(ctildes).max(axis=1)
        keep = size > ZERO_ROW_TOLERANCE * size.max(initial=0.0)
        if keep.any():
            folded.append(CTildeFunction(mu0, mus, ns, ls, ms[keep], ctildes[keep]))
    return folded
