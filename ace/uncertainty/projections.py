"""Per-atom projection vectors: the coordinates in which the extrapolation grade is measured.

Two modes (as pacemaker's ``pace_activeset``):

* ``linear``: b_i = B_i, the B-function values of atom i, [n_functions of its element]
  (PACE's B-projections, so that the grade agrees with pacemaker's .asi; the linear design
  row is s_i B_i, s_i the core-blending factor, 1 away from the core-repulsion zone).
* ``full``: b_i = dE_i/dc, the derivative of the atom's energy with respect to every
  coefficient c_fp of its element, s_i F'_p(rho_ip) B_if, flattened f-major
  [n_functions * ndensity]; equals ``linear`` times F'(rho) for one linear density.

Both come from the compiled kernel ``ace._core._projections.atom_projections``.
"""
from __future__ import annotations

import numpy as np

from ace._core import effective_n_threads
from ace._core._projections import atom_projections
from ace.evaluator import Evaluator, Structure

MODES = ("linear", "full")


def check_mode(mode):
    if mode not in MODES:
        raise ValueError(f"unknown active-set mode '{mode}' (known: {', '.join(MODES)})")
    return mode


def projection_widths(potential, mode):
    """Length of the projection vector of each element, {element index: width}."""
    check_mode(mode)
    counts = np.bincount([f.mu0 for f in potential.functions], minlength=len(potential.elements))
    return {e: int(counts[e]) * (potential.embeddings[e].ndensity if mode == "full" else 1)
            for e in range(len(potential.elements))}


def structure_projections(evaluator, structure, mode, neighbour_list=None, num_threads=None):
    """Projection vectors of one structure: array [n_atoms, width] (row i padded with zeros
    beyond the width of its element; see projection_widths)."""
    check_mode(mode)
    nl = (neighbour_list if neighbour_list is not None
          else evaluator.neighbours(structure, num_threads))
    return atom_projections(evaluator.design_model, structure.species, nl.first, nl.j,
                            np.ascontiguousarray(nl.vectors),
                            np.ascontiguousarray(evaluator.potential.coefficients),
                            mode == "full", effective_n_threads(num_threads))


def per_element_projections(potential, structures, mode, num_threads=None, evaluator=None):
    """Projections of every atom of ``structures`` (ASE Atoms) grouped by element:
    {element index: (projections [n, width], structure index [n], atom index [n])}."""
    evaluator = evaluator or Evaluator(potential)
    widths = projection_widths(potential, mode)
    parts = {e: ([], [], []) for e in widths}
    for k, atoms in enumerate(structures):
        structure = Structure.from_atoms(potential, atoms)
        rows = structure_projections(evaluator, structure, mode, num_threads=num_threads)
        for e, width in widths.items():
            atoms_of_e = np.flatnonzero(structure.species == e)
            parts[e][0].append(rows[atoms_of_e, :width])
            parts[e][1].append(np.full(len(atoms_of_e), k))
            parts[e][2].append(atoms_of_e)
    return {e: (np.concatenate(p) if p else np.zeros((0, widths[e])),
                np.concatenate(s).astype(np.int64) if s else np.zeros(0, np.int64),
                np.concatenate(a).astype(np.int64) if a else np.zeros(0, np.int64))
            for e, (p, s, a) in parts.items()}
