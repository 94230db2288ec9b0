"""Rotation-invariant coupling of products of spherical harmonics on PACE's binary tree.

A product of K factors with angular momenta ``ls`` is coupled to total angular momentum 0
through PACE's fixed binary tree: leaves are paired (12)(34)..., the resulting intermediates
are paired in order, and an odd leftover leaf is coupled last (docs/model.md, section 5).
The intermediate values ``LS`` (in order of creation: L12, L34, ..., L1234, ...) label one
coupling; its generalized Clebsch-Gordan coefficient is the product of the ordinary CGs of the
tree's nodes.

When factors are identical (same species, n and l) the product is symmetric under swapping
them, so different couplings may give equal or linearly dependent functions;
:func:`independent_couplings` keeps a maximal independent subset (docs/model.md, "Choosing
independent couplings").

``equal_groups`` below is a sequence with one label per factor; factors with the same label
are identical. Example: ``(0, 0, 1)`` for A_x A_x A_y.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from ace.basis.clebsch_gordan import CG_JMAX, clebsch_gordan_array

# The highest rank (number of factors) of a B-function: PACE's coupling trees, and so its files,
# stop here; the basis, the PACE readers and writers all mean this.
MAX_RANK = 6
# Relative size below which a symmetrised coupling is taken as linearly dependent on the
# couplings kept before it (independent ones differ from the span by O(0.01) or more).
INDEPENDENCE_TOLERANCE = 1e-8
# Relative size below which a merged m-space coefficient is a cancellation round-off.
ZERO_TOLERANCE = 1e-12


@lru_cache(maxsize=None)
def coupling_tree(rank: int) -> tuple:
    """PACE's tree for ``rank`` factors as ``(steps, final)``.

    Nodes 0..rank-1 are the leaves; step i couples the nodes ``steps[i]`` into the new node
    ``rank + i`` whose value is LS[i]; ``final`` are the two nodes coupled to L = 0.
    """
    if not 2 <= rank <= MAX_RANK:
        raise ValueError(f"coupling tree needs 2 <= rank <= {MAX_RANK}, got {rank}")
    level = list(range(rank))
    leftover = level.pop() if rank % 2 else None
    steps = []
    while True:
        if leftover is None and len(level) == 2:
            return tuple(steps), (level[0], level[1])
        if leftover is not None and len(level) == 1:
            return tuple(steps), (level[0], leftover)
        paired = []
        for left, right in zip(level[0::2], level[1::2]):
            steps.append((left, right))
            paired.append(rank + len(steps) - 1)
        if len(level) % 2:  # an odd intermediate waits for the next level
            paired.append(level[-1])
        level = paired


def max_lmax(rank: int) -> int:
    """Largest l the Clebsch-Gordan table allows for factors of a rank-``rank`` function.

    From rank 4 on, intermediates reach l1 + l2, so 2 l must stay within the table.
    """
    return CG_JMAX if rank <= 3 else CG_JMAX // 2


def _check_ls(ls) -> tuple:
    ls = tuple(int(l) for l in ls)
    if not 1 <= len(ls) <= MAX_RANK:
        raise ValueError(f"rank must be between 1 and {MAX_RANK}, got ls={ls}")
    if min(ls) < 0:
        raise ValueError(f"negative l in ls={ls}")
    return ls


def valid_intermediates(ls) -> list:
    """All intermediate couplings LS allowed for ``ls``, in lexicographic order.

    Each node of the tree obeys the triangle rule, the final pair must be equal (coupling to
    L = 0) and the sum of ``ls`` must be even (parity); rank 1 needs l = 0.
    """
    return list(_valid_intermediates_cached(_check_ls(ls)))


@lru_cache(maxsize=None)
def _valid_intermediates_cached(ls: tuple) -> tuple:
    if sum(ls) % 2:
        return ()
    if len(ls) == 1:
        return ((),) if ls[0] == 0 else ()
    steps, final = coupling_tree(len(ls))
    found = []

    def assign(values):
        if len(values) == len(ls) + len(steps):
            if values[final[0]] == values[final[1]]:
                found.append(tuple(values[len(ls):]))
            return
        left, right = steps[len(values) - len(ls)]
        a, b = values[left], values[right]
        for value in range(abs(a - b), a + b + 1):
            assign(values + [value])

    assign(list(ls))
    return tuple(sorted(found))


@lru_cache(maxsize=None)
def _cg_table(j1: int, j2: int, J: int) -> np.ndarray:
    """C(j1 m1 j2 m2 | J, m1 + m2) as an array indexed [m1 + j1, m2 + j2] (0 if |M| > J)."""
    m1 = np.arange(-j1, j1 + 1)[:, None]
    m2 = np.arange(-j2, j2 + 1)[None, :]
    table = clebsch_gordan_array(j1, m1, j2, m2, J, m1 + m2)
    table.setflags(write=False)
    return table


def _leaf(l: int):
    ms = np.arange(-l, l + 1)
    return ms[:, None], ms, np.ones(len(ms))


def _couple(left, right, l_left, l_right, L, final=False):
    """Couple two subtrees (ms [n, leaves], M [n], coef [n]) to total L; drop zero rows."""
    ms_a, M_a, c_a = left
    ms_b, M_b, c_b = right
    M = M_a[:, None] + M_b[None, :]
    ia, ib = np.nonzero((M == 0) if final else (np.abs(M) <= L))
    coef = c_a[ia] * c_b[ib] * _cg_table(l_left, l_right, L)[M_a[ia] + l_left, M_b[ib] + l_right]
    nonzero = coef != 0.0
    ia, ib = ia[nonzero], ib[nonzero]
    ms = np.concatenate([ms_a[ia], ms_b[ib]], axis=1)
    return ms, M_a[ia] + M_b[ib], coef[nonzero]


@lru_cache(maxsize=None)
def _generalized_cg_cached(ls: tuple, LS: tuple):
    if len(ls) == 1:
        ms, coef = np.zeros((1, 1), dtype=np.int64), np.ones(1)
        ms.setflags(write=False)
        coef.setflags(write=False)
        return ms, coef
    steps, final = coupling_tree(len(ls))
    values = list(ls) + list(LS)
    nodes = {i: _leaf(l) for i, l in enumerate(ls)}
    leaves_of = {i: [i] for i in range(len(ls))}
    for i, (a, b) in enumerate(steps):
        node = len(ls) + i
        nodes[node] = _couple(nodes.pop(a), nodes.pop(b), values[a], values[b], values[node])
        leaves_of[node] = leaves_of[a] + leaves_of[b]
    a, b = final
    ms, _, coef = _couple(nodes[a], nodes[b], values[a], values[b], 0, final=True)
    ms = ms[:, np.argsort(leaves_of[a] + leaves_of[b])]  # back to the order of ls
    order = np.argsort(row_codes(ms), kind="stable")
    ms, coef = ms[order], coef[order]
    ms.setflags(write=False)
    coef.setflags(write=False)
    return ms, coef


def generalized_cg(ls, LS) -> tuple:
    """Full m-space generalized CG of the coupling (ls, LS).

    Returns ``(ms [ncomb, rank] int, coef [ncomb])`` with only the nonzero entries (Σm = 0,
    every intermediate |M| <= L), rows in lexicographic order of ms. Arrays are read-only
    (they are cached).
    """
    ls = _check_ls(ls)
    LS = tuple(int(L) for L in LS)
    if LS not in _valid_intermediates_cached(ls):
        raise ValueError(f"invalid coupling ls={ls}, LS={LS}")
    return _generalized_cg_cached(ls, LS)


def canonical_groups(equal_groups, ls=None) -> tuple:
    """Relabel ``equal_groups`` by first occurrence, e.g. ('b', 'a', 'b') -> (0, 1, 0)."""
    labels = {}
    groups = tuple(labels.setdefault(g, len(labels)) for g in equal_groups)
    if ls is not None:
        if len(groups) != len(ls):
            raise ValueError(f"equal_groups {tuple(equal_groups)} and ls {tuple(ls)} "
                             f"differ in length")
        for label in set(groups):
            if len({l for l, g in zip(ls, groups) if g == label}) > 1:
                raise ValueError(f"identical factors must share l: ls={tuple(ls)}, "
                                 f"groups={groups}")
    return groups


def _group_columns(groups) -> list:
    """Column indices of each group with more than one member."""
    columns = {}
    for position, label in enumerate(groups):
        columns.setdefault(label, []).append(position)
    return [cols for cols in columns.values() if len(cols) > 1]


def canonical_rows(ms, groups) -> np.ndarray:
    """Representatives of m-tuples under permutations of identical factors.

    The m's of each group are sorted in descending order, which keeps a tuple whose first
    nonzero m is positive in that half of m-space (the group's first slot gets its largest m).
    """
    ms = np.array(ms, dtype=np.int64, copy=True)
    for cols in _group_columns(groups):
        ms[:, cols] = -np.sort(-ms[:, cols], axis=1)
    return ms


def row_codes(ms, lmax=CG_JMAX) -> np.ndarray:
    """One integer per m-tuple (rows of ``ms``, every |m| <= lmax), increasing with the tuple's
    lexicographic order: m-tuples compared, merged and matched as numbers."""
    base = 2 * lmax + 1
    codes = np.zeros(len(ms), dtype=np.int64)
    for column in np.asarray(ms, dtype=np.int64).T:
        codes = codes * base + (column + lmax)
    return codes


def merge_equivalent(ms, coef, equal_groups):
    """Sum coefficients of m-tuples that are permutations of each other within identical factors.

    Valid because the product of identical factors does not depend on their order. Returns
    the representatives (see :func:`canonical_rows`) in lexicographic order with summed
    coefficients; rows whose sum cancels are kept (callers decide on tolerances).
    """
    ms = canonical_rows(ms, canonical_groups(equal_groups))
    _, first, inverse = np.unique(row_codes(ms), return_index=True, return_inverse=True)
    summed = np.bincount(inverse.ravel(), weights=coef, minlength=len(first))
    return ms[first], summed


def half_space(ms, coef, equal_groups=None):
    """PACE's half m-space form of Σ_m coef_m Π A_m (a real number when coef_{-m} = coef_m).

    Keeps the m-tuples whose first nonzero m is positive, with doubled coefficient, and the
    all-zero tuple, so that the sum equals Σ_rows coef Re(Π A_m) given A_{l,-m} = (-1)^m A*_{lm}.
    Then, if ``equal_groups`` is given, merges permutation-equivalent tuples within identical
    factors (only valid there: the products are then equal) and drops cancelled rows.
    """
    ms = np.asarray(ms, dtype=int)
    coef = np.asarray(coef, dtype=float)
    nonzero = ms != 0
    first = np.argmax(nonzero, axis=1)
    sign = np.sign(ms[np.arange(len(ms)), first]) * nonzero.any(axis=1)
    keep = sign >= 0
    ms, coef = ms[keep], np.where(sign[keep] > 0, 2.0, 1.0) * coef[keep]
    if equal_groups is not None:
        ms, coef = merge_equivalent(ms, coef, equal_groups)
    if len(coef):
        significant = np.abs(coef) > ZERO_TOLERANCE * np.abs(coef).max()
        ms, coef = ms[significant], coef[significant]
    return ms, coef


def invariant_dimension(ls, equal_groups=None) -> int:
    """Number of independent invariants of the product, symmetrised over identical factors.

    Character theory: for a representation with integer weights, the invariants number
    (multiplicity of weight 0) - (multiplicity of weight 1). Weights are counted over
    multisets of m's within each group of identical factors.
    """
    ls = _check_ls(ls)
    groups = canonical_groups(range(len(ls)) if equal_groups is None else equal_groups, ls)
    offset = sum(ls)  # weights shifted to be non-negative
    total = np.ones(1, dtype=np.int64)
    for label in sorted(set(groups)):
        size = groups.count(label)
        l = ls[groups.index(label)]
        total = np.convolve(total, _multiset_weights(l, size))
    return int(total[offset] - (total[offset + 1] if offset + 1 < len(total) else 0))


@lru_cache(maxsize=None)
def _multiset_weights(l: int, size: int) -> np.ndarray:
    """counts[w] = number of multisets of ``size`` m's from -l..l with Σ(m + l) = w."""
    counts = np.zeros((size + 1, 2 * l * size + 1), dtype=np.int64)  # [items, weight]
    counts[0, 0] = 1
    for shifted_m in range(2 * l + 1):  # add each m value any number of times, in order
        for items in range(1, size + 1):
            counts[items, shifted_m:] += counts[items - 1, :counts.shape[1] - shifted_m]
    return counts[size]


def _symmetrised_piece(ls, LS, groups) -> tuple:
    """(codes, coef) of one coupling over representatives of permutation-equivalent m's."""
    ms, coef = generalized_cg(ls, LS)
    return row_codes(canonical_rows(ms, groups)), coef


def _stack(pieces) -> np.ndarray:
    """Stack sparse (codes, coef) vectors densely over their common rows, [nvec, nrows]."""
    columns, column_of = np.unique(np.concatenate([codes for codes, _ in pieces]),
                                   return_inverse=True)
    owners = np.concatenate([np.full(len(codes), i) for i, (codes, _) in enumerate(pieces)])
    summed = np.bincount(owners * len(columns) + column_of.ravel(),
                         weights=np.concatenate([coef for _, coef in pieces]),
                         minlength=len(pieces) * len(columns))
    return summed.reshape(len(pieces), len(columns))


def select_independent(vectors, tolerance=INDEPENDENCE_TOLERANCE, limit=None) -> list:
    """Indices of a maximal linearly independent subset of the rows, taken greedily in order.

    Gram-Schmidt (applied twice for stability): a row is kept when its part orthogonal to the
    rows kept so far exceeds ``tolerance`` times the largest row norm. The scale is global
    because a symmetrised coupling can cancel to round-off size, which is zero, not small.
    Stops early once ``limit`` rows are kept.
    """
    scale = np.linalg.norm(vectors, axis=1).max(initial=0.0)
    basis = np.zeros((0, vectors.shape[1]))
    kept = []
    for i, vector in enumerate(vectors):
        if limit is not None and len(kept) == limit:
            break
        residual = vector - basis.T @ (basis @ vector)
        residual -= basis.T @ (basis @ residual)
        size = np.linalg.norm(residual)
        if size > tolerance * scale:
            kept.append(i)
            basis = np.vstack([basis, residual / size])
    return kept


@lru_cache(maxsize=None)
def _independent_cached(ls: tuple, groups: tuple) -> tuple:
    candidates = _valid_intermediates_cached(ls)
    if not candidates:  # odd Σl (or rank 1 with l > 0): no scalar couplings
        return ()
    expected = invariant_dimension(ls, groups)
    if expected == len(candidates):  # e.g. all factors distinct: the couplings are orthonormal
        return tuple(candidates)
    # Candidates are symmetrised in growing batches: the greedy choice usually completes
    # long before the last candidate, and building the vectors is the expensive part.
    pieces, kept = [], []
    while len(kept) < expected and len(pieces) < len(candidates):
        batch = candidates[len(pieces):len(pieces) + max(2 * expected, len(pieces))]
        pieces += [_symmetrised_piece(ls, LS, groups) for LS in batch]
        kept = select_independent(_stack(pieces), limit=expected)
    if len(kept) != expected:
        raise RuntimeError(f"found {len(kept)} independent couplings for ls={ls}, "
                           f"groups={groups}; expected {expected}")
    return tuple(candidates[i] for i in kept)


def independent_couplings(ls, equal_groups=None) -> list:
    """A maximal set of couplings LS of ``ls`` giving linearly independent functions.

    ``equal_groups`` labels identical factors (None: all distinct). Candidates are tried in
    lexicographic order of LS and kept when independent of those before, so the result is
    deterministic and every kept function is an ordinary PACE coupling. Cached per
    (ls, equal pattern).
    """
    ls = _check_ls(ls)
    if equal_groups is None:
        equal_groups = range(len(ls))
    groups = canonical_groups(equal_groups, ls)
    return list(_independent_cached(ls, groups))
