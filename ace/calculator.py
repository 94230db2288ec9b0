"""ASE calculator for ACE potentials.

Energy E = sum_i E_i; forces F_k = -dE/dr_k from the adjoint of the core; stress in ASE's
convention sigma = (1/V) dE/d(strain) = (1/V) sum_ij D_ij (x) dE/dD_ij (symmetrised, Voigt order
xx, yy, zz, yz, xz, xy).
"""
from __future__ import annotations

import os

import numpy as np
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from ace.evaluator import Evaluator, Structure


def load_potential(source):
    """An ACEPotential from a potential object or a file path (ours, or PACE .yaml/.yace)."""
    from ace.potential import ACEPotential
    if isinstance(source, ACEPotential):
        return source
    path = os.fspath(source)
    with open(path) as fh:
        first = fh.readline()
    if first.startswith("# ace-potential"):
        return ACEPotential.load(path)
    try:
        from ace import pace
    except ImportError as exc:  # pragma: no cover - PACE import not available
        raise ValueError(f"{path}: not an ace potential file") from exc
    return pace.load_pace(path)


class ACECalculator(Calculator):
    """ASE calculator: ``ACECalculator("potential.yaml")`` or ``ACECalculator(potential)``.

    ``num_threads`` sets the OpenMP threads (None follows OMP_NUM_THREADS).
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]
    default_parameters = {"num_threads": None}

    def __init__(self, potential, num_threads=None, **kwargs):
        Calculator.__init__(self, num_threads=num_threads, **kwargs)
        self.potential = load_potential(potential)
        self.evaluator = Evaluator(self.potential)
        self._structure = None

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        Calculator.calculate(self, atoms, properties, system_changes)
        atoms = self.atoms
        # species map and checks are rebuilt only when the composition changes
        if self._structure is None or "numbers" in system_changes:
            self._structure = Structure.from_atoms(self.potential, atoms)
        structure = self._structure
        structure.positions = atoms.positions
        structure.cell = atoms.cell.array
        structure.pbc = atoms.pbc
        result = self.evaluator.compute(structure, self.parameters.num_threads)
        self.results["energy"] = result.energy
        self.results["free_energy"] = result.energy
        self.results["energies"] = result.energies
        self.results["forces"] = result.forces
        if atoms.pbc.all() and abs(atoms.cell.volume) > 1e-12:
            strain = 0.5 * (result.strain_derivative + result.strain_derivative.T)
            self.results["stress"] = full_3x3_to_voigt_6_stress(strain / atoms.cell.volume)
        elif "stress" in properties:
            raise PropertyNotImplementedError("stress needs a fully periodic cell with volume")

    def __repr__(self):
        return f"ACECalculator({self.potential!r}, num_threads={self.parameters.num_threads})"
