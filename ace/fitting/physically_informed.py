"""Fitting a physically-informed potential (ace.physically_informed): the loss and its exact
gradient in the ACE coefficients C (and optionally p0, E0), minimised by ace.fitting.lbfgs from
Delta p = 0.

The data terms are the nonlinear fit's (ace.fitting.nonlinear.loss: weighted mean squares of
the energy per atom, the forces and the stress, with the same structure weights and term weights
tau_F, tau_S). The penalty keeps the local parameters near the global ones:
  tau * (1 / N) sum_i |Delta p_i|^2,   Delta p_i = C B_i,
over the N training atoms (a mean, so that tau does not depend on the size of the data).
Forces and stress enter the gradient through one directional derivative per structure:
with the force residual directions u_a = 2 c_F w (F_a - F_ref,a) and the stress directions U,
  sum_a u_a . F_a + sum U : S = D_delta E,  delta_ij = g_j - g_i + D r_ij,  g = -u, D = U^T,
whose gradient ace.physically_informed gives exactly.

The fitted unknowns are scaled: column f of C is multiplied by the RMS of B_f over the training
atoms (so that each unit of theta moves Delta p by about one unit), p0 and E0 enter as they are.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from ace.evaluator import Structure
from ace.fitting.lbfgs import minimise
from ace.physical import OutsideDomain
from ace.physically_informed import (PhysicallyInformedEvaluator, PhysicallyInformedPotential,
                                     is_half_width)


@dataclass
class Sample:
    """One training structure with its neighbour list and fixed descriptor values."""

    structure: Structure
    nl: object
    basis_values: np.ndarray  # [n_atoms, n_columns]
    n_atoms: int
    energy: float
    forces: np.ndarray
    has_forces: bool
    stress: np.ndarray
    has_stress: bool
    volume: float
    weight: float


def make_samples(potential, dataset, weights, indices=None, num_threads=None):
    evaluator = PhysicallyInformedEvaluator(potential)
    indices = np.arange(len(dataset)) if indices is None else np.asarray(indices)
    volumes = dataset.volumes
    samples = []
    for s in indices:
        sl = dataset.atom_slice(s)
        structure = Structure(potential.descriptor, dataset.numbers[sl], dataset.positions[sl],
                              dataset.cells[s], dataset.pbc[s])
        try:
            nl = evaluator.neighbours(structure, num_threads)
        except ValueError as exc:
            raise ValueError(f"{dataset.names[s]}: {exc}") from exc
        b = evaluator.descriptor.basis_values(structure, num_threads, nl)
        has_stress = bool(dataset.has_stress[s] and volumes[s] > 0)
        samples.append(Sample(structure, nl, b, len(structure.species), float(dataset.energy[s]),
                              np.nan_to_num(np.asarray(dataset.forces[sl], dtype=float)),
                              bool(dataset.has_forces[s]),
                              np.nan_to_num(np.asarray(dataset.stress[s], dtype=float)),
                              has_stress, float(volumes[s]) if volumes[s] > 0 else 1.0,
                              float(weights[s])))
    return samples


def sample_norms(samples):
    """The term normalisations of ace.fitting.nonlinear.loss.term_norms."""
    norms = {"energy": 0.0, "forces": 0.0, "stress": 0.0}
    for s in samples:
        norms["energy"] += s.weight
        norms["forces"] += 3 * s.n_atoms * s.weight * s.has_forces
        norms["stress"] += 9 * s.weight * s.has_stress
    return norms


class PhysicallyInformedLoss:
    """Loss and exact gradient of a physically-informed potential over training samples.

    theta = [C scaled (per element, its own functions only; the rows of the parameters named
    in ``varied``, default all), p0 (if ``train_base``), E0 (if ``train_e0``)]. A point
    whose local parameters leave the form's domain (e.g. sigma < 0 under a square root) has
    the loss +inf, so that the line search backs off.
    """

    def __init__(self, potential, samples, tau_terms, penalty, train_base=False,
                 num_threads=None, scale=None, varied=None, train_e0=True):
        self.potential = potential.copy()
        self.evaluator = PhysicallyInformedEvaluator(self.potential)
        self.samples = samples
        self.tau = dict(tau_terms)
        self.penalty = float(penalty)
        self.train_base = bool(train_base)
        self.train_e0 = bool(train_e0)
        self.num_threads = num_threads
        self.norms = sample_norms(samples)
        self.n_train_atoms = max(sum(s.n_atoms for s in samples), 1)
        n_el, n_params, width = potential.coefficients.shape
        counts = potential.n_functions_per_element
        # the entries of C that exist: element s has counts[s] functions
        self.mask = np.zeros((n_el, n_params, width), dtype=bool)
        names = list(potential.form.parameter_names)
        varied = names if varied is None else list(varied)
        unknown = sorted(set(varied) - set(names))
        if unknown:
            raise ValueError(f"varied parameters {unknown} are not parameters of the "
                             f"{potential.form.name} form ({', '.join(names)})")
        rows = np.array([k in varied for k in names])
        for e in range(n_el):
            self.mask[e, rows, :counts[e]] = True
        self.scale = self._column_scale() if scale is None else np.asarray(scale, dtype=float)

    def _column_scale(self):
        """RMS of each B column over the training atoms of each element [n_el, width]."""
        n_el, _, width = self.potential.coefficients.shape
        total = np.zeros((n_el, width))
        count = np.zeros(n_el)
        for s in self.samples:
            sp = s.structure.species
            for e in range(n_el):
                rows = s.basis_values[sp == e]
                total[e] += (rows ** 2).sum(axis=0)
                count[e] += len(rows)
        rms = np.sqrt(total / np.maximum(count, 1)[:, None])
        return np.where(rms > 0, rms, 1.0)

    # -- theta <-> potential
    @property
    def sizes(self):
        n_el, n_params, _ = self.potential.coefficients.shape
        return (int(self.mask.sum()), n_el * n_params if self.train_base else 0,
                n_el if self.train_e0 else 0)

    def pack(self, potential=None):
        pot = self.potential if potential is None else potential
        scaled = pot.coefficients * self.scale[:, None, :]
        parts = [scaled[self.mask]]
        if self.train_base:
            parts.append(pot.base_parameters.ravel())
        if self.train_e0:
            parts.append(pot.e0)
        return np.concatenate(parts)

    def unpack(self, theta):
        """A potential with the parameters theta (sharing the descriptor)."""
        nc, nb, ne = self.sizes
        pot = self.potential
        scaled = np.zeros(pot.coefficients.shape)
        scaled[self.mask] = theta[:nc]
        coefficients = scaled / self.scale[:, None, :]
        base = theta[nc:nc + nb].reshape(pot.base_parameters.shape) if nb else pot.base_parameters
        out = PhysicallyInformedPotential.__new__(PhysicallyInformedPotential)
        out.__dict__.update(pot.__dict__)
        out.coefficients = coefficients
        out.base_parameters = np.array(base, dtype=float)
        out.e0 = np.array(theta[nc + nb:], dtype=float) if ne else pot.e0.copy()
        return out

    def _pack_gradient(self, g_coefficients, g_base, g_e0):
        parts = [(g_coefficients / self.scale[:, None, :])[self.mask]]
        if self.train_base:
            parts.append(g_base.ravel())
        if self.train_e0:
            parts.append(g_e0)
        return np.concatenate(parts)

    # -- the loss
    def terms(self, theta):
        return self._evaluate(theta, False)[0]

    def value(self, theta):
        try:
            terms, _ = self._evaluate(theta, False)
        except OutsideDomain:
            return np.inf
        return sum(terms.values())

    def value_and_gradient(self, theta):
        try:
            terms, gradient = self._evaluate(theta, True)
        except OutsideDomain:
            return np.inf, np.zeros_like(theta)
        value = sum(terms.values())
        if not np.isfinite(value) or not np.isfinite(gradient).all():
            raise FloatingPointError("the loss or its gradient is not finite (local parameters "
                                     "outside the physical form's domain?)")
        return value, gradient

    def _evaluate(self, theta, gradient):
        pot = self.unpack(theta)
        evaluator = PhysicallyInformedEvaluator.__new__(PhysicallyInformedEvaluator)
        evaluator.potential = pot
        evaluator.descriptor = self.evaluator.descriptor  # compiled once
        n_el, n_params, width = pot.coefficients.shape
        g_c = np.zeros((n_el, n_params, width))
        g_p = np.zeros((n_el, n_params))
        g_e = np.zeros(n_el)
        cE = 1.0 / max(self.norms["energy"], 1e-300)
        cF = self.tau.get("forces", 0.0) / max(self.norms["forces"], 1e-300)
        cS = self.tau.get("stress", 0.0) / max(self.norms["stress"], 1e-300)
        terms = {"energy": 0.0, "forces": 0.0, "stress": 0.0, "penalty": 0.0}
        cP = self.penalty / self.n_train_atoms
        for s in self.samples:
            species = s.structure.species
            # local parameters outside the form's domain: OutsideDomain from its check
            r = evaluator.compute(s.structure, self.num_threads, s.nl, s.basis_values)
            w = s.weight
            rE = (r.energy - s.energy) / s.n_atoms
            terms["energy"] += cE * w * rE ** 2
            rF = (r.forces - s.forces) if s.has_forces and cF > 0 else None
            if rF is not None:
                terms["forces"] += cF * w * np.sum(rF ** 2)
            rS = None
            if s.has_stress and cS > 0:
                strain = 0.5 * (r.strain_derivative + r.strain_derivative.T)
                rS = strain / s.volume - s.stress
                terms["stress"] += cS * w * np.sum(rS ** 2)
            delta = r.parameters - pot.base_parameters[species]
            terms["penalty"] += cP * np.sum(delta ** 2)
            if not gradient:
                continue
            alpha = 2 * cE * w * rE / s.n_atoms
            # per atom and parameter: the coefficient of B_i in the C gradient, and the p0
            # gradient (module doc of ace.physically_informed; m' = 1, m'' = 0 unbounded)
            per_base = alpha * r.parameter_derivatives
            per_coefficient = (per_base + 2 * cP * delta) * r.shift_slope
            tangent_part = None
            if rF is not None or rS is not None:
                g = -2 * cF * w * rF if rF is not None else np.zeros((s.n_atoms, 3))
                D = (2 * cS * w * rS / s.volume).T if rS is not None else np.zeros((3, 3))
                base, coefficient, tangents = evaluator.directional_gradient(
                    s.structure, s.nl, r, g, D, self.num_threads)
                per_base = per_base + base
                per_coefficient = per_coefficient + coefficient
                tangent_part = (r.parameter_derivatives * r.shift_slope, tangents)
            for e in np.unique(species):
                rows = species == e
                g_c[e] += per_coefficient[rows].T @ r.basis_values[rows]
                if tangent_part is not None:
                    g_c[e] += tangent_part[0][rows].T @ tangent_part[1][rows]
                g_p[e] += per_base[rows].sum(axis=0)
                g_e[e] += alpha * rows.sum()
        return terms, (self._pack_gradient(g_c, g_p, g_e) if gradient else None)


def descriptor_range(potential, samples):
    """(low, high) of each descriptor column over the samples' atoms, per element
    [n_elements, 2, n_columns] (zeros for an element without atoms)."""
    n_el, width = len(potential.elements), potential.n_columns
    low, high = np.full((n_el, width), np.inf), np.full((n_el, width), -np.inf)
    for s in samples:
        for e in np.unique(s.structure.species):
            rows = s.basis_values[s.structure.species == e]
            low[e] = np.minimum(low[e], rows.min(axis=0))
            high[e] = np.maximum(high[e], rows.max(axis=0))
    seen = np.isfinite(low)
    return np.stack([np.where(seen, low, 0.0), np.where(seen, high, 0.0)], axis=1)


def fit_physically_informed(potential, samples, tau_terms, penalty, n_iter=200, gtol=1e-8,
                            train_base=False, num_threads=None, log=None, varied=None,
                            train_e0=True, clip_descriptor=False):
    """Minimise the loss from ``potential`` (usually Delta p = 0); returns (fitted potential,
    info {iterations, loss terms, status}). ``clip_descriptor``: B soft-clipped to its range
    over these samples' atoms (ace.physically_informed)."""
    if clip_descriptor:
        potential = potential.copy()
        potential.set_clip(descriptor_range(potential, samples), potential.clip_margin)
    loss = PhysicallyInformedLoss(potential, samples, tau_terms, penalty, train_base,
                                  num_threads, varied=varied, train_e0=train_e0)
    theta0 = loss.pack(potential)
    result = minimise(loss.value_and_gradient, theta0, n_iter, gtol)
    fitted = loss.unpack(result.x)
    fitted.tau = float(penalty)
    terms = loss.terms(result.x)
    info = {"iterations": int(result.nit), "evaluations": int(result.nfev),
            "status": result.message, "loss": {k: float(v) for k, v in terms.items()},
            "initial_loss": float(loss.value(theta0))}
    if log is not None:
        log(f"physically-informed fit: loss {info['initial_loss']:.6g} -> "
            f"{sum(terms.values()):.6g} in {info['iterations']} iterations ({info['status']})")
    return fitted, info


# ------------------------------------------------------------------------- config settings

SETTINGS_KEYS = {"kind", "form", "cutoff", "traditional", "basis", "tau", "varied",
                 "train_base", "max_iterations", "gtol", "validation_fraction", "seed",
                 "max_shift", "clip_descriptor"}
BASIS_KEYS = {"bonds", "functions"}
# a small descriptor: ranks 1-3, about 30 functions per element
DEFAULT_DESCRIPTOR_FUNCTIONS = {"number_of_functions_per_element": 30,
                                "ALL": {"nradmax_by_orders": [6, 3, 2],
                                        "lmax_by_orders": [0, 2, 1]}}
DEFAULT_DESCRIPTOR_RADIAL = {"radbase": "SBessel", "radparameters": [5.25], "dcut": 0.01}
DEFAULT_TAU = 1e-3


@dataclass
class PhysicallyInformedSettings:
    """The ``model:`` section of a config with ``kind: physically-informed`` (docs/physical.md).

    traditional: the path of a fitted traditional potential of the same form, or the inline
        settings of its fit (the keys of a ``kind: traditional`` model except kind, form and
        cutoff); its parameters become p0 and its E0 the start of E0.
    basis: the descriptor's ``bonds`` and ``functions`` (pacemaker's sections; rcut defaults
        to the cutoff); its embedding is linear and its coefficients are not used.
    tau: the penalty weight, or a list of them: each is fitted on a seeded split of the
        training set (``validation_fraction`` held out) and the one with the lowest validation
        loss (data terms) is refitted on all the training data. No test data is consulted.
    varied: the parameters that vary per atom (default all); train_base: p0 fitted too.
    max_shift: bounded local parameters, p_ik within s_k of p0_k (ace.physically_informed):
        a number f (s_k = f |p0_k| for every parameter; f < 1 keeps a positive parameter
        positive) or {parameter: s_k} in the parameter's units; None: unbounded.
    clip_descriptor: B soft-clipped to its range over the training atoms (the correction is
        not extrapolated beyond the data's range of each descriptor function).
    """

    form: str
    cutoff: float
    traditional: object
    basis: dict = field(default_factory=dict)
    tau: object = DEFAULT_TAU
    varied: object = None
    train_base: bool = False
    max_iterations: int = 200
    gtol: float = 1e-8
    validation_fraction: float = 0.2
    seed: int = 0
    max_shift: object = None
    clip_descriptor: bool = False

    def __post_init__(self):
        from ace.physical import SPECS

        if self.form not in SPECS:
            raise ValueError(f"model.form: expected one of {sorted(SPECS)}, got {self.form!r}")
        names = SPECS[self.form].parameter_names
        if isinstance(self.traditional, str):
            if not self.traditional:
                raise ValueError("model.traditional: an empty path")
        elif isinstance(self.traditional, dict):
            from ace.fitting.traditional import SETTINGS_KEYS as TRADITIONAL_KEYS
            from ace.fitting.traditional import TraditionalSettings

            unknown = sorted(set(self.traditional) - (TRADITIONAL_KEYS - {"kind", "form",
                                                                         "cutoff"}))
            if unknown:
                raise ValueError(f"model.traditional: unknown key(s) {unknown} (the settings "
                                 "of a traditional fit, without kind, form and cutoff)")
            try:
                TraditionalSettings(form=self.form, cutoff=self.cutoff, **self.traditional)
            except ValueError as exc:
                raise ValueError(f"model.traditional: {exc}") from None
        else:
            raise ValueError("model.traditional: the path of a fitted traditional potential or "
                             f"the settings of its fit (a mapping), got {self.traditional!r}")
        if not isinstance(self.basis, dict) or set(self.basis) - BASIS_KEYS:
            raise ValueError(f"model.basis: a mapping with the keys {sorted(BASIS_KEYS)} "
                             f"(the descriptor's), got {self.basis!r}")
        taus = self.tau_candidates()
        if not taus or not all(isinstance(t, (int, float)) and not isinstance(t, bool)
                               and np.isfinite(t) and t >= 0 for t in taus):
            raise ValueError(f"model.tau: a number >= 0 or a list of them, got {self.tau!r}")
        if self.varied is not None:
            if not isinstance(self.varied, (list, tuple)) or not self.varied:
                raise ValueError(f"model.varied: a list of parameter names, got {self.varied!r}")
            unknown = sorted(set(self.varied) - set(names))
            if unknown:
                raise ValueError(f"model.varied: unknown parameter(s) {unknown} of the "
                                 f"{self.form} form (its parameters: {list(names)})")
        shift = self.max_shift
        if isinstance(shift, dict):
            unknown = sorted(set(shift) - set(names))
            if unknown:
                raise ValueError(f"model.max_shift: unknown parameter(s) {unknown} of the "
                                 f"{self.form} form (its parameters: {list(names)})")
            values = list(shift.values())
        else:
            values = [] if shift is None else [shift]
        if not all(is_half_width(v) for v in values):
            raise ValueError("model.max_shift: a positive number (a fraction of each |p0|) or "
                             f"a mapping parameter -> positive half-width, got {shift!r}")
        for key in ("train_base", "clip_descriptor"):
            if not isinstance(getattr(self, key), bool):
                raise ValueError(f"model.{key}: true or false, got {getattr(self, key)!r}")
        for key, least in (("max_iterations", 1), ("seed", 0)):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"model.{key}: expected a whole number >= {least}, got "
                                 f"{value!r}")
        if isinstance(self.gtol, bool) or not isinstance(self.gtol, (int, float)) \
                or not self.gtol > 0:
            raise ValueError(f"model.gtol: expected a positive number, got {self.gtol!r}")
        if not (isinstance(self.validation_fraction, (int, float))
                and 0 < self.validation_fraction < 1):
            raise ValueError("model.validation_fraction: a number between 0 and 1, got "
                             f"{self.validation_fraction!r}")

    def tau_candidates(self):
        return list(self.tau) if isinstance(self.tau, (list, tuple)) else [self.tau]

    def descriptor_dict(self, elements):
        """The descriptor's pacemaker-format basis dict, defaults filled in."""
        import copy

        bonds = copy.deepcopy(self.basis.get("bonds") or {})
        bonds["ALL"] = {**DEFAULT_DESCRIPTOR_RADIAL, "rcut": self.cutoff, **bonds.get("ALL", {})}
        functions = copy.deepcopy(self.basis.get("functions") or DEFAULT_DESCRIPTOR_FUNCTIONS)
        return {"elements": list(elements),
                "embeddings": {"ALL": {"npot": "FinnisSinclairShiftedScaled", "ndensity": 1,
                                       "fs_parameters": [1.0, 1.0]}},
                "bonds": bonds, "functions": functions}

    def to_dict(self):
        return {"kind": "physically-informed", "form": self.form, "cutoff": self.cutoff,
                "traditional": self.traditional, "basis": self.basis, "tau": self.tau,
                "varied": self.varied, "train_base": self.train_base,
                "max_iterations": self.max_iterations, "gtol": self.gtol,
                "validation_fraction": self.validation_fraction, "seed": self.seed,
                "max_shift": self.max_shift, "clip_descriptor": self.clip_descriptor}

    def shift_half_widths(self, base_parameters):
        """max_shift as the potential's array [n_elements, n_params] (inf: unbounded)."""
        from ace.physical import SPECS

        p0 = np.asarray(base_parameters, dtype=float)
        if self.max_shift is None:
            return np.full(p0.shape, np.inf)
        if isinstance(self.max_shift, dict):
            names = list(SPECS[self.form].parameter_names)
            shifts = np.full(p0.shape, np.inf)
            for k, value in self.max_shift.items():
                shifts[:, names.index(k)] = float(value)
            return shifts
        shifts = float(self.max_shift) * np.abs(p0)
        if (shifts == 0).any():
            raise ValueError("model.max_shift: a fraction of |p0| leaves a parameter with "
                             "p0 = 0 no room; give that parameter a half-width "
                             "({parameter: half-width})")
        return shifts


def traditional_start(settings, dataset, loss_settings, elements, base_dir=None,
                      num_threads=None, log=None):
    """The traditional potential p0 comes from: loaded (a path) or fitted (inline settings)."""
    from ace.fitting.traditional import TraditionalSettings, fit_traditional
    from ace.io import load_potential
    from ace.physical.potential import TraditionalPotential

    if isinstance(settings.traditional, str):
        path = settings.traditional
        if base_dir and not os.path.isabs(path):
            path = os.path.join(base_dir, path)
        potential = load_potential(path)
        if not isinstance(potential, TraditionalPotential):
            raise ValueError(f"model.traditional: {path} is not a traditional potential")
        if potential.form.name != settings.form or potential.elements != list(elements):
            raise ValueError(f"model.traditional: {path} is a {potential.form.name} potential "
                             f"of {potential.elements}; this fit needs {settings.form} of "
                             f"{list(elements)}")
        if abs(potential.form.cutoff - settings.cutoff) > 1e-12:
            raise ValueError(f"model.traditional: {path} has the cutoff "
                             f"{potential.form.cutoff:g} Å, the config {settings.cutoff:g} Å")
        return potential, {"traditional": os.path.basename(path)}
    traditional = TraditionalSettings(form=settings.form, cutoff=settings.cutoff,
                                      **settings.traditional)
    potential, report = fit_traditional(dataset, traditional, loss_settings, elements,
                                        num_threads=num_threads, log=log)
    return potential, {"traditional": report}


def fit_from_settings(settings, dataset, loss_settings, elements, base_dir=None,
                      num_threads=None, log=None):
    """The physically-informed fit of a config: (potential, report)."""
    import time

    from ace.basis import build_basis
    from ace.fitting.linear import (DEFAULT_FORCES_WEIGHT, DEFAULT_STRESS_WEIGHT,
                                    structure_weights)
    from ace.potential import ACEPotential

    log = log or (lambda message: None)
    start_time = time.perf_counter()
    traditional, report = traditional_start(settings, dataset, loss_settings, elements,
                                            base_dir, num_threads, log)
    descriptor = ACEPotential.from_basis(build_basis(settings.descriptor_dict(elements)))
    form = traditional.form
    p0 = np.array([traditional.parameters[e] for e in traditional.elements])
    start = PhysicallyInformedPotential(form, descriptor, p0, e0=traditional.e0,
                                        max_shift=settings.shift_half_widths(p0))
    log(f"physically-informed {form.name}: descriptor of {len(descriptor.functions)} "
        f"functions, {start.n_parameters} parameters")
    weights = structure_weights(dataset, loss_settings, elements)
    tau_terms = {"forces": (DEFAULT_FORCES_WEIGHT if loss_settings.forces == "auto"
                            else float(loss_settings.forces)),
                 "stress": (DEFAULT_STRESS_WEIGHT if loss_settings.stress == "auto"
                            else float(loss_settings.stress))}
    samples = make_samples(start, dataset, weights, num_threads=num_threads)
    # E0 given in the config (free-atom energies) stays as it is; "auto" is fitted
    train_e0 = loss_settings.e0 == "auto"
    candidates = settings.tau_candidates()
    selection = None
    if len(candidates) > 1:
        rng = np.random.default_rng(settings.seed)
        order = rng.permutation(len(samples))
        n_valid = max(1, int(round(settings.validation_fraction * len(samples))))
        valid, train = order[:n_valid], order[n_valid:]
        train_samples = [samples[k] for k in train]
        valid_samples = [samples[k] for k in valid]
        selection = []
        for tau in candidates:
            fitted, info = fit_physically_informed(
                start, train_samples, tau_terms, tau, settings.max_iterations, settings.gtol,
                settings.train_base, num_threads, varied=settings.varied, train_e0=train_e0,
                clip_descriptor=settings.clip_descriptor)
            check = PhysicallyInformedLoss(fitted, valid_samples, tau_terms, 0.0,
                                           num_threads=num_threads)
            terms = check.terms(check.pack(fitted))
            validation = terms["energy"] + terms["forces"] + terms["stress"]
            selection.append({"tau": float(tau), "validation_loss": float(validation),
                              "train_loss": info["loss"]})
            log(f"tau {tau:g}: validation loss {validation:.6g}")
        tau = min(selection, key=lambda row: row["validation_loss"])["tau"]
        log(f"tau {tau:g} chosen on the validation split")
    else:
        tau = float(candidates[0])
    fitted, info = fit_physically_informed(start, samples, tau_terms, tau,
                                           settings.max_iterations, settings.gtol,
                                           settings.train_base, num_threads, log=log,
                                           varied=settings.varied, train_e0=train_e0,
                                           clip_descriptor=settings.clip_descriptor)
    report.update({"method": "physically-informed", "form": form.name, "tau": tau,
                   "tau_selection": selection, "weights": tau_terms, "fit": info,
                   "descriptor_functions": len(descriptor.functions),
                   "delta_p": delta_p_summary(fitted, samples),
                   "seconds": time.perf_counter() - start_time})
    return fitted, report


def delta_p_summary(potential, samples):
    """RMS and largest |Delta p_k| over the training atoms, per parameter."""
    rows = [potential.local_parameters(s.structure.species, s.basis_values)
            - potential.base_parameters[s.structure.species] for s in samples]
    delta = np.concatenate(rows) if rows else np.zeros((0, potential.form.n_params))
    names = potential.form.parameter_names
    return {"rms": dict(zip(names, map(float, np.sqrt((delta ** 2).mean(axis=0))))),
            "max": dict(zip(names, map(float, np.abs(delta).max(axis=0, initial=0.0))))}
