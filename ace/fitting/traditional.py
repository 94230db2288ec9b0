"""Fit a traditional potential (ace.physical: BOP or EAM, ~8 parameters per element) with the
loss of the ACE fits and exact gradients.

The loss is the linear fit's (ace.fitting.linear, docs/model.md)::

    L = sum_s w_s r_E,s^2 / sum_s w_s                          r_E = (E - E_ref) / N_s
      + tau_F sum_s w_s sum_(i,a) r_F,sia^2 / sum_s 3 N_s w_s   r_F = F - F_ref
      + tau_S sum_s w_s sum_(a,b) r_S,sab^2 / sum_s 9 w_s       r_S = stress - stress_ref

with the same structure weights w_s (config_type weights, data weights, energy_kT) and term
weights; "auto" term weights mean ace.fitting.linear's defaults (a fit of ~10 parameters has
no ridge to tune). A traditional atomic energy vanishes for an isolated atom, so E0 is the
free-atom energy of the ``e0:`` setting ({element: eV} or isolated) or, with ``e0: auto``, a
fitted constant per element.

Gradient: the energy term from dE_i/dp (ace.physical.per_atom); the force and stress terms from
the adjoint: with g_a = 2 tau_F w_s r_F,a / W_F and M = 2 tau_S w_s r_S / (W_S V_s),
d/dp [force + stress terms] = -sum_i u[i, :] for the displacement g and strain -M
(ace.physical.adjoint), exact and at the cost of about two energy evaluations.

Minimised by ace.fitting.lbfgs in transformed coordinates that keep every parameter inside its
bounds (lo, hi): p = lo + (hi - lo) / (1 + exp(-x)). Restart 0 starts from the given start
values, restart k > 0 from x_start + N(0, RESTART_SPREAD) drawn from a generator seeded with
``seed`` (deterministic, always inside the bounds); the lowest training loss wins (no test set
is ever consulted).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ace.fitting.linear import (DEFAULT_FORCES_WEIGHT, DEFAULT_STRESS_WEIGHT, resolve_e0,
                                structure_weights)
from ace.fitting.lbfgs import minimise
from ace.neighbours import build_neighbour_list
from ace.physical import SPECS, PhysicalForm, adjoint_u, per_atom
from ace.physical.potential import TraditionalPotential

RESTART_SPREAD = 1.0  # standard deviation of a restart's start in the transformed coordinates
BOUND_MARGIN = 1e-6  # start values on a bound are moved this fraction of the range inside
SETTINGS_KEYS = {"kind", "form", "parameters", "bounds", "restarts", "cutoff", "cutoff_width",
                 "max_iterations", "seed", "gtol"}


@dataclass
class TraditionalSettings:
    """The ``model:`` section of a config with ``kind: traditional`` (docs/physical.md).

    parameters: start values {name: value} (the form's documented defaults for the rest);
    bounds: {name: [lo, hi]} (defaults likewise); restarts: starts tried (the first from the
    start values); max_iterations and gtol: per L-BFGS run; seed: of the restart sampling."""

    form: str
    cutoff: float
    cutoff_width: float = 1.0
    parameters: dict = field(default_factory=dict)
    bounds: dict = field(default_factory=dict)
    restarts: int = 4
    max_iterations: int = 150
    seed: int = 0
    gtol: float = 1e-7

    def __post_init__(self):
        if self.form not in SPECS:
            raise ValueError(f"model.form: expected one of {sorted(SPECS)}, got {self.form!r}")
        self.physical_form()  # cutoff and cutoff_width checked
        spec = SPECS[self.form]
        names = spec.parameter_names
        for key, section in (("parameters", self.parameters), ("bounds", self.bounds)):
            if not isinstance(section, dict):
                raise ValueError(f"model.{key}: expected a mapping of parameter names, got "
                                 f"{section!r}")
            unknown = sorted(set(section) - set(names))
            if unknown:
                raise ValueError(f"model.{key}: unknown parameter(s) {unknown} of the "
                                 f"{self.form} form (its parameters: {list(names)})")
        for name, value in self.parameters.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not np.isfinite(value):
                raise ValueError(f"model.parameters.{name}: expected a finite number, got "
                                 f"{value!r}")
        for name, pair in self.bounds.items():
            if not (isinstance(pair, (list, tuple)) and len(pair) == 2
                    and all(isinstance(v, (int, float)) and not isinstance(v, bool)
                            and np.isfinite(v) for v in pair) and pair[0] < pair[1]):
                raise ValueError(f"model.bounds.{name}: expected [lower, upper] finite numbers "
                                 f"with lower < upper, got {pair!r}")
        low, high = self.lower_upper()
        for k, name in enumerate(names):
            valid = spec.lower[k]
            if valid is not None and low[k] < valid:
                raise ValueError(f"model.bounds.{name}: the lower bound {low[k]:g} is below "
                                 f"{valid:g}, where the {self.form} form's square root needs "
                                 f"{name} >= {valid:g}")
            if not low[k] <= self.start()[k] <= high[k]:
                raise ValueError(f"model.parameters.{name}: the start value "
                                 f"{self.start()[k]:g} is outside its bounds "
                                 f"[{low[k]:g}, {high[k]:g}]")
        for key in ("restarts", "max_iterations", "seed"):
            value = getattr(self, key)
            least = 0 if key == "seed" else 1
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"model.{key}: expected a whole number >= {least}, got {value!r}")
        if isinstance(self.gtol, bool) or not isinstance(self.gtol, (int, float)) \
                or not self.gtol > 0:
            raise ValueError(f"model.gtol: expected a positive number, got {self.gtol!r}")

    def physical_form(self):
        try:
            return PhysicalForm(self.form, self.cutoff, self.cutoff_width)
        except ValueError as exc:
            raise ValueError(f"model: {exc}") from None

    def start(self):
        spec = SPECS[self.form]
        return np.array([float(self.parameters.get(n, spec.start[n]))
                         for n in spec.parameter_names])

    def lower_upper(self):
        spec = SPECS[self.form]
        pairs = [self.bounds.get(n, spec.bounds[n]) for n in spec.parameter_names]
        return (np.array([float(p[0]) for p in pairs]), np.array([float(p[1]) for p in pairs]))

    def to_dict(self):
        return {"kind": "traditional", "form": self.form, "cutoff": self.cutoff,
                "cutoff_width": self.cutoff_width, "parameters": dict(self.parameters),
                "bounds": {k: list(v) for k, v in self.bounds.items()},
                "restarts": self.restarts, "max_iterations": self.max_iterations,
                "seed": self.seed, "gtol": self.gtol}


@dataclass
class _Structure:
    name: str
    neighbours: object
    species: np.ndarray
    n_atoms: int
    energy: float
    forces: np.ndarray | None  # reference forces, None without
    stress: np.ndarray | None  # reference stress [3, 3], None without (or non-periodic)
    volume: float
    weight: float


class TraditionalLoss:
    """The loss of a traditional potential on a dataset: value and exact gradient with respect
    to the global parameters and (with e0 None) the fitted E0."""

    def __init__(self, form, dataset, weights, tau_forces, tau_stress, e0=None,
                 num_threads=None):
        self.form = form
        self.tau_forces = float(tau_forces)
        self.tau_stress = float(tau_stress)
        self.e0 = e0  # None: fitted
        self.num_threads = num_threads
        self.structures = []
        volumes = dataset.volumes
        for s in range(len(dataset)):
            sl = dataset.atom_slice(s)
            n = sl.stop - sl.start
            nl = build_neighbour_list(dataset.positions[sl], dataset.cells[s], dataset.pbc[s],
                                      form.cutoff, num_threads)
            if n > 1 and len(nl) == 0:
                raise ValueError(f"{dataset.names[s]}: no two atoms are closer than the cutoff "
                                 f"{form.cutoff:g} Å of the {form.name} form (the cutoff is "
                                 "below the structure's nearest-neighbour distance): raise it")
            if len(nl) and nl.shortest()[1] < 1e-6:
                raise ValueError(f"{dataset.names[s]}: two atoms are at the same position")
            forces = dataset.forces[sl]
            stress = dataset.stress[s]
            periodic = dataset.pbc[s].all() and volumes[s] > 0
            self.structures.append(_Structure(
                dataset.names[s], nl, np.zeros(n, np.int32), n, float(dataset.energy[s]),
                forces if np.isfinite(forces).all() else None,
                stress if periodic and np.isfinite(stress).all() else None,
                float(volumes[s]) if periodic else 0.0, float(weights[s])))
        self.energy_norm = sum(x.weight for x in self.structures)
        self.forces_norm = sum(3 * x.n_atoms * x.weight for x in self.structures
                               if x.forces is not None)
        self.stress_norm = sum(9 * x.weight for x in self.structures if x.stress is not None)
        self.evaluations = 0

    def terms_and_gradient(self, params, e0):
        """({energy, forces, stress: term values}, dL/dp [n_params], dL/dE0)."""
        terms = {"energy": 0.0, "forces": 0.0, "stress": 0.0}
        gradient = np.zeros(self.form.n_params)
        gradient_e0 = 0.0
        for x in self.structures:
            rows = np.broadcast_to(params, (x.n_atoms, self.form.n_params))
            result = per_atom(self.form, x.neighbours, x.species, rows, self.num_threads)
            residual = (result.energy + x.n_atoms * e0 - x.energy) / x.n_atoms
            terms["energy"] += x.weight * residual ** 2 / self.energy_norm
            factor = 2 * x.weight * residual / self.energy_norm
            gradient += factor / x.n_atoms * result.dE_dp.sum(axis=0)
            gradient_e0 += factor
            displacement = np.zeros((x.n_atoms, 3))
            strain = np.zeros((3, 3))
            if x.forces is not None and self.tau_forces > 0:
                r_forces = result.forces - x.forces
                terms["forces"] += (self.tau_forces * x.weight * (r_forces ** 2).sum()
                                    / self.forces_norm)
                displacement = 2 * self.tau_forces * x.weight * r_forces / self.forces_norm
            if x.stress is not None and self.tau_stress > 0:
                stress = 0.5 * (result.virial + result.virial.T) / x.volume
                r_stress = stress - x.stress
                terms["stress"] += (self.tau_stress * x.weight * (r_stress ** 2).sum()
                                    / self.stress_norm)
                strain = -2 * self.tau_stress * x.weight * r_stress / (self.stress_norm * x.volume)
            if displacement.any() or strain.any():
                u = adjoint_u(self.form, x.neighbours, x.species, rows, displacement, strain,
                              self.num_threads)
                gradient -= u.sum(axis=0)
        self.evaluations += 1
        return terms, gradient, gradient_e0


def to_parameters(x, low, high):
    return low + (high - low) / (1 + np.exp(-x))


def to_transformed(p, low, high):
    margin = BOUND_MARGIN * (high - low)
    q = (np.clip(p, low + margin, high - margin) - low) / (high - low)
    return np.log(q / (1 - q))


def fit_traditional(dataset, settings, loss_settings, elements, num_threads=None, log=None):
    """Fit ``settings`` (TraditionalSettings) to ``dataset``: (TraditionalPotential, report)."""
    log = log or (lambda message: None)
    if len(elements) != 1:
        raise ValueError(f"traditional fits take one element for now, got {elements}")
    form = settings.physical_form()
    weights = structure_weights(dataset, loss_settings, elements)
    tau_forces = (DEFAULT_FORCES_WEIGHT if loss_settings.forces == "auto"
                  else loss_settings.forces)
    tau_stress = (DEFAULT_STRESS_WEIGHT if loss_settings.stress == "auto"
                  else loss_settings.stress)
    reference = resolve_e0(loss_settings.e0, dataset, elements, form.cutoff)
    fixed_e0 = None if reference is None else float(reference[elements[0]])
    loss = TraditionalLoss(form, dataset, weights, tau_forces, tau_stress, fixed_e0, num_threads)
    low, high = settings.lower_upper()
    n = form.n_params
    fit_e0 = fixed_e0 is None

    def split(z):
        params = to_parameters(z[:n], low, high)
        return params, (z[n] if fit_e0 else fixed_e0)

    def objective(z):
        params, e0 = split(z)
        terms, gradient, gradient_e0 = loss.terms_and_gradient(params, e0)
        s = 1 / (1 + np.exp(-z[:n]))
        full = gradient * (high - low) * s * (1 - s)
        if fit_e0:
            full = np.append(full, gradient_e0)
        value = sum(terms.values())
        if not np.isfinite(value):  # outside the region the form makes sense: reject the step
            return np.inf, np.zeros_like(z)
        return value, full

    def initial_e0(params):
        """E0 that zeroes the weighted mean energy residual of ``params``."""
        num = den = 0.0
        for x in loss.structures:
            rows = np.broadcast_to(params, (x.n_atoms, n))
            energy = per_atom(form, x.neighbours, x.species, rows, num_threads).energy
            num += x.weight * (x.energy - energy) / x.n_atoms
            den += x.weight
        return num / den

    start = time.perf_counter()
    rng = np.random.default_rng(settings.seed)
    base = to_transformed(settings.start(), low, high)
    runs = []
    for k in range(settings.restarts):
        x0 = base if k == 0 else base + rng.normal(0.0, RESTART_SPREAD, n)
        if fit_e0:
            x0 = np.append(x0, initial_e0(to_parameters(x0, low, high)))
        result = minimise(objective, x0, settings.max_iterations, settings.gtol)
        params, e0 = split(result.x)
        runs.append({"restart": k, "loss": float(result.fun), "iterations": int(result.nit),
                     "evaluations": int(result.nfev), "status": result.message,
                     "parameters": dict(zip(form.parameter_names, map(float, params))),
                     "e0": float(e0)})
        log(f"restart {k}: loss {result.fun:.6g} after {result.nit} iterations "
            f"({result.message})")
    best = min(runs, key=lambda r: r["loss"])
    params = np.array([best["parameters"][name] for name in form.parameter_names])
    terms, _, _ = loss.terms_and_gradient(params, best["e0"])
    at_bound = [name for name, p, lo, hi in zip(form.parameter_names, params, low, high)
                if min(p - lo, hi - p) < 1e-3 * (hi - lo)]
    potential = TraditionalPotential(elements, form, {elements[0]: params}, [best["e0"]])
    report = {"method": "traditional", "form": form.name, "best_restart": best["restart"],
              "loss": best["loss"], "terms": terms,
              "weights": {"forces": tau_forces, "stress": tau_stress},
              "e0": {elements[0]: best["e0"]},
              "e0_source": "fitted (a free constant)" if fit_e0 else "given",
              "at_bounds": at_bound, "restarts": runs, "n_train_structures": len(dataset),
              "seconds": time.perf_counter() - start}
    if at_bound:
        log(f"parameters at their bounds: {at_bound} (widen model.bounds if that is not meant)")
    return potential, report
