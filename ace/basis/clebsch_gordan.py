"""Condon-Shortley Clebsch-Gordan coefficients C(j1 m1 j2 m2 | J M) for integer j <= CG_JMAX.

Values come from ``data/clebsch_gordan.txt``, computed exactly with sympy by
``python -m ace._core.generate_tables``. The file lists only a canonical quarter of the
coefficients; on first use it is expanded by the exchange and m-reversal symmetries into a dense
array, so a lookup is a single index.
"""
from __future__ import annotations

import operator
from pathlib import Path

import numpy as np

CG_JMAX = 12

CG_TABLE_PATH = Path(__file__).resolve().parent / "data" / "clebsch_gordan.txt"

# Dense table indexed [jm(j1, m1), jm(j2, m2), J] with jm(j, m) = j^2 + j + m, which packs every
# (j, m) with |m| <= j into 0 .. (CG_JMAX+1)^2 - 1. M = m1 + m2 is implied.
_N_JM = (CG_JMAX + 1) ** 2
_dense_table = None


def _jm_index(j, m):
    return j * j + j + m


def _load_dense_table():
    global _dense_table
    if _dense_table is not None:
        return _dense_table
    file_jmax = None
    with open(CG_TABLE_PATH, encoding="ascii") as fh:
        for line in fh:
            if not line.startswith("#"):
                break
            if line.startswith("# JMAX ="):
                file_jmax = int(line.split("=")[1])
    if file_jmax != CG_JMAX:
        raise RuntimeError(f"{CG_TABLE_PATH} has JMAX = {file_jmax}, expected CG_JMAX = "
                           f"{CG_JMAX}; regenerate it with python -m ace._core.generate_tables")
    data = np.loadtxt(CG_TABLE_PATH, comments="#", ndmin=2)
    j1, m1, j2, m2, big_j = data[:, :5].astype(np.int64).T
    value = data[:, 5]
    # (-1)^(j1+j2-J): the sign of both the exchange and the m-reversal symmetry
    sign = np.where((j1 + j2 - big_j) % 2 == 0, 1.0, -1.0)

    table = np.zeros((_N_JM, _N_JM, CG_JMAX + 1))
    # Each later assignment may rewrite an entry an earlier one set (e.g. j1 == j2 and m1 == m2
    # maps to itself under exchange); the values agree, so the order does not matter.
    table[_jm_index(j1, m1), _jm_index(j2, m2), big_j] = value
    table[_jm_index(j2, m2), _jm_index(j1, m1), big_j] = sign * value
    table[_jm_index(j1, -m1), _jm_index(j2, -m2), big_j] = sign * value
    table[_jm_index(j2, -m2), _jm_index(j1, -m1), big_j] = value
    table.setflags(write=False)
    _dense_table = table
    return table


def _raise_beyond_limit(name, j):
    raise ValueError(f"Clebsch-Gordan coefficients are tabulated only for j <= CG_JMAX = "
                     f"{CG_JMAX}, got {name} = {j}")


def clebsch_gordan_array(j1, m1, j2, m2, J, M):
    """Vectorised ``clebsch_gordan``: integer array arguments, broadcast against each other.

    Returns a float array; 0.0 wherever the coefficient is forbidden (M != m1 + m2, |m| > j,
    negative j, or the triangle rule violated).
    """
    arrays = [np.asarray(a) for a in (j1, m1, j2, m2, J, M)]
    if any(a.dtype.kind not in "iu" for a in arrays):
        raise TypeError("clebsch_gordan_array takes integer arrays (integer j and m only)")
    j1, m1, j2, m2, J, M = np.broadcast_arrays(*(a.astype(np.int64) for a in arrays))
    for name, j in (("j1", j1), ("j2", j2), ("J", J)):
        if j.size and j.max() > CG_JMAX:
            _raise_beyond_limit(name, j.max())
    allowed = ((j1 >= 0) & (j2 >= 0) & (J >= 0)
               & (np.abs(m1) <= j1) & (np.abs(m2) <= j2) & (np.abs(M) <= J)
               & (M == m1 + m2)
               & (J >= np.abs(j1 - j2)) & (J <= j1 + j2))
    table = _load_dense_table()
    result = np.zeros(j1.shape)
    result[allowed] = table[_jm_index(j1[allowed], m1[allowed]),
                            _jm_index(j2[allowed], m2[allowed]), J[allowed]]
    return result


def clebsch_gordan(j1, m1, j2, m2, J, M):
    """C(j1 m1 j2 m2 | J M) with the Condon-Shortley phase, for integer j1, j2, J <= CG_JMAX.

    Returns 0.0 for forbidden combinations (M != m1 + m2, |m| > j, triangle rule violated);
    raises ValueError if any j exceeds CG_JMAX.
    """
    j1, m1, j2, m2, J, M = map(operator.index, (j1, m1, j2, m2, J, M))  # integers only
    for name, j in (("j1", j1), ("j2", j2), ("J", J)):
        if j > CG_JMAX:
            _raise_beyond_limit(name, j)
    if (min(j1, j2, J) < 0 or abs(m1) > j1 or abs(m2) > j2 or abs(M) > J or M != m1 + m2
            or not abs(j1 - j2) <= J <= j1 + j2):
        return 0.0
    table = _load_dense_table()
    return float(table[_jm_index(j1, m1), _jm_index(j2, m2), J])
