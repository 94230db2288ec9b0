"""D-optimal selection of new training structures (as pacemaker's ``pace_select``).

Greedy on top of an active set: score every candidate structure by its max gamma against the
current active rows, take the best, fold its atoms into the active rows by MaxVol (so the
volume they span can only grow), rescore, and repeat. Candidates whose max gamma is at most
``min_gamma`` (default 1.1, pacemaker's lower bound for "extrapolating") are covered by the set
and skipped: a near-duplicate of one already taken falls to about 1 once that one is in (not
exactly: the inverse of the active rows amplifies a small displacement), so it is not picked
twice. Only atoms with gamma above the MaxVol tolerance are kept in memory.
"""
from __future__ import annotations

import numpy as np

from ace.evaluator import Evaluator, Structure
from ace.uncertainty.maxvol import maxvol
from ace.uncertainty.projections import projection_widths, structure_projections

DEFAULT_MIN_GAMMA = 1.1


def select_structures(potential, active_set, candidates, n, tolerance=None,
                      min_gamma=DEFAULT_MIN_GAMMA, num_threads=None, progress=None):
    """Indices of up to ``n`` structures of ``candidates`` (ASE Atoms) that extend the active
    set most, with the max gamma each had when it was picked: [(index, gamma), ...]."""
    active_set.check(potential)
    if n < 1:
        raise ValueError(f"the number of structures to select must be >= 1, got {n}")
    tolerance = active_set.tolerance if tolerance is None else float(tolerance)
    evaluator = Evaluator(potential)
    widths = projection_widths(potential, active_set.mode)
    elements = potential.elements
    rows = {e: [] for e in widths}
    owners = {e: [] for e in widths}
    for k, atoms in enumerate(candidates):
        structure = Structure.from_atoms(potential, atoms)
        projections = structure_projections(evaluator, structure, active_set.mode,
                                            num_threads=num_threads)
        gamma = active_set.gamma(projections, structure.species, num_threads)
        for e, width in widths.items():
            outside = np.flatnonzero((structure.species == e) & (gamma > tolerance))
            rows[e].append(projections[outside, :width])
            owners[e].append(np.full(len(outside), k))
        if progress and (k + 1) % 100 == 0:
            progress(f"select: graded {k + 1}/{len(candidates)} candidates")
    rows = {e: np.vstack(r) if r else np.zeros((0, widths[e])) for e, r in rows.items()}
    owners = {e: np.concatenate(o).astype(np.int64) if o else np.zeros(0, np.int64)
              for e, o in owners.items()}
    matrices = {e: active_set.matrices[elements[e]].copy() for e in widths}
    inverses = {e: active_set.inverses[elements[e]].copy() for e in widths}
    picked = []
    for _ in range(n):
        score = np.zeros(len(candidates))
        for e in widths:
            if len(rows[e]):
                np.maximum.at(score, owners[e], np.abs(rows[e] @ inverses[e]).max(axis=1))
        best = int(np.argmax(score)) if len(score) else 0
        if not len(score) or score[best] <= max(min_gamma, tolerance):
            break
        picked.append((best, float(score[best])))
        for e in widths:
            mine = owners[e] == best
            if mine.any():
                combined = np.vstack([matrices[e], rows[e][mine]])
                matrices[e] = combined[maxvol(combined, tolerance)]
                inverses[e] = np.linalg.inv(matrices[e])
                rows[e], owners[e] = rows[e][~mine], owners[e][~mine]
    return picked
