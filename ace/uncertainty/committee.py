"""Committee uncertainty of a linear potential: the spread of its committee members' energies,
forces and stresses.

A member differs from the potential by d_k (coefficients) and e_k (E0); the energy is linear in
both, so with the design rows of the structure (sum_i s_i B_i, its position and strain
derivatives: one pass of the design kernel) each member costs one contraction:
E_k - E = d_k . B + e_k . n, likewise forces and stress. The members' mean is the potential
(see ace.fitting.bayes), so the std is the root mean square of these differences.
"""
from __future__ import annotations

import numpy as np
from ase.stress import full_3x3_to_voigt_6_stress

from ace.evaluator import Evaluator


class CommitteeEvaluator:
    """Committee std of energy, forces and stress for the structures of one potential."""

    def __init__(self, potential, evaluator=None):
        if potential.committee is None:
            raise ValueError("the potential has no committee (fit it with a committee, e.g. "
                             "ace fit with fit.committee, or ace.fitting.linear.fit_committee)")
        self.potential = potential
        self.evaluator = evaluator or Evaluator(potential)
        committee = potential.committee
        self.delta_coefficients = committee.coefficients - potential.coefficients[:, 0][None, :]
        self.delta_e0 = committee.e0 - potential.e0[None, :]

    def compute(self, structure, neighbour_list=None, num_threads=None, volume=None):
        """{"energy_std": float, "forces_std": [n, 3], "stress_std": [6] (given the volume)}."""
        rows = self.evaluator.design_rows(structure, num_threads, neighbour_list)
        counts = np.bincount(structure.species, minlength=len(self.potential.elements))
        energy = rows.energy @ self.delta_coefficients.T + self.delta_e0 @ counts  # [K]
        forces = rows.forces @ self.delta_coefficients.T  # [n, 3, K]
        out = {"energy_std": float(_spread(energy, 0)),
               "forces_std": _spread(forces, -1),
               "energies_std": _spread(rows.per_atom @ self.delta_coefficients.T
                                       + self.delta_e0[:, structure.species].T, -1)}
        if volume is not None:
            strain = rows.strain_derivative @ self.delta_coefficients.T  # [3, 3, K]
            strain = 0.5 * (strain + strain.transpose(1, 0, 2)) / volume
            voigt = np.stack([full_3x3_to_voigt_6_stress(strain[:, :, k])
                              for k in range(strain.shape[2])])
            out["stress_std"] = _spread(voigt, 0)
        return out


def _spread(deviations, axis):
    """Std over the members of the deviations from the committee's mean (which is zero)."""
    return np.sqrt(np.mean(np.square(deviations), axis=axis))
