"""Physical (traditional) potential forms: analytic bond-order (BOP) and Finnis-Sinclair/EAM.

Every form's energy is a sum of atomic energies E_i that depend on atom i's own parameter vector
p_i and on the pair vectors D_ij = r_j - r_i + shift @ cell of its neighbours inside the cutoff,
with the smooth cutoff f_c(r) = (r_c - r)^4 / (d^4 + (r_c - r)^4) for r < r_c, else 0.
The compiled kernels (ace/_core/_physical.pyx) give energies, forces, the strain derivative and
exact parameter derivatives; the formulas, parameters and bounds are in docs/physical.md.

Sign conventions: ``virial`` is sum over pairs of D_ij (x) dE/dD_ij, the strain derivative
dE/d(strain) = volume * stress, exactly ace.evaluator's ``strain_derivative``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ace._core import effective_n_threads
from ace._core._physical import physical_adjoint, physical_per_atom

FORM_IDS = {"bop": 0, "eam": 1}  # the FORM_* of ace/_core/_physical.pyx


class OutsideDomain(ValueError):
    """Parameters not finite or below a square root's bound (the form's domain)."""


@dataclass(frozen=True)
class FormSpec:
    """A form's parameter names, the values that keep its square roots real (``lower``/
    ``upper``, None = unbounded) and documented fitting defaults (start values and bounds)."""

    name: str
    parameter_names: tuple
    lower: tuple  # validity: a parameter below this is rejected
    start: dict   # element-independent fitting start values
    bounds: dict  # default fitting bounds (inside the validity range)


SPECS = {
    # Purja Pun et al., Nat. Commun. 10, 2339 (2019); r_c ~ 4-5 Å
    "bop": FormSpec(
        "bop", ("A", "alpha", "B", "beta", "h", "sigma", "a", "lambda"),
        lower=(None, None, None, None, None, 0.0, 0.0, 0.0),
        start={"A": 7.0, "alpha": 3.0, "B": 4.0, "beta": 1.3, "h": -0.3, "sigma": 1.0,
               "a": 0.2, "lambda": 1.0},
        bounds={"A": (0.0, 20.0), "alpha": (0.5, 6.0), "B": (-5.0, 15.0), "beta": (0.2, 6.0),
                "h": (-1.0, 1.0), "sigma": (0.0, 20.0), "a": (0.0, 5.0),
                "lambda": (0.0, 10.0)}),
    # E_i = 1/2 sum_j [e^(A - alpha r) - e^(B - beta r)] f_c + F(rho_i),
    # rho_i = sum_j e^(-gamma (r - r_c / 2)) f_c, F = -sigma sqrt(rho) + c1 rho + c2 rho^2
    "eam": FormSpec(
        "eam", ("A", "alpha", "B", "beta", "gamma", "sigma", "c1", "c2"),
        lower=(None, None, None, None, 0.0, 0.0, None, None),
        start={"A": 7.5, "alpha": 3.0, "B": 3.5, "beta": 1.3, "gamma": 1.0, "sigma": 1.0,
               "c1": 0.0, "c2": 0.0},
        bounds={"A": (0.0, 20.0), "alpha": (0.5, 6.0), "B": (-5.0, 15.0), "beta": (0.2, 6.0),
                "gamma": (0.0, 6.0), "sigma": (0.0, 20.0), "c1": (-5.0, 5.0),
                "c2": (-1.0, 1.0)}),
}


class PhysicalForm:
    """One physical form with its global cutoff r_c and cutoff width d (not fitted)."""

    def __init__(self, name, cutoff, cutoff_width):
        if name not in SPECS:
            raise ValueError(f"unknown physical form {name!r}; choose one of {sorted(SPECS)}")
        for key, value in (("cutoff", cutoff), ("cutoff_width", cutoff_width)):
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
                    or not np.isfinite(value) or value <= 0:
                raise ValueError(f"{key} of the {name} form must be a positive finite number, "
                                 f"got {value!r}")
        self.spec = SPECS[name]
        self.name = name
        self.id = FORM_IDS[name]
        self.cutoff = float(cutoff)
        self.cutoff_width = float(cutoff_width)

    @property
    def parameter_names(self):
        return self.spec.parameter_names

    @property
    def n_params(self):
        return len(self.spec.parameter_names)

    def check(self, params):
        """Raise ValueError naming the parameter if params ([n_params] or [n, n_params]) has
        the wrong shape, is not finite or leaves a square root's argument negative."""
        params = np.asarray(params, dtype=float)
        if params.ndim not in (1, 2) or params.shape[-1] != self.n_params:
            raise ValueError(f"parameters of the {self.name} form must have shape "
                             f"({self.n_params},) or (n_atoms, {self.n_params}) "
                             f"({', '.join(self.parameter_names)}), got {params.shape}")
        rows = params.reshape(-1, self.n_params)
        for k, (name, low) in enumerate(zip(self.parameter_names, self.spec.lower)):
            column = rows[:, k]
            bad = ~np.isfinite(column)
            if bad.any():
                raise OutsideDomain(
                    f"parameter {name} of the {self.name} form is not finite "
                    f"({column[bad][0]}, atom {np.flatnonzero(bad)[0]})")
            if low is not None and (column < low).any():
                atom = np.flatnonzero(column < low)[0]
                raise OutsideDomain(
                    f"parameter {name} of the {self.name} form must be >= {low} (a square "
                    f"root of the form needs it), got {column[atom]} (atom {atom})")
        return params

    def to_dict(self):
        return {"form": self.name, "cutoff": self.cutoff, "cutoff_width": self.cutoff_width}

    def __repr__(self):
        return f"PhysicalForm({self.name!r}, cutoff={self.cutoff}, cutoff_width={self.cutoff_width})"


def form_by_name(name, cutoff, cutoff_width):
    return PhysicalForm(name, cutoff, cutoff_width)


@dataclass
class PerAtom:
    energies: np.ndarray  # [n_atoms]
    forces: np.ndarray  # [n_atoms, 3]
    virial: np.ndarray  # [3, 3]: sum over pairs D_ij (x) dE/dD_ij = dE/d(strain)
    dE_dp: np.ndarray  # [n_atoms, n_params]: dE_i/dp_i

    @property
    def energy(self):
        return float(self.energies.sum())


def _inputs(form, neighbour_list, species, params):
    nl = neighbour_list
    n_atoms = len(nl.first) - 1
    if nl.cutoff < form.cutoff - 1e-12:
        raise ValueError(f"the neighbour list's cutoff {nl.cutoff} is below the {form.name} "
                         f"form's cutoff {form.cutoff}: build it with the form's cutoff")
    species = np.asarray(species)
    if species.shape != (n_atoms,):
        raise ValueError(f"species must have shape ({n_atoms},), got {species.shape}")
    params = np.asarray(params, dtype=float)
    if params.shape != (n_atoms, form.n_params):
        raise ValueError(f"params must have shape (n_atoms, n_params) = ({n_atoms}, "
                         f"{form.n_params}) for the {form.name} form, got {params.shape}")
    form.check(params)
    vectors = np.ascontiguousarray(nl.vectors, dtype=float).reshape(-1, 3)
    if len(vectors):
        lengths = np.sqrt((vectors ** 2).sum(axis=1))
        within = lengths < form.cutoff
        if not within.all():
            # pairs beyond the form's cutoff contribute nothing; drop them so the kernels see
            # only neighbours inside r_c (a list built with a longer cutoff is accepted)
            keep = np.flatnonzero(within)
            first = np.searchsorted(keep, np.asarray(nl.first), side="left").astype(np.int64)
            return (first, np.ascontiguousarray(nl.j[keep], dtype=np.int64),
                    np.ascontiguousarray(vectors[keep]), np.ascontiguousarray(params))
    return (np.ascontiguousarray(nl.first, dtype=np.int64),
            np.ascontiguousarray(nl.j, dtype=np.int64), vectors, np.ascontiguousarray(params))


def per_atom(form, neighbour_list, species, params, num_threads=None) -> PerAtom:
    """Energies, forces, virial and dE_i/dp_i of one structure; params [n_atoms, n_params]."""
    first, j, vectors, params = _inputs(form, neighbour_list, species, params)
    energies, forces, virial, gradient = physical_per_atom(
        form.id, first, j, vectors, params, form.cutoff, form.cutoff_width,
        effective_n_threads(num_threads))
    return PerAtom(energies, forces, virial, gradient)


def adjoint(form, neighbour_list, species, params, displacement, strain, num_threads=None):
    """(u [n_atoms, n_params], hessian [n_atoms, n_params, n_params]).

    Each pair vector D_ij moves by delta_ij = g[j] - g[i] + strain @ D_ij (g = displacement);
    u[i, k] = d/dp_ik (sum_j delta_ij . dE_i/dD_ij); hessian[i] = d^2 E_i / dp_i^2."""
    return _adjoint(form, neighbour_list, species, params, displacement, strain,
                    True, num_threads)


def adjoint_u(form, neighbour_list, species, params, displacement, strain, num_threads=None,
              parameter_tangent=None):
    """u alone (adjoint without the Hessian: one tangent instead of 1 + n_params), or, given a
    parameter tangent v [n_atoms, n_params], u + H v (per atom) at the same cost: what the
    physically-informed fit needs, without forming H."""
    return _adjoint(form, neighbour_list, species, params, displacement, strain,
                    False, num_threads, parameter_tangent)[0]


def _adjoint(form, neighbour_list, species, params, displacement, strain, hessian, num_threads,
             parameter_tangent=None):
    first, j, vectors, params = _inputs(form, neighbour_list, species, params)
    n_atoms = len(first) - 1
    displacement = np.ascontiguousarray(displacement, dtype=float)
    strain = np.ascontiguousarray(strain, dtype=float)
    if displacement.shape != (n_atoms, 3):
        raise ValueError(f"displacement must have shape ({n_atoms}, 3), got {displacement.shape}")
    if strain.shape != (3, 3):
        raise ValueError(f"strain must have shape (3, 3), got {strain.shape}")
    if not (np.isfinite(displacement).all() and np.isfinite(strain).all()):
        raise ValueError("displacement and strain must be finite")
    if parameter_tangent is None:
        parameter_tangent = np.zeros((0, params.shape[1]))
    else:
        parameter_tangent = np.ascontiguousarray(parameter_tangent, dtype=float)
        if parameter_tangent.shape != params.shape:
            raise ValueError(f"parameter_tangent must have shape {params.shape}, got "
                             f"{parameter_tangent.shape}")
    return physical_adjoint(form.id, first, j, vectors, params, form.cutoff, form.cutoff_width,
                            displacement, strain, parameter_tangent, bool(hessian),
                            effective_n_threads(num_threads))
