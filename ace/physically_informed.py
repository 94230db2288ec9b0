"""Physically-informed ACE (PINN-style): a physical form whose parameters vary per atom with a
linear ACE expansion of the atom's environment.

  p_i = p0_(s_i) + C_(s_i) B_i,      E = sum_i [E_i(R_i, p_i) + E0_(s_i)]

B_i are the raw B-functions of atom i of a linear ACE basis (the *descriptor*, an ACEPotential
whose coefficients are not used), C_s [n_params, n_functions] the coefficients of element s and
E_i the physical form's atomic energy (ace.physical), which depends on atom i's own parameters
and its neighbours' positions only. Then exactly (docs/physical.md):
  forces, strain derivative = those of the form at fixed p  +  those of
      E_W = sum_i sum_f W_if B_if,   W_if = sum_k dE_i/dp_ik C_(s_i)[k, f]
  dE/dC_s[k, f] = sum_(i in s) dE_i/dp_ik B_if
and along a displacement g and strain D (delta_ij = g_j - g_i + D r_ij), with the tangents
T_if = D_delta B_if, q_il = sum_f C[l, f] T_if, the form's adjoint u, H:
  d(D_delta E)/dC[k, f] = sum_i (u_ik + sum_l H_ikl q_il) B_if + dE_i/dp_ik T_if,
which gives the gradient of the force and stress terms of a loss.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ace.evaluator import COINCIDENT_DISTANCE, Evaluator
from ace.neighbours import build_neighbour_list
from ace.physical import adjoint, form_by_name, per_atom

KIND = "physically-informed"


class PhysicallyInformedPotential:
    """A physical form with per-atom parameters p_i = p0 + C B_i (see the module doc).

    ``form``: an ace.physical form; ``descriptor``: the ACEPotential giving B;
    ``base_parameters`` p0 [n_elements, n_params]; ``coefficients`` C [n_elements, n_params,
    n_columns] (column f - first function of the element, as Evaluator.basis_values);
    ``e0`` [n_elements]; ``tau`` the penalty weight it was fitted with (kept for the record).
    """

    kind = KIND

    def __init__(self, form, descriptor, base_parameters, coefficients=None, e0=None, tau=0.0,
                 metadata=None):
        self.form = form
        self.descriptor = descriptor
        self.elements = list(descriptor.elements)
        n_el = len(self.elements)
        self.base_parameters = np.array(base_parameters, dtype=float).reshape(n_el, form.n_params)
        for e, row in zip(self.elements, self.base_parameters):
            try:
                form.check(row)
            except ValueError as exc:
                raise ValueError(f"base parameters of {e}: {exc}") from None
        shape = (n_el, form.n_params, self.n_columns)
        self.coefficients = (np.zeros(shape) if coefficients is None
                             else np.array(coefficients, dtype=float))
        if self.coefficients.shape != shape:
            raise ValueError(f"coefficients must have shape {shape} (elements, parameters of "
                             f"{form.name}, descriptor functions), got {self.coefficients.shape}")
        self.e0 = np.zeros(n_el) if e0 is None else np.array(e0, dtype=float).reshape(n_el)
        self.tau = float(tau)
        self.metadata = dict(metadata or {})

    @property
    def n_columns(self):
        """Columns of B: the largest number of descriptor functions of an element."""
        counts = np.bincount([f.mu0 for f in self.descriptor.functions],
                             minlength=len(self.elements))
        return int(max(counts.max(initial=0), 1))

    @property
    def n_functions_per_element(self):
        return np.bincount([f.mu0 for f in self.descriptor.functions],
                           minlength=len(self.elements))

    @property
    def cutoff(self):
        return max(self.form.cutoff, self.descriptor.cutoff)

    @property
    def n_parameters(self):
        """Fitted numbers: C of every element's functions, p0 and E0."""
        return int(self.form.n_params * self.n_functions_per_element.sum()
                   + self.base_parameters.size + self.e0.size)

    def copy(self):
        return PhysicallyInformedPotential(self.form, self.descriptor.copy(),
                                           self.base_parameters.copy(), self.coefficients.copy(),
                                           self.e0.copy(), self.tau, dict(self.metadata))

    def local_parameters(self, species, basis_values):
        """p_i = p0_(s_i) + C_(s_i) B_i [n_atoms, n_params]."""
        species = np.asarray(species)
        return self.base_parameters[species] + np.einsum(
            "ikf,if->ik", self.coefficients[species], basis_values)

    def __repr__(self):
        return (f"PhysicallyInformedPotential(form={self.form.name!r}, elements={self.elements}, "
                f"descriptor functions={len(self.descriptor.functions)}, tau={self.tau})")


@dataclass
class PhysicallyInformedResults:
    energy: float
    energies: np.ndarray  # [n_atoms] (E0 included)
    forces: np.ndarray  # [n_atoms, 3]
    strain_derivative: np.ndarray  # [3, 3]: dE/d(strain) = volume * stress
    parameters: np.ndarray  # [n_atoms, n_params]: the local parameters p_i
    basis_values: np.ndarray  # [n_atoms, n_columns]: B_i
    parameter_derivatives: np.ndarray  # [n_atoms, n_params]: dE_i/dp_i


class PhysicallyInformedEvaluator:
    """Energies, forces and strain derivatives of a PhysicallyInformedPotential, and the pieces
    of its exact parameter gradients (ace.fitting.physically_informed)."""

    def __init__(self, potential):
        self.potential = potential
        self.descriptor = Evaluator(potential.descriptor)

    def neighbours(self, structure, num_threads=None):
        nl = build_neighbour_list(structure.positions, structure.cell, structure.pbc,
                                  self.potential.cutoff, num_threads)
        self.check_distances(nl)
        return nl

    def check_distances(self, nl):
        if len(nl) == 0:
            return
        k, shortest = nl.shortest()
        if shortest < COINCIDENT_DISTANCE:
            raise ValueError(f"atoms {nl.i[k]} and {nl.j[k]} are at the same position "
                             f"(distance {shortest:.2e} Å)")

    def compute(self, structure, num_threads=None, neighbour_list=None,
                basis_values=None) -> PhysicallyInformedResults:
        pot = self.potential
        nl = neighbour_list if neighbour_list is not None else self.neighbours(structure, num_threads)
        b = (self.descriptor.basis_values(structure, num_threads, nl) if basis_values is None
             else basis_values)
        params = pot.local_parameters(structure.species, b)
        physical = per_atom(pot.form, nl, structure.species, params,
                            num_threads=num_threads)
        weights = np.einsum("ik,ikf->if", physical.dE_dp, pot.coefficients[structure.species])
        _, forces, strain = self.descriptor.weighted_forces(structure, weights, num_threads, nl)
        energies = physical.energies + pot.e0[structure.species]
        if not (np.isfinite(energies).all() and np.isfinite(physical.forces).all()
                and np.isfinite(forces).all()):
            raise FloatingPointError(
                "the physically-informed potential produced NaN or inf: local parameters "
                f"outside the physical form's domain? (ranges {params.min(axis=0)} .. "
                f"{params.max(axis=0)})")
        return PhysicallyInformedResults(float(energies.sum()), energies,
                                         physical.forces + forces, physical.virial + strain,
                                         params, b, physical.dE_dp)

    def directional_gradient(self, structure, nl, basis_values, params, dE_dp, displacement,
                             strain, num_threads=None):
        """d(D_delta E)/dC [n_atoms-summed per element: n_elements, n_params, n_columns] and
        d(D_delta E)/dp0 [n_elements, n_params], for delta_ij = g_j - g_i + strain @ r_ij
        (g = displacement)."""
        pot = self.potential
        species = structure.species
        _, tangents = self.descriptor.basis_tangents(structure, displacement, strain,
                                                     num_threads, nl)
        u, hessian = adjoint(pot.form, nl, species, params,
                             displacement, strain, num_threads=num_threads)
        q = np.einsum("ilf,if->il", pot.coefficients[species], tangents)
        per_param = u + np.einsum("ikl,il->ik", hessian, q)
        return per_param, tangents


def form_from_dict(data, where):
    """A physical form from its file entry {name, cutoff, cutoff_width}."""
    if not isinstance(data, dict) or set(data) != {"name", "cutoff", "cutoff_width"}:
        raise ValueError(f"{where}: 'form' must be a mapping with exactly the keys name, "
                         "cutoff, cutoff_width")
    return form_by_name(str(data["name"]), cutoff=float(data["cutoff"]),
                        cutoff_width=float(data["cutoff_width"]))
