"""Reusable physics checks for any ASE calculator (ours or another).

Each ``check_*`` function raises AssertionError with the numbers when a check fails and returns
the measured figures otherwise, so they serve in test suites and in interactive validation.
"""
from __future__ import annotations

import numpy as np


def finite_difference_errors(atoms, steps=None, n_atoms=4, rng=None):
    """Max |F + dE/dr| over a sweep of central-difference steps, for a few random atoms.

    Returns (steps, errors). The analytic forces come from ``atoms.calc`` at the given positions.
    """
    steps = np.logspace(-2, -7, 6) if steps is None else np.asarray(steps)
    rng = np.random.default_rng(0) if rng is None else rng
    calc = _calculator(atoms)
    atoms = atoms.copy()
    atoms.calc = calc
    forces = atoms.get_forces()
    chosen = rng.choice(len(atoms), size=min(n_atoms, len(atoms)), replace=False)
    errors = []
    for h in steps:
        worst = 0.0
        for a in chosen:
            for c in range(3):
                numerical = _central_difference(atoms, calc, a, c, h)
                worst = max(worst, abs(forces[a, c] + numerical))
        errors.append(worst)
    return steps, np.array(errors)


def _calculator(atoms):
    if atoms.calc is None:
        raise ValueError("atoms need a calculator")
    return atoms.calc


def _central_difference(atoms, calc, a, c, h):
    work = atoms.copy()
    work.calc = calc
    work.positions[a, c] += h
    e_plus = work.get_potential_energy()
    work.positions[a, c] -= 2 * h
    e_minus = work.get_potential_energy()
    return (e_plus - e_minus) / (2 * h)


def check_forces(atoms, tolerance=1e-6, drop=100.0, n_atoms=4):
    """Forces = -grad E: the smallest finite-difference error is below ``tolerance`` (relative to
    the largest force, at least 1 eV/Å) and is at least ``drop`` times below the error at the
    largest step (the step sweep falls by orders of magnitude, as ACEbase's fdtest)."""
    calc = _calculator(atoms)
    atoms = atoms.copy()
    atoms.calc = calc
    scale = max(1.0, float(np.abs(atoms.get_forces()).max()))
    steps, errors = finite_difference_errors(atoms, n_atoms=n_atoms)
    best = errors.min()
    if not best <= tolerance * scale:
        raise AssertionError(f"forces disagree with -dE/dr: errors {errors} at steps {steps}")
    if not (errors[0] >= drop * best or errors[0] <= tolerance * scale):
        raise AssertionError(f"finite-difference error does not fall with the step: {errors}")
    return steps, errors


def check_stress(atoms, tolerance=1e-6):
    """Stress = strain derivative of the energy: the cell "forces" of a FrechetCellFilter against
    their finite differences (ASE's gradient_test procedure, sweeping the step)."""
    from ase.calculators.test import calculate_numerical_forces
    from ase.filters import FrechetCellFilter

    calc = _calculator(atoms)
    atoms = atoms.copy()
    atoms.calc = calc
    cell_filter = FrechetCellFilter(atoms)
    cell_rows = list(range(len(atoms), len(atoms) + 3))
    analytic = cell_filter.get_forces()[cell_rows]
    errors = [np.abs(calculate_numerical_forces(cell_filter, eps, cell_rows) - analytic).max()
              for eps in (1e-3, 1e-4, 1e-5, 1e-6)]
    scale = max(1.0, np.abs(analytic).max())
    if not min(errors) <= tolerance * scale:
        raise AssertionError(f"stress disagrees with the strain derivative: errors {errors} eV "
                             f"(scale {scale:.3e})")
    return min(errors)


def random_rotation(rng):
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q *= np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q


def check_invariance(atoms, rtol=1e-10, rng=None):
    """Energy invariant, forces covariant under rotation, translation and permutation."""
    rng = np.random.default_rng(1) if rng is None else rng
    calc = _calculator(atoms)
    reference = atoms.copy()
    reference.calc = calc
    energy = reference.get_potential_energy()
    forces = reference.get_forces()
    scale_e = max(1.0, abs(energy))
    scale_f = max(1.0, np.abs(forces).max())

    def compare(name, other, expected_forces):
        other.calc = calc
        de = abs(other.get_potential_energy() - energy)
        df = np.abs(other.get_forces() - expected_forces).max()
        if de > rtol * scale_e or df > rtol * scale_f * 10:
            raise AssertionError(f"{name}: energy changed by {de:.3e}, forces by {df:.3e}")
        return de

    rotation = random_rotation(rng)
    rotated = reference.copy()
    rotated.positions = reference.positions @ rotation.T
    rotated.cell = reference.cell.array @ rotation.T
    results = {"rotation": compare("rotation", rotated, forces @ rotation.T)}

    translated = reference.copy()
    translated.positions += rng.standard_normal(3) * 3.7
    results["translation"] = compare("translation", translated, forces)

    order = rng.permutation(len(reference))
    permuted = reference[order]
    results["permutation"] = compare("permutation", permuted, forces[order])
    return results
