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

from dataclasses import dataclass

import numpy as np

from ace.evaluator import Structure
from ace.fitting.lbfgs import minimise
from ace.physically_informed import PhysicallyInformedEvaluator, PhysicallyInformedPotential


class OutsideDomain(ValueError):
    """Local parameters outside the physical form's domain."""


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
    in ``varied``, default all), p0 (if ``train_base``), E0]. A point whose local parameters
    leave the form's domain (e.g. sigma < 0 under a square root) has the loss +inf, so that the
    line search backs off.
    """

    def __init__(self, potential, samples, tau_terms, penalty, train_base=False,
                 num_threads=None, scale=None, varied=None):
        self.potential = potential.copy()
        self.evaluator = PhysicallyInformedEvaluator(self.potential)
        self.samples = samples
        self.tau = dict(tau_terms)
        self.penalty = float(penalty)
        self.train_base = bool(train_base)
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
        return int(self.mask.sum()), n_el * n_params if self.train_base else 0, n_el

    def pack(self, potential=None):
        pot = self.potential if potential is None else potential
        scaled = pot.coefficients * self.scale[:, None, :]
        parts = [scaled[self.mask]]
        if self.train_base:
            parts.append(pot.base_parameters.ravel())
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
        out.e0 = np.array(theta[nc + nb:], dtype=float)
        return out

    def _pack_gradient(self, g_coefficients, g_base, g_e0):
        parts = [(g_coefficients / self.scale[:, None, :])[self.mask]]
        if self.train_base:
            parts.append(g_base.ravel())
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
            params = pot.local_parameters(species, s.basis_values)
            try:
                pot.form.check(params)
            except ValueError as exc:
                raise OutsideDomain(str(exc)) from None
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
            per_param = alpha * r.parameter_derivatives + 2 * cP * delta
            tangent_part = None
            if rF is not None or rS is not None:
                g = -2 * cF * w * rF if rF is not None else np.zeros((s.n_atoms, 3))
                D = (2 * cS * w * rS / s.volume).T if rS is not None else np.zeros((3, 3))
                directional, tangents = evaluator.directional_gradient(
                    s.structure, s.nl, s.basis_values, r.parameters, r.parameter_derivatives,
                    g, D, self.num_threads)
                per_param = per_param + directional
                tangent_part = (r.parameter_derivatives, tangents)
            for e in np.unique(species):
                rows = species == e
                g_c[e] += per_param[rows].T @ s.basis_values[rows]
                if tangent_part is not None:
                    g_c[e] += tangent_part[0][rows].T @ tangent_part[1][rows]
                g_p[e] += (per_param[rows] - 2 * cP * delta[rows]).sum(axis=0)
                g_e[e] += alpha * rows.sum()
        return terms, (self._pack_gradient(g_c, g_p, g_e) if gradient else None)


def fit_physically_informed(potential, samples, tau_terms, penalty, n_iter=200, gtol=1e-8,
                            train_base=False, num_threads=None, log=None, varied=None):
    """Minimise the loss from ``potential`` (usually Delta p = 0); returns (fitted potential,
    info {iterations, loss terms, status})."""
    loss = PhysicallyInformedLoss(potential, samples, tau_terms, penalty, train_base,
                                  num_threads, varied=varied)
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
