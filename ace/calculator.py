"""ASE calculator for ACE potentials.

Energy E = sum_i E_i; forces F_k = -dE/dr_k from the adjoint of the core; stress in ASE's
convention sigma = (1/V) dE/d(strain) = (1/V) sum_ij D_ij (x) dE/dD_ij (symmetrised, Voigt order
xx, yy, zz, yz, xz, xy).
"""
from __future__ import annotations

import numpy as np
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from ace._core import effective_n_threads
from ace.evaluator import Evaluator, Structure
from ace.io import load_potential
from ace.limits import check_skin
from ace.neighbours import build_neighbour_list, check_geometry, update_vectors
from ace.uncertainty.committee import CommitteeEvaluator
from ace.uncertainty.grading import DEFAULT_GAMMA_WARNING, Grader

GAMMA_PROPERTIES = {"gamma", "max_gamma", "gamma_p90"}
COMMITTEE_PROPERTIES = {"energy_std", "energies_std", "forces_std", "stress_std"}

# Neighbour lists are built with this margin beyond the cutoff and reused, with updated pair
# vectors, until some atom has moved by more than half of it.
NEIGHBOUR_SKIN = 0.5  # Å


def private_copy(potential, source):
    """``potential`` itself when it was just loaded from a file, else a deep copy."""
    import copy
    return copy.deepcopy(potential) if potential is source else potential


class ACECalculator(Calculator):
    """ASE calculator: ``ACECalculator("potential.yaml")`` or ``ACECalculator(potential)``.

    ``num_threads`` sets the OpenMP threads (None follows OMP_NUM_THREADS).
    ``active_set`` (an ``ace.uncertainty.ActiveSet`` or its file) adds the per-atom
    extrapolation grade ``results["gamma"]``, ``results["max_gamma"]`` and the 90th percentile
    over the atoms ``results["gamma_p90"]``; a structure whose
    max gamma exceeds ``gamma_warning`` gives a warning, one above ``gamma_stop`` raises
    ``ace.uncertainty.ExtrapolationError`` (None disables either).
    ``committee=True`` (a linear potential with a committee) adds the committee spread
    ``results["energy_std"]``, ``"energies_std"`` (per atom), ``"forces_std"`` [n, 3] and
    ``"stress_std"`` (Voigt), from one pass of the design rows.
    Both are computed on every ``uncertainty_interval``-th call (default every call) and
    whenever asked for (``calc.get_property("max_gamma", atoms)``), as LAMMPS'
    pace/extrapolation computes gamma every N steps: in MD they cost more than the energy.
    """

    implemented_properties = ["energy", "free_energy", "energies", "forces", "stress"]
    default_parameters = {"num_threads": None, "skin": NEIGHBOUR_SKIN,
                          "gamma_warning": DEFAULT_GAMMA_WARNING, "gamma_stop": None,
                          "uncertainty_interval": 1}

    def __init__(self, potential, num_threads=None, active_set=None, committee=False, **kwargs):
        effective_n_threads(num_threads)  # a bad thread count fails here, not mid-MD
        check_skin(kwargs.get("skin", NEIGHBOUR_SKIN))
        Calculator.__init__(self, num_threads=num_threads, **kwargs)
        interval = self.parameters.uncertainty_interval
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise ValueError(f"uncertainty_interval must be a whole number >= 1, not {interval!r}")
        # a private copy: changing the caller's potential later must not mix old and new
        # parameters in this calculator's compiled model
        self.potential = private_copy(load_potential(potential), potential)
        # a physical potential (ace.physical.potential: traditional, ...) brings its own
        # evaluator with the same compute/check_distances interface
        physical = getattr(self.potential, "kind", None) is not None
        if physical and (active_set is not None or committee):
            raise ValueError(f"active sets and committees belong to ACE potentials; a "
                             f"{self.potential.kind} potential has neither")
        self.evaluator = self.potential.evaluator() if physical else Evaluator(self.potential)
        self.grader = None if active_set is None else Grader(self.potential, active_set,
                                                                 self.evaluator)
        self.committee = CommitteeEvaluator(self.potential, self.evaluator) if committee else None
        self.implemented_properties = (
            list(type(self).implemented_properties)
            + (sorted(GAMMA_PROPERTIES) if self.grader is not None else [])
            + (sorted(COMMITTEE_PROPERTIES) if committee else []))
        self._structure = None
        self._neighbours = None
        self._positions_at_build = None
        self._calls = 0

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        Calculator.calculate(self, atoms, properties, system_changes)
        atoms = self.atoms
        if (not system_changes and "energy" in self.results
                and set(properties) <= GAMMA_PROPERTIES | COMMITTEE_PROPERTIES):
            # asked later for the same structure (ASE keeps the other results): only these
            self._uncertainty(atoms, self._structure, self._neighbours, properties, False)
            return
        # species map and checks are rebuilt only when the composition changes
        if self._structure is None or "numbers" in system_changes:
            self._structure = Structure.from_atoms(self.potential, atoms)
        structure = self._structure
        structure.positions = atoms.positions
        structure.cell = atoms.cell.array
        structure.pbc = atoms.pbc
        nl = self._neighbour_list(structure, system_changes)
        due = self._calls % int(self.parameters.uncertainty_interval) == 0
        # gamma's projection vectors come out of the energy pass (one atomic base, one tree)
        grade = self.grader is not None and (due or bool(set(properties) & GAMMA_PROPERTIES))
        # (only an ACE evaluator takes projections: the other kinds have no active set)
        extra = {"projections": self.grader.kernel_mode} if grade else {}
        result = self.evaluator.compute(structure, self.parameters.num_threads, nl, **extra)
        self.results["energy"] = result.energy
        self.results["free_energy"] = result.energy
        self.results["energies"] = result.energies
        self.results["forces"] = result.forces
        if atoms.pbc.all() and abs(atoms.cell.volume) > 1e-12:
            strain = 0.5 * (result.strain_derivative + result.strain_derivative.T)
            self.results["stress"] = full_3x3_to_voigt_6_stress(strain / atoms.cell.volume)
        elif "stress" in properties:
            raise PropertyNotImplementedError("stress needs a fully periodic cell with volume")
        self._calls += 1
        self._uncertainty(atoms, structure, nl, properties, due, getattr(result, "projections", None))

    def _uncertainty(self, atoms, structure, nl, properties, due, projections=None):
        """Gamma and the committee spread: when ``due`` or when asked for (``projections``
        from the energy pass, else the projection kernel computes them)."""
        asked = set(properties)
        if self.grader is not None and (due or asked & GAMMA_PROPERTIES):
            gamma = self.grader.gamma(structure, nl, self.parameters.num_threads, projections)
            self.results["gamma"] = gamma
            self.results["max_gamma"] = float(gamma.max(initial=0.0))
            # structure-level grade less sensitive to one hot atom (benchmarks/README.md)
            self.results["gamma_p90"] = float(np.percentile(gamma, 90)) if len(gamma) else 0.0
            self.grader.check(self.results["max_gamma"], self.parameters.gamma_warning,
                              self.parameters.gamma_stop)
        if self.committee is not None and (due or asked & COMMITTEE_PROPERTIES):
            periodic = atoms.pbc.all() and abs(atoms.cell.volume) > 1e-12
            self.results.update(self.committee.compute(
                structure, nl, self.parameters.num_threads,
                atoms.cell.volume if periodic else None))

    def _neighbour_list(self, structure, system_changes):
        """Reuse the pairs while only positions change by less than half the skin."""
        skin = check_skin(self.parameters.skin)
        effective_n_threads(self.parameters.num_threads)
        nl = self._neighbours
        moved = (np.inf if nl is None or set(system_changes) - {"positions"}
                 else np.linalg.norm(structure.positions - self._positions_at_build, axis=1).max(initial=0.0))
        if moved > 0.5 * skin:
            nl = build_neighbour_list(structure.positions, structure.cell, structure.pbc,
                                      self.potential.cutoff + skin, self.parameters.num_threads)
            self._neighbours = nl
            self._positions_at_build = structure.positions.copy()
        else:
            # the reuse path checks the new geometry too (NaN positions, a broken cell)
            check_geometry(structure.positions, structure.cell, structure.pbc)
            update_vectors(nl, structure.positions, structure.cell, self.parameters.num_threads)
        self.evaluator.check_distances(nl)
        return nl

    def __repr__(self):
        return f"ACECalculator({self.potential!r}, num_threads={self.parameters.num_threads})"
