"""Per-atom projection vectors: the coordinates in which the extrapolation grade is measured.

Three modes; ``linear`` and ``full`` are pacemaker's (``pace_activeset``):

* ``normalised`` (the default): the ``linear`` vector divided by its Euclidean length, so that
  the grade measures the direction of the atom's B-vector, not its size. With c_i = b_i A⁻¹ in
  raw B-functions, the grade is max_j |c_ij| |a_j| / |b_i|: how much larger than the atom's own
  vector are the pieces of active atoms that must cancel to build it. Raw vectors let the
  large B-vectors of compressed, highly coordinated atoms decide both the active set and the
  scale, so an undercoordinated atom (a surface) scores little above a hot bulk atom;
  normalised, it stands out (benchmarks/README.md: Si surfaces held out, AUC of max γ 0.98
  against 0.88 raw), and a change of volume still changes the direction (γ 7 at 0.8 V0).
  An atom without neighbours (B = 0) stays 0.
* ``linear``: b_i = B_i, the B-function values of atom i, [n_functions of its element]
  (PACE's B-projections, so that the grade agrees with pacemaker's .asi; the linear design
  row is s_i B_i, s_i the core-blending factor, 1 away from the core-repulsion zone).
* ``full``: b_i = dE_i/dc, the derivative of the atom's energy with respect to every
  coefficient c_fp of its element, s_i F'_p(rho_ip) B_if, flattened f-major
  [n_functions * ndensity]; equals ``linear`` times F'(rho) for one linear density.

The kernel ``ace._core._projections.atom_projections`` (or the energy pass) computes the
linear or full vectors; ``finish_projections`` normalises them.
"""
from __future__ import annotations

import numpy as np

from ace._core import effective_n_threads
from ace._core._projections import atom_projections
from ace.evaluator import Evaluator, Structure

MODES = ("normalised", "linear", "full")
DEFAULT_MODE = "normalised"


def kernel_mode(mode):
    """The projections the compiled kernel computes for ``mode`` ("linear" or "full")."""
    return "full" if check_mode(mode) == "full" else "linear"


def finish_projections(rows, mode):
    """The kernel's projections [n_atoms, width] in ``mode``: normalised rows scaled in place
    to unit length (zero rows stay zero); returns ``rows``."""
    if mode == "normalised":
        norms = np.sqrt(np.einsum("ij,ij->i", rows, rows))
        np.divide(rows, norms[:, None], out=rows, where=norms[:, None] > 0)
    return rows


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
    rows = atom_projections(evaluator.design_model, structure.species, nl.first, nl.j,
                            np.ascontiguousarray(nl.vectors),
                            np.ascontiguousarray(evaluator.potential.coefficients),
                            mode == "full", effective_n_threads(num_threads))
    return finish_projections(np.asarray(rows), mode)


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
