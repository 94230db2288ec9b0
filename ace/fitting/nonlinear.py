"""Nonlinear fit: several densities with Finnis–Sinclair embeddings and trainable radial
functions, minimised with scipy on exact gradients from the compiled core.

The loss is the linear fit's (ace.fitting.linear: each term a weighted mean square, the same
structure weights and term weights tau_F, tau_S) plus priors::

    L = L_E + tau_F L_F + tau_S L_S + sum_k d_k sum_p c_kp^2
        + lambda_rad sum_(bond, n, l, k) (1 + k)^2 (crad_nlk - crad0_nlk)^2 / nradbase^2

d_k is the linear fit's ridge penalty (so that the linear solution, the default start, is the
optimum of the linear part); the radial prior keeps R_nl close to its start and penalises the
rough high-k base functions most.

Gradients: for the energy residuals the core returns sum_i alpha_i dE_i/dtheta; forces and
stresses are derivatives of E along the positions and the strain, so their residual terms are
derivatives of E along per-pair tangents (``ace._core._gradient``), exact and at the cost of
about two energy evaluations, independent of the number of parameters.

Robustness: the optimisation runs in segments of ``checkpoint_every`` iterations, after each
of which the state, with the L-BFGS memory (ace.fitting.lbfgs), is written atomically as JSON; the
segments and a fit resumed from a checkpoint follow exactly the path of one uninterrupted run,
and a finished fit can be continued with a larger max_iterations or patience. The best
parameters on the validation split are kept (early stopping on a plateau); Ctrl-C writes them.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass

import numpy as np
import scipy.optimize

from ace._core import effective_n_threads
from ace._core._gradient import model_values, parameter_gradient
from ace.fitting import lbfgs
from ace.fitting.heartbeat import Heartbeat

TRAINABLE = ("coefficients", "radial", "e0")
OPTIMIZERS = ("auto", "varpro", "L-BFGS", "BFGS", "least_squares")
CHECKPOINT_FORMAT = "ace-nonlinear-checkpoint"
MAX_JACOBIAN_ENTRIES = 50_000_000  # least_squares keeps the dense Jacobian: 400 MB
MAX_BATCH_PAIRS = 2_000_000  # neighbour pairs per kernel call (memory bound)
# the diagonal preconditioner is floored at this share of its largest entry: parameters the
# data barely determine would otherwise get huge steps (measured on teacher-student fits)
PRECONDITION_FLOOR = 1e-3
# embeddings whose density with fs_parameters [1, 1] enters the energy as F(rho) = rho
LINEAR_FIRST_DENSITY = ("FinnisSinclair", "FinnisSinclairShiftedScaled")
# stopping rules, which a resumed fit may raise to continue a fit that ran out of iterations
EXTENDABLE = ("max_iterations", "patience")


@dataclass
class NonlinearSettings:
    """Settings of the nonlinear fit (the ``fit`` section of the config, method nonlinear).

    optimizer: auto (default: varpro where it applies, else L-BFGS); varpro (variable
        projection: the first density's coefficients and E0 are solved exactly by linear least
        squares at every step, L-BFGS moves the rest; needs a linear first density with
        trainable coefficients, no ladder and no mini-batches); L-BFGS (ace.fitting.lbfgs: its
        memory carries over checkpoints); BFGS (scipy's, restarted at every checkpoint);
        least_squares (Levenberg–Marquardt with the exact Jacobian; only for small problems).
    trainable: any of coefficients, radial, e0; the rest is frozen.
    max_iterations: optimiser iterations in all (per restart and ladder step).
    checkpoint_every: iterations per segment; state written after each. With L-BFGS and
        varpro the optimiser's path does not depend on it (its memory carries over), except
        with mini-batches, which draw a new batch per segment.
    patience: segments without a better validation loss before stopping (0: never stop early).
    restarts: fits from differently perturbed starts (the first unperturbed), best validation
        loss kept; restart_noise: relative size of the perturbation.
    batch_size: structures per mini-batch (each segment fits a new random batch); None: all.
    ladder: numbers of functions per element to grow through (lowest degree first); None: all.
    radial_l2: lambda_rad of the radial prior (loss units).
    validation_fraction: held-out share of the training structures for early stopping and
        restart selection (none below 10 structures).

    A resumed fit must have the same settings as the checkpoint's, except the stopping rules
    (``EXTENDABLE``): raising max_iterations or patience continues the run the fit ended in
    (with restarts or a ladder, the last one); with L-BFGS and varpro, on exactly the path it
    would have taken had they been set from the start.
    """

    optimizer: str = "auto"
    trainable: tuple = TRAINABLE
    max_iterations: int = 300
    checkpoint_every: int = 25
    patience: int = 4
    restarts: int = 1
    restart_noise: float = 0.05
    batch_size: int | None = None
    ladder: list | None = None
    radial_l2: float = 1e-6
    validation_fraction: float = 0.1
    seed: int = 0
    gtol: float = 1e-9

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"fit.optimizer: {self.optimizer!r} is not one of {OPTIMIZERS}")
        self.trainable = tuple(self.trainable)
        unknown = sorted(set(self.trainable) - set(TRAINABLE))
        if unknown or not self.trainable:
            raise ValueError(f"fit.trainable: give a non-empty subset of {TRAINABLE}"
                             + (f" (unknown: {unknown})" if unknown else ""))
        for name in ("max_iterations", "checkpoint_every", "restarts"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"fit.{name} must be at least 1")
        if self.patience < 0 or self.restart_noise < 0 or self.radial_l2 < 0:
            raise ValueError("fit.patience, restart_noise and radial_l2 must be non-negative")
        if self.batch_size is not None and int(self.batch_size) < 1:
            raise ValueError("fit.batch_size must be a positive number of structures or null")
        if not 0 <= self.validation_fraction < 1:
            raise ValueError("fit.validation_fraction must be in [0, 1)")
        if self.ladder is not None:
            steps = [int(n) for n in self.ladder]
            if not steps or any(n < 1 for n in steps) or steps != sorted(steps):
                raise ValueError("fit.ladder: give increasing positive numbers of functions")
            self.ladder = steps


# ---------------------------------------------------------------------- parameters

class ParameterLayout:
    """Where each trainable parameter lives: theta <-> (coefs [nf, nd], flat crad, e0)."""

    def __init__(self, potential, trainable=TRAINABLE, active_functions=None):
        pot = self.potential = potential
        n_el = len(pot.elements)
        self.nradbase = max(b.nradbase for b in pot.bonds.values())
        self.nradmax = max(max(b.nradmax for b in pot.bonds.values()), 1)
        self.lmax = max(b.lmax for b in pot.bonds.values())
        self.crad_shape = (n_el * n_el, self.nradmax, self.lmax + 1, self.nradbase)
        nd = np.array([pot.embeddings[f.mu0].ndensity for f in pot.functions])
        coef_mask = np.arange(pot.ndensity_max)[None, :] < nd[:, None]
        if active_functions is not None:
            coef_mask &= np.asarray(active_functions, dtype=bool)[:, None]
        crad_mask = np.zeros(self.crad_shape, dtype=bool)
        rank2 = {(f.mu0, mu) for f in pot.functions if f.rank > 1 for mu in f.mus}
        self.crad0 = np.zeros(self.crad_shape)
        for (i, j), bond in pot.bonds.items():
            b = i * n_el + j
            self.crad0[b, :bond.nradmax, :bond.lmax + 1, :bond.nradbase] = bond.crad
            if (i, j) in rank2:  # radial functions of bonds used by some product
                crad_mask[b, :bond.nradmax, :bond.lmax + 1, :bond.nradbase] = True
        self.coef_index = np.flatnonzero(coef_mask) if "coefficients" in trainable else \
            np.zeros(0, dtype=np.int64)
        self.crad_index = np.flatnonzero(crad_mask) if "radial" in trainable else \
            np.zeros(0, dtype=np.int64)
        self.n_e0 = n_el if "e0" in trainable else 0
        self.sizes = (len(self.coef_index), len(self.crad_index), self.n_e0)
        self.size = sum(self.sizes)
        # the frozen values
        self.coefs0 = np.ascontiguousarray(pot.coefficients, dtype=float)
        if active_functions is not None:
            self.coefs0 = self.coefs0 * np.asarray(active_functions, dtype=bool)[:, None]
        self.e00 = np.asarray(pot.e0, dtype=float)
        k = np.arange(self.nradbase)
        self.radial_weight = np.broadcast_to((1.0 + k) ** 2 / self.nradbase ** 2,
                                             self.crad_shape).ravel()[self.crad_index]

    def pack(self, coefs=None, crad=None, e0=None):
        coefs = self.coefs0 if coefs is None else coefs
        crad = self.crad0 if crad is None else crad
        e0 = self.e00 if e0 is None else e0
        return np.concatenate([np.ravel(coefs)[self.coef_index], np.ravel(crad)[self.crad_index],
                               np.ravel(e0)[:self.n_e0]])

    def unpack(self, theta):
        nc, nr, ne = self.sizes
        coefs = self.coefs0.copy()
        coefs.ravel()[self.coef_index] = theta[:nc]
        crad = self.crad0.ravel().copy()
        crad[self.crad_index] = theta[nc:nc + nr]
        e0 = self.e00.copy() if not ne else np.asarray(theta[nc + nr:], dtype=float).copy()
        return coefs, crad, e0

    def gradient(self, g_coefs, g_crad, g_e0):
        return np.concatenate([np.ravel(g_coefs)[self.coef_index],
                               np.ravel(g_crad)[self.crad_index], np.ravel(g_e0)[:self.n_e0]])

    def potential_for(self, theta, metadata=None):
        """A copy of the template potential carrying the parameters ``theta``."""
        from ace.potential import ACEPotential

        coefs, crad, e0 = self.unpack(theta)
        pot = self.potential.copy()
        n_el = len(pot.elements)
        crad = crad.reshape(self.crad_shape)
        for (i, j), bond in pot.bonds.items():
            bond.crad = crad[i * n_el + j, :bond.nradmax, :bond.lmax + 1, :bond.nradbase].copy()
        return ACEPotential(pot.elements, pot.bonds, pot.embeddings, pot.functions, coefs, e0=e0,
                            basis_spec=pot.basis_spec, min_distance=pot.min_distance,
                            metadata={**pot.metadata, **(metadata or {})})


# ---------------------------------------------------------------------- data in kernel form

@dataclass
class Batch:
    """Structures concatenated for one kernel call: their neighbour lists and targets."""

    structures: np.ndarray  # dataset indices
    species: np.ndarray
    first: np.ndarray
    pair_i: np.ndarray
    pair_j: np.ndarray
    vectors: np.ndarray
    atom_structure: np.ndarray  # local structure index of each atom
    pair_structure: np.ndarray
    n_atoms: np.ndarray
    counts: np.ndarray  # [n_s, n_elements]
    energy: np.ndarray
    forces: np.ndarray
    force_mask: np.ndarray  # [n_atoms] atom of a structure with forces
    stress: np.ndarray  # [n_s, 3, 3]
    stress_mask: np.ndarray
    volume: np.ndarray
    weight: np.ndarray  # structure weights w_s


def make_batches(potential, dataset, weights, indices=None, num_threads=None,
                 max_pairs=MAX_BATCH_PAIRS):
    """Neighbour lists of the structures ``indices`` grouped into batches of bounded size."""
    from ace.evaluator import Evaluator, Structure

    evaluator = Evaluator(potential)
    indices = np.arange(len(dataset)) if indices is None else np.asarray(indices)
    counts = dataset.counts(potential.elements)
    has_forces, has_stress, volumes = dataset.has_forces, dataset.has_stress, dataset.volumes
    batches, pending, n_pairs = [], [], 0

    def flush():
        if pending:
            batches.append(_batch(pending, dataset, counts, weights, has_forces, has_stress,
                                  volumes))
            pending.clear()

    for s in indices:
        sl = dataset.atom_slice(s)
        structure = Structure(potential, dataset.numbers[sl], dataset.positions[sl],
                              dataset.cells[s], dataset.pbc[s])
        try:
            nl = evaluator.neighbours(structure, num_threads)
        except ValueError as exc:
            raise ValueError(f"{dataset.names[s]}: {exc}") from exc
        if pending and n_pairs + len(nl) > max_pairs:
            flush()
            n_pairs = 0
        pending.append((int(s), structure.species, nl))
        n_pairs += len(nl)
    flush()
    return batches


def _batch(pending, dataset, counts, weights, has_forces, has_stress, volumes):
    species, first, pi, pj, vec, atom_s, pair_s = [], [np.zeros(1, np.int64)], [], [], [], [], []
    atom_offset = pair_offset = 0
    for k, (s, sp, nl) in enumerate(pending):
        species.append(sp)
        first.append(np.asarray(nl.first[1:], dtype=np.int64) + pair_offset)
        pi.append(nl.i + atom_offset)
        pj.append(nl.j + atom_offset)
        vec.append(nl.vectors)
        atom_s.append(np.full(len(sp), k))
        pair_s.append(np.full(len(nl), k))
        atom_offset += len(sp)
        pair_offset += len(nl)
    idx = np.array([p[0] for p in pending])
    n_atoms = np.array([len(p[1]) for p in pending])
    atoms = np.concatenate([np.arange(dataset.offsets[s], dataset.offsets[s + 1]) for s in idx])
    force_ok = np.repeat(has_forces[idx], n_atoms)
    stress_ok = has_stress[idx] & (volumes[idx] > 0)
    return Batch(
        structures=idx, species=np.concatenate(species).astype(np.int32),
        first=np.concatenate(first),
        pair_i=np.concatenate(pi).astype(np.int64), pair_j=np.concatenate(pj).astype(np.int64),
        vectors=np.ascontiguousarray(np.concatenate(vec)),
        atom_structure=np.concatenate(atom_s), pair_structure=np.concatenate(pair_s),
        n_atoms=n_atoms, counts=counts[idx], energy=dataset.energy[idx],
        forces=np.where(force_ok[:, None], np.nan_to_num(dataset.forces[atoms]), 0.0),
        force_mask=force_ok,
        stress=np.where(stress_ok[:, None, None], np.nan_to_num(dataset.stress[idx]), 0.0),
        stress_mask=stress_ok, volume=np.where(volumes[idx] > 0, volumes[idx], 1.0),
        weight=np.asarray(weights, dtype=float)[idx])


# ---------------------------------------------------------------------- the loss

class NonlinearLoss:
    """The loss of a dataset (as batches) and its exact gradient in the parameters theta."""

    def __init__(self, layout, design_model, batches, tau, penalty, radial_l2,
                 num_threads=None, norms=None):
        self.layout = layout
        self.model = design_model
        self.batches = batches
        self.tau = tau
        self.n_threads = effective_n_threads(num_threads)
        self.radial_l2 = float(radial_l2)
        self.penalty = np.asarray(penalty, dtype=float)
        # the priors as one quadratic sum_k q_k (theta_k - theta0_k)^2: the per-function ridge
        # d_k on every density's coefficient, the radial prior around the start, none on E0
        coef_penalty = np.repeat(self.penalty[:, None], layout.coefs0.shape[1], axis=1)
        nc, nr, ne = layout.sizes
        self.prior_weight = np.concatenate([coef_penalty.ravel()[layout.coef_index],
                                            self.radial_l2 * layout.radial_weight, np.zeros(ne)])
        self.prior_center = np.concatenate([np.zeros(nc),
                                            layout.crad0.ravel()[layout.crad_index],
                                            np.zeros(ne)])
        # the term normalisations (sums of row weights) of the whole set
        self.norms = norms or term_norms(batches)

    def _gradient(self, species, first, pair_j, vectors, coefs, crad, n_e0, alpha, u, U,
                  group):
        """d/dtheta sum_i (alpha_i E_i + D_delta E_i) of the atoms given, along the pair
        tangents delta_ij = u_i - u_j + D_ij U_(group_i) (force directions u [atoms, 3],
        strain directions U [groups, 3, 3])."""
        g_coefs, g_crad = parameter_gradient(
            self.model, coefs, crad, species, first, pair_j, vectors,
            np.ascontiguousarray(alpha, dtype=float), np.ascontiguousarray(u, dtype=float),
            np.ascontiguousarray(U, dtype=float).reshape(-1, 9),
            np.ascontiguousarray(group, dtype=np.int64),
            len(self.layout.crad_index) > 0, self.n_threads)
        return self.layout.gradient(g_coefs, g_crad, np.bincount(species, alpha, n_e0))

    # the three data terms on one batch: value, and optionally the gradient
    def _batch_terms(self, batch, coefs, crad, e0, gradient):
        e, pg = model_values(self.model, coefs, crad, batch.species, batch.first, batch.pair_j,
                             batch.vectors, self.n_threads)
        energies = np.bincount(batch.atom_structure, e, len(batch.n_atoms)) + batch.counts @ e0
        forces = scatter_forces(batch.pair_i, batch.pair_j, pg, len(batch.species))
        strain = np.zeros((len(batch.n_atoms), 9))
        outer = (batch.vectors[:, :, None] * pg[:, None, :]).reshape(-1, 9)
        for c in range(9):
            strain[:, c] = np.bincount(batch.pair_structure, outer[:, c], len(batch.n_atoms))
        strain = strain.reshape(-1, 3, 3)
        stress = 0.5 * (strain + strain.transpose(0, 2, 1)) / batch.volume[:, None, None]
        w = batch.weight
        cE, cF, cS = (1.0 / self.norms["energy"],
                      self.tau["forces"] / max(self.norms["forces"], 1e-300),
                      self.tau["stress"] / max(self.norms["stress"], 1e-300))
        rE = (energies - batch.energy) / batch.n_atoms
        rF = (forces - batch.forces) * batch.force_mask[:, None]
        rS = (stress - batch.stress) * batch.stress_mask[:, None, None]
        w_atom = w[batch.atom_structure]
        terms = {"energy": cE * np.sum(w * rE ** 2),
                 "forces": cF * np.sum(w_atom[:, None] * rF ** 2),
                 "stress": cS * np.sum(w[:, None, None] * rS ** 2)}
        if not gradient:
            return terms, None
        alpha = (2 * cE * w * rE / batch.n_atoms)[batch.atom_structure]
        u = 2 * cF * w_atom[:, None] * rF
        U = 2 * cS * w[:, None, None] * rS / batch.volume[:, None, None]
        return terms, self._batch_gradient(batch, coefs, crad, len(e0), alpha, u, U)

    def _batch_gradient(self, batch, coefs, crad, n_e0, alpha, u, U):
        """The gradient for energy weights alpha [atoms], force directions u [atoms, 3] and
        stress directions U [structures, 3, 3] (per unit strain, so divided by the volume)."""
        return self._gradient(batch.species, batch.first, batch.pair_j, batch.vectors, coefs,
                              crad, n_e0, alpha, u, U, batch.atom_structure)

    def gauss_newton_diagonal(self, theta, n_probes=8, seed=0):
        """Estimate of diag(J^T J) of the residuals (prior included) from random-sign probes:
        for v with entries +-1, E[(J^T v)_k^2] = sum_q J_qk^2; one gradient pass per probe."""
        coefs, crad, e0 = self.layout.unpack(theta)
        rng = np.random.default_rng(seed)
        total = np.zeros(self.layout.size)
        for _ in range(n_probes):
            probe = np.zeros(self.layout.size)
            for batch in self.batches:
                n_s = len(batch.n_atoms)
                w = batch.weight
                vE = rng.choice((-1.0, 1.0), n_s) * np.sqrt(w / self.norms["energy"])
                alpha = (vE / batch.n_atoms)[batch.atom_structure]
                sF = np.sqrt(self.tau["forces"] * w / max(self.norms["forces"], 1e-300))
                u = rng.choice((-1.0, 1.0), (len(batch.species), 3)) * (
                    sF[batch.atom_structure] * batch.force_mask)[:, None]
                sS = np.sqrt(self.tau["stress"] * w / max(self.norms["stress"], 1e-300))
                V = rng.choice((-1.0, 1.0), (n_s, 3, 3)) * (
                    sS * batch.stress_mask / batch.volume)[:, None, None]
                V = 0.5 * (V + V.transpose(0, 2, 1))
                probe += self._batch_gradient(batch, coefs, crad, len(e0), alpha, u, V)
            total += probe ** 2
        return total / n_probes + self.prior_weight

    def prior(self, theta):
        offset = theta - self.prior_center
        return np.sum(self.prior_weight * offset ** 2), 2 * self.prior_weight * offset

    def terms(self, theta):
        """The data terms {energy, forces, stress} (weighted mean squares) at theta."""
        coefs, crad, e0 = self.layout.unpack(theta)
        total = {"energy": 0.0, "forces": 0.0, "stress": 0.0}
        for batch in self.batches:
            terms, _ = self._batch_terms(batch, coefs, crad, e0, False)
            for t in total:
                total[t] += terms[t]
        return total

    def value(self, theta):
        return sum(self.terms(theta).values()) + self.prior(theta)[0]

    def value_and_gradient(self, theta):
        coefs, crad, e0 = self.layout.unpack(theta)
        value, grad = self.prior(theta)
        for batch in self.batches:
            terms, batch_gradient = self._batch_terms(batch, coefs, crad, e0, True)
            value += sum(terms.values())
            grad = grad + batch_gradient
        if not np.isfinite(value) or not np.isfinite(grad).all():
            raise FloatingPointError("the loss or its gradient is not finite (a density left "
                                     "the domain of its embedding?)")
        return value, grad

    # least squares: residuals r with L = sum r^2 and their exact Jacobian
    def residuals_and_jacobian(self, theta):
        coefs, crad, e0 = self.layout.unpack(theta)
        rows, jac = [], []
        for batch in self.batches:
            for k in range(len(batch.n_atoms)):
                r, J = self._structure_jacobian(batch, k, coefs, crad, e0)
                rows.append(r)
                jac.append(J)
        nc, nr, _ = self.layout.sizes  # E0 has no prior: no rows for it
        sq = np.sqrt(self.prior_weight[:nc + nr])
        prior_rows = np.zeros((nc + nr, self.layout.size))
        prior_rows[np.arange(nc + nr), np.arange(nc + nr)] = sq
        rows.append(sq * (theta - self.prior_center)[:nc + nr])
        jac.append(prior_rows)
        return np.concatenate(rows), np.vstack(jac)

    def _structure_jacobian(self, batch, k, coefs, crad, e0):
        """Residuals of structure k of the batch and their gradients, one tangent each."""
        atoms = np.flatnonzero(batch.atom_structure == k)
        a0, a1 = atoms[0], atoms[-1] + 1
        p0, p1 = batch.first[a0], batch.first[a1]
        sub = dict(species=batch.species[a0:a1], first=batch.first[a0:a1 + 1] - p0,
                   pair_i=batch.pair_i[p0:p1] - a0, pair_j=batch.pair_j[p0:p1] - a0,
                   vectors=np.ascontiguousarray(batch.vectors[p0:p1]))
        n, w = a1 - a0, batch.weight[k]
        e, pg = model_values(self.model, coefs, crad, sub["species"], sub["first"],
                             sub["pair_j"], sub["vectors"], self.n_threads)
        energy = e.sum() + batch.counts[k] @ e0
        forces = scatter_forces(sub["pair_i"], sub["pair_j"], pg, n)
        strain = sub["vectors"].T @ pg
        stress = 0.5 * (strain + strain.T) / batch.volume[k]
        residuals, directions = [], []  # per residual: (alpha [n], u [n, 3], U [3, 3])
        sE = np.sqrt(w / self.norms["energy"])
        residuals.append(sE * (energy - batch.energy[k]) / n)
        directions.append((np.full(n, sE / n), np.zeros((n, 3)), np.zeros((3, 3))))
        if batch.force_mask[a0] and self.tau["forces"] > 0:
            sF = np.sqrt(self.tau["forces"] * w / self.norms["forces"])
            for i in range(n):
                for a in range(3):
                    residuals.append(sF * (forces[i, a] - batch.forces[a0 + i, a]))
                    u = np.zeros((n, 3))
                    u[i, a] = sF
                    directions.append((np.zeros(n), u, np.zeros((3, 3))))
        if batch.stress_mask[k] and self.tau["stress"] > 0:
            sS = np.sqrt(self.tau["stress"] * w / self.norms["stress"])
            for a in range(3):
                for b in range(3):
                    residuals.append(sS * (stress[a, b] - batch.stress[k, a, b]))
                    U = np.zeros((3, 3))
                    U[a, b] = 0.5 * sS / batch.volume[k]
                    U[b, a] += 0.5 * sS / batch.volume[k]
                    directions.append((np.zeros(n), np.zeros((n, 3)), U))
        J = np.empty((len(residuals), self.layout.size))
        group = np.zeros(n, dtype=np.int64)
        for row, (alpha, u, U) in enumerate(directions):
            J[row] = self._gradient(sub["species"], sub["first"], sub["pair_j"], sub["vectors"],
                                    coefs, crad, len(e0), alpha, u, U, group)
        return np.array(residuals), J

    def n_residuals(self):
        total = 0
        for b in self.batches:
            total += len(b.n_atoms)
            if self.tau["forces"] > 0:
                total += 3 * int(b.force_mask.sum())
            if self.tau["stress"] > 0:
                total += 9 * int(b.stress_mask.sum())
        return total + self.layout.sizes[0] + self.layout.sizes[1]


def scatter_forces(pair_i, pair_j, pair_gradient, n_atoms):
    """Forces [n_atoms, 3] from the pair gradients dE_i/dD_ij (D_ij = r_j - r_i)."""
    return np.stack([np.bincount(pair_i, pair_gradient[:, a], n_atoms)
                     - np.bincount(pair_j, pair_gradient[:, a], n_atoms) for a in range(3)],
                    axis=1)


def term_norms(batches):
    """Sums of row weights of each term (the normalisation of ace.fitting.linear)."""
    norms = {"energy": 0.0, "forces": 0.0, "stress": 0.0}
    for b in batches:
        norms["energy"] += float(b.weight.sum())
        norms["forces"] += float(np.sum(3 * b.n_atoms * b.weight * (
            np.bincount(b.atom_structure, b.force_mask, len(b.n_atoms)) > 0)))
        norms["stress"] += float(np.sum(9 * b.weight * b.stress_mask))
    return norms


# ---------------------------------------------------------------------- variable projection

class LinearProjection:
    """Variable projection (Golub and Pereyra): with a linear first density, the energies,
    forces and stresses are linear in that density's coefficients and in E0, so for any value
    of the other parameters (radial functions, other densities) those are solved exactly by
    the linear fit's normal equations, with the loss's ridge penalty. The optimiser then sees
    only the other parameters; by the envelope theorem the gradient of the projected loss is
    the loss gradient at the solved point. This removes the stiff coupling between
    coefficients and radial functions that stalls a joint quasi-Newton fit (mlearn Mo, 600
    functions: 50 projected iterations end 31% below the loss of 150 joint quasi-Newton ones).
    """

    def __init__(self, layout, dataset, weights, tau, penalty, num_threads=None):
        pot = layout.potential
        nf, nd = pot.n_functions, layout.coefs0.shape[1]
        nc, nr, _ = layout.sizes
        first = layout.coef_index % nd == 0
        if int(first.sum()) != nf:
            raise ValueError("variable projection needs every function's first-density "
                             "coefficient trainable")
        linear = np.zeros(layout.size, dtype=bool)
        linear[:nc] = first
        linear[nc + nr:] = True
        self.outer = np.flatnonzero(~linear)
        self.layout, self.dataset, self.weights = layout, dataset, np.asarray(weights, float)
        self.tau = {"energy": 1.0, **tau}
        self.penalty = np.asarray(penalty, dtype=float)
        self.num_threads = num_threads

    def solve(self, theta):
        """theta with the first density's coefficients (and trainable E0) at their optimum
        for the other parameters of theta."""
        from ace.fitting.linear import normal_equations
        from ace.potential import ACEPotential

        layout = self.layout
        coefs, crad, e0 = layout.unpack(theta)
        pot = layout.potential_for(theta)
        rest = coefs.copy()
        rest[:, 0] = 0.0
        fixed = None  # without other densities, normal_equations subtracts the core itself
        if rest.any():
            fixed = ACEPotential(pot.elements, pot.bonds, pot.embeddings, pot.functions, rest,
                                 e0=np.zeros(len(pot.elements)), basis_spec=pot.basis_spec,
                                 min_distance=pot.min_distance)
        fit_e0 = layout.n_e0 > 0
        neq = normal_equations(linear_part(pot), self.dataset, self.weights,
                               None if fit_e0 else e0, self.num_threads, fixed_part=fixed)
        G, b, _, _ = neq.combined(self.tau)
        nf = pot.n_functions
        G[np.arange(nf), np.arange(nf)] += self.penalty
        params = solve_symmetric(G, b)
        coefs[:, 0] = params[:nf]
        if fit_e0:
            e0 = params[nf:]
        return layout.pack(coefs, crad, e0)


def solve_symmetric(A, b):
    """x with A x = b for a symmetric positive semi-definite A, solved on the standardised
    system (unit diagonal; columns that are zero stay 0): Cholesky, or a pseudo-inverse when
    A is singular."""
    import scipy.linalg

    diagonal = np.diag(A).copy()
    active = diagonal > 0
    scale = 1.0 / np.sqrt(diagonal[active])
    As = A[np.ix_(active, active)] * scale[:, None] * scale[None, :]
    bs = b[active] * scale
    try:
        xs = scipy.linalg.cho_solve(scipy.linalg.cho_factor(As, check_finite=False), bs,
                                    check_finite=False)
    except np.linalg.LinAlgError:
        values, vectors = scipy.linalg.eigh(As)
        keep = values > 1e-12 * max(values.max(initial=0.0), 1e-300)
        xs = vectors[:, keep] @ ((vectors[:, keep].T @ bs) / values[keep])
    x = np.zeros_like(b)
    x[active] = xs * scale
    return x


def linear_part(potential):
    """The potential with one linear density per element (what the linear fit solves)."""
    from ace.basis.model import Embedding
    from ace.potential import ACEPotential

    if all(e.ndensity == 1 for e in potential.embeddings.values()):
        return potential
    embeddings = {i: Embedding(1, "FinnisSinclairShiftedScaled", [1.0, 1.0], e.rho_core_cut,
                               e.drho_core_cut) for i, e in potential.embeddings.items()}
    return ACEPotential(potential.elements, potential.bonds, embeddings, potential.functions,
                        basis_spec=potential.basis_spec, min_distance=potential.min_distance,
                        metadata=potential.metadata)


def resolve_optimizer(potential, settings):
    """The optimiser to run: ``auto`` is varpro where it applies, else L-BFGS."""
    if settings.optimizer not in ("auto", "varpro"):
        return settings.optimizer
    reasons = []
    if "coefficients" not in settings.trainable:
        reasons.append("the coefficients are frozen")
    if settings.ladder:
        reasons.append("fit.ladder is set")
    if settings.batch_size:
        reasons.append("fit.batch_size is set")
    for i, emb in sorted(potential.embeddings.items()):
        if emb.npot not in LINEAR_FIRST_DENSITY or list(emb.fs_parameters[:2]) != [1, 1]:
            reasons.append(f"the first density of {potential.elements[i]} is not linear "
                           f"({emb.npot} {list(emb.fs_parameters[:2])}; needs fs_parameters "
                           f"starting [1, 1])")
    if not reasons:
        return "varpro"
    if settings.optimizer == "varpro":
        raise ValueError("fit.optimizer varpro does not apply: " + "; ".join(reasons))
    return "L-BFGS"


# ---------------------------------------------------------------------- the fit

EXTRA_DENSITY_START = 1e-4  # relative size of the extra densities' random start


def start_from_linear(potential, linear, seed=0):
    """``potential`` (several densities) with the linear fit's coefficients on the first
    density and E0. The other densities start small and random, in proportion to the linear
    coefficients: at rho_p = 0 their gradient is F_p'(0) times that of the first density,
    which (but for the ridge) vanishes at the linear optimum, so an all-zero start is a saddle;
    the start is small so as not to move the energies off the linear fit (0.1 gave eV-scale
    changes on Mo and Si and a worse fit after 50 iterations)."""
    from ace.potential import ACEPotential

    rng = np.random.default_rng(seed)
    c0 = np.asarray(linear.coefficients, dtype=float)[:, 0]
    coefficients = np.zeros((potential.n_functions, potential.ndensity_max))
    coefficients[:, 0] = c0
    for p in range(1, potential.ndensity_max):
        coefficients[:, p] = EXTRA_DENSITY_START * np.abs(c0) * rng.standard_normal(len(c0))
    for k, f in enumerate(potential.functions):
        coefficients[k, potential.embeddings[f.mu0].ndensity:] = 0.0
    return ACEPotential(potential.elements, potential.bonds, potential.embeddings,
                        potential.functions, coefficients, e0=linear.e0,
                        basis_spec=potential.basis_spec, min_distance=potential.min_distance)


@dataclass
class NonlinearFit:
    """The fitted potential and a JSON-friendly report."""

    potential: object
    report: dict


class CheckpointError(ValueError):
    """A checkpoint that is unreadable or belongs to another fit."""


def ladder_masks(potential, ladder):
    """Active-function masks, one per ladder step: per element the lowest-degree functions
    first (rank, then sum of n + l), growing to the given counts and finally to all."""
    if not ladder:
        return [None]
    order_key = [(f.rank, sum(f.ns) + sum(f.ls), k) for k, f in enumerate(potential.functions)]
    masks = []
    for size in list(ladder) + [None]:
        mask = np.zeros(potential.n_functions, dtype=bool)
        for mu in range(len(potential.elements)):
            members = sorted(key for key in order_key if potential.functions[key[2]].mu0 == mu)
            chosen = members if size is None else members[:size]
            mask[[key[2] for key in chosen]] = True
        if not masks or not np.array_equal(mask, masks[-1]):
            masks.append(mask)
    return masks


def fit_nonlinear(potential, train, settings=None, weights=None, tau=None, penalty=None,
                  num_threads=None, checkpoint=None, resume=False, save_best=None, log=None,
                  metadata=None, context=None, progress=None):
    """Minimise the nonlinear loss from the parameters of ``potential`` (the start).

    ``weights`` [n_s] structure weights (default 1), ``tau`` {forces, stress} term weights,
    ``penalty`` [n_functions] the ridge penalty d_k (default 0). ``checkpoint``: path of the
    JSON state written after every segment; ``resume``: continue from it. ``save_best(pot)``
    is called whenever the best potential improves (so an interrupted fit leaves one).
    ``context``: JSON data stored with every checkpoint, for the caller to read back with
    :func:`read_checkpoint_context` before resuming (``ace fit`` keeps its linear fit there).
    ``log`` gets one line per segment; ``progress`` (None: silent) gets a line at least every
    10 s inside segments, with an estimate of the time left (:mod:`ace.fitting.heartbeat`).
    """
    from ace.evaluator import compile_model

    settings = settings or NonlinearSettings()
    log = log or (lambda message: None)
    start_time = time.perf_counter()
    train.check_elements(potential.elements)
    weights = np.ones(len(train)) if weights is None else np.asarray(weights, dtype=float)
    tau = {"forces": 1.0, "stress": 0.0, **(tau or {})}
    penalty = np.zeros(potential.n_functions) if penalty is None else np.asarray(penalty, float)
    if penalty.shape != (potential.n_functions,):
        raise ValueError(f"penalty needs one entry per function ({potential.n_functions})")
    n_threads = effective_n_threads(num_threads)

    if settings.validation_fraction > 0 and len(train) >= 10:
        fit_idx, val_idx = train.split_indices(settings.validation_fraction, settings.seed)
    else:
        fit_idx, val_idx = np.arange(len(train)), np.zeros(0, dtype=np.int64)
    heartbeat = Heartbeat(progress, settings.max_iterations * settings.restarts)
    heartbeat.stage(f"neighbour lists of {len(fit_idx)} fit and {len(val_idx)} validation "
                    "structures")
    design = compile_model(potential, design=True)
    fit_batches = make_batches(potential, train, weights, fit_idx, n_threads)
    val_batches = make_batches(potential, train, weights, val_idx, n_threads) if len(val_idx) \
        else []
    masks = ladder_masks(potential, settings.ladder)
    heartbeat.total *= len(masks)
    fingerprint = _fingerprint(potential, train, settings, weights, tau, penalty)
    optimizer = resolve_optimizer(potential, settings)
    fit_data = train.subset(fit_idx) if optimizer == "varpro" else None

    state = _initial_state(potential.to_dict())
    if resume:
        state = _read_checkpoint(checkpoint, fingerprint)
        log(f"resuming from {checkpoint}: restart {state['restart'] + 1}, ladder step "
            f"{state['step'] + 1}, iteration {state['iteration']}")
    last_run = (settings.restarts - 1, len(masks) - 1)

    from ace.potential import ACEPotential
    try:
        while True:
            if _run_open(state, settings):
                anchor = ACEPotential.from_dict(state["anchor"])
                layout = ParameterLayout(anchor, settings.trainable, masks[state["step"]])
                theta_start = layout.pack()
                if state["step"] == 0 and state["restart"] > 0:
                    theta_start = _perturbed(theta_start, layout, settings, state["restart"])
                theta = theta_start if state["theta"] is None else np.array(state["theta"])
                full = NonlinearLoss(layout, design, fit_batches, tau, penalty,
                                     settings.radial_l2, num_threads)
                validation = NonlinearLoss(layout, design, val_batches, tau, penalty,
                                           settings.radial_l2, num_threads) if val_batches else None
                _check_problem_size(full, optimizer)
                projection = LinearProjection(layout, fit_data, weights[fit_idx], tau, penalty,
                                              num_threads) if optimizer == "varpro" else None
                heartbeat.stage(f"restart {state['restart'] + 1}/{settings.restarts}, step "
                                f"{state['step'] + 1}/{len(masks)}: preconditioner, then "
                                f"{optimizer} iterations")
                # a function of the step's start only, so that a resumed fit uses the same
                diagonal = full.gauss_newton_diagonal(theta_start, seed=settings.seed)
                scale = 1.0 / np.sqrt(diagonal + PRECONDITION_FLOOR * max(diagonal.max(), 1e-300))
            while _run_open(state, settings):
                n_iter = min(settings.checkpoint_every,
                             settings.max_iterations - state["iteration"])
                loss = full
                if settings.batch_size:
                    loss = _minibatch_loss(full, potential, train, weights, fit_idx, settings,
                                           state, design, n_threads, num_threads)
                # a mini-batch is a new loss each segment: its curvature memory does not carry
                memory = None if settings.batch_size else state["memory"]
                heartbeat.segment(f"restart {state['restart'] + 1}/{settings.restarts}, step "
                                  f"{state['step'] + 1}/{len(masks)}, ",
                                  (state["restart"] * len(masks) + state["step"])
                                  * settings.max_iterations, state["iteration"], n_iter)
                result = _minimise(heartbeat.watch(loss), theta, n_iter, settings, scale,
                                   optimizer, projection, memory)
                theta = result.x
                state["memory"] = result.memory
                state["iteration"] += max(int(result.nit), 1)
                state["segment"] += 1
                train_terms = full.terms(theta)
                score_terms = validation.terms(theta) if validation else train_terms
                score = sum(score_terms.values())
                improved = state["best_in_run_loss"] is None or score < state["best_in_run_loss"]
                if improved:
                    state["best_in_run"] = layout.potential_for(theta).to_dict()
                    state["best_in_run_loss"] = score
                    state["stale"] = 0
                else:
                    state["stale"] += 1
                state["history"].append({
                    "restart": state["restart"], "step": state["step"],
                    "iteration": state["iteration"], "loss": float(result.fun),
                    "train": {k: float(v) for k, v in train_terms.items()},
                    "validation": ({k: float(v) for k, v in score_terms.items()}
                                   if validation else None)})
                if state["best_loss"] is None or score < state["best_loss"]:
                    state["best"] = state["best_in_run"]
                    state["best_loss"] = score
                    if save_best is not None:
                        save_best(ACEPotential.from_dict(state["best"]))
                log(f"restart {state['restart'] + 1}/{settings.restarts}, step "
                    f"{state['step'] + 1}/{len(masks)}, iteration {state['iteration']}: "
                    f"loss {result.fun:.4e}, {'validation' if validation else 'train'} "
                    f"RMSE E {_rmse(score_terms, 'energy', 1e3):.3f} meV/atom, F "
                    f"{_rmse(score_terms, 'forces', 1.0, tau):.4f} eV/Å")
                state["converged"] = bool(result.success) and int(result.nit) < n_iter
                state["theta"] = theta.tolist()
                if checkpoint:
                    _write_checkpoint(checkpoint, state, fingerprint, context)
            # the last run's state stays in the checkpoint, so that a resumed fit with a
            # larger max_iterations or patience can continue it
            if (state["restart"], state["step"]) == last_run:
                break
            _next_run(state, len(masks))
            if checkpoint:
                _write_checkpoint(checkpoint, state, fingerprint, context)
    except KeyboardInterrupt:
        log("interrupted: the best potential so far is kept"
            + (f"; resume with the checkpoint {checkpoint}" if checkpoint else ""))
        raise
    best = ACEPotential.from_dict(state["best"])
    best.metadata.update(metadata or {})
    report = {
        "method": "nonlinear",
        "optimizer": optimizer,
        "n_parameters": ParameterLayout(best, settings.trainable).size,
        "trainable": list(settings.trainable),
        "best_score": float(state["best_loss"]),
        "score_on": "validation" if val_batches else "train",
        "n_fit_structures": int(len(fit_idx)),
        "n_validation_structures": int(len(val_idx)),
        "weights": {"energy": 1.0, "forces": float(tau["forces"]), "stress": float(tau["stress"])},
        "settings": asdict(settings),
        "history": state["history"],
        "seconds": round(time.perf_counter() - start_time, 2),
    }
    return NonlinearFit(best, report)


def _initial_state(start):
    """The fit's state before its first iteration, from the start potential's dict; the
    checkpoint holds this state as it goes."""
    return {"restart": 0, "step": 0, "segment": 0, "iteration": 0, "theta": None,
            "anchor": start, "start": start, "best_in_run": None, "best_in_run_loss": None,
            "stale": 0, "converged": False, "memory": None, "best": None, "best_loss": None,
            "history": []}


def _run_open(state, settings):
    """Whether the current run (restart, ladder step) has iterations left: not converged, under
    max_iterations, and not stopped by a validation plateau."""
    plateau = settings.patience and state["stale"] >= settings.patience
    return not (state["converged"] or plateau or state["iteration"] >= settings.max_iterations)


def _next_run(state, n_steps):
    """Move the state to the next ladder step (from the best of this one) or, after the last
    step, to the next restart (from the start)."""
    if state["step"] + 1 < n_steps:
        state.update(step=state["step"] + 1, anchor=state["best_in_run"])
    else:
        state.update(restart=state["restart"] + 1, step=0, anchor=state["start"],
                     best_in_run=None)
    state.update(iteration=0, theta=None, stale=0, converged=False, memory=None,
                 best_in_run_loss=None)


def _rmse(terms, term, unit, tau=None):
    scale = tau[term] if tau else 1.0
    return unit * float(np.sqrt(max(terms[term], 0.0) / scale)) if scale > 0 else 0.0


def _perturbed(theta, layout, settings, restart):
    rng = np.random.default_rng([settings.seed, restart])
    nc, nr, _ = layout.sizes
    out = theta.copy()
    noise = settings.restart_noise * rng.standard_normal(nc + nr)
    out[:nc + nr] *= 1.0 + noise
    return out


def _check_problem_size(loss, optimizer):
    if optimizer == "least_squares":
        entries = loss.n_residuals() * loss.layout.size
        if entries > MAX_JACOBIAN_ENTRIES:
            raise ValueError(f"optimizer least_squares: the Jacobian would have {entries:.3g} "
                             f"entries (limit {MAX_JACOBIAN_ENTRIES:.3g}); use L-BFGS")


def _minibatch_loss(full, potential, train, weights, fit_idx, settings, state, design,
                    n_threads, num_threads):
    rng = np.random.default_rng([settings.seed, state["restart"], state["step"], state["segment"]])
    size = min(int(settings.batch_size), len(fit_idx))
    chosen = np.sort(rng.choice(fit_idx, size=size, replace=False))
    batches = make_batches(potential, train, weights, chosen, n_threads)
    return NonlinearLoss(full.layout, design, batches, full.tau, full.penalty, full.radial_l2,
                         num_threads)


def _minimise(loss, theta, n_iter, settings, scale, optimizer, projection=None, memory=None):
    """Run the optimiser for at most n_iter iterations. Quasi-Newton runs in the coordinates
    theta / scale (the floored Gauss-Newton diagonal: faster on teacher-student fits, neutral
    on mlearn Si); Levenberg-Marquardt scales by its Jacobian itself; varpro runs L-BFGS on
    the parameters outside ``projection``'s linear part, solving that part at every point.
    ``memory``: the L-BFGS state of the previous segment of this run (None: start afresh);
    the result's ``memory`` is the state to continue from (None for BFGS and least_squares)."""
    if optimizer == "varpro":
        return _minimise_projected(loss, theta, n_iter, settings, scale, projection, memory)
    if optimizer == "least_squares":
        cache = {}

        def evaluate(x):
            key = x.tobytes()
            if key not in cache:
                cache.clear()
                cache[key] = loss.residuals_and_jacobian(x)
            return cache[key]

        result = scipy.optimize.least_squares(lambda x: evaluate(x)[0], theta,
                                              jac=lambda x: evaluate(x)[1], method="lm",
                                              x_scale="jac", max_nfev=n_iter + 1, xtol=1e-15,
                                              ftol=1e-15, gtol=settings.gtol)
        result.fun = float(np.sum(result.fun ** 2))
        result.nit = result.nfev
        result.success = result.status > 0
        result.memory = None
        return result

    def scaled(z):
        value, grad = loss.value_and_gradient(z * scale)
        return value, grad * scale

    if optimizer == "L-BFGS":
        result = lbfgs.minimise(scaled, theta / scale, n_iter, settings.gtol, memory)
    else:
        result = scipy.optimize.minimize(scaled, theta / scale, jac=True, method=optimizer,
                                         options={"maxiter": n_iter, "gtol": settings.gtol})
        result.memory = None
    result.x = result.x * scale
    return result


def _minimise_projected(loss, theta, n_iter, settings, scale, projection, memory):
    outer = projection.outer
    solved = {}

    def complete(z):
        key = z.tobytes()
        if key not in solved:
            full = theta.copy()
            full[outer] = z * scale[outer]
            solved.clear()
            solved[key] = projection.solve(full)
        return solved[key]

    if not len(outer):  # nothing but the linear part is trainable: one exact solve
        x = complete(np.zeros(0))
        return scipy.optimize.OptimizeResult(x=x, fun=loss.value(x), nit=0, success=True,
                                             memory=None)

    def projected(z):
        value, grad = loss.value_and_gradient(complete(z))
        return value, grad[outer] * scale[outer]

    result = lbfgs.minimise(projected, theta[outer] / scale[outer], n_iter, settings.gtol,
                            memory)
    result.x = complete(result.x)
    return result


def _fingerprint(potential, train, settings, weights, tau, penalty):
    import hashlib

    h = hashlib.sha256()
    fixed = {k: v for k, v in asdict(settings).items() if k not in EXTENDABLE}
    payload = {"potential": potential.to_dict(), "n_atoms": train.n_atoms.tolist(),
               "config_type": [str(c) for c in train.config_type], "settings": fixed,
               "tau": {k: float(v) for k, v in tau.items()}}
    h.update(json.dumps(payload, sort_keys=True, default=str).encode())
    # the data by content, not by file name: a checkpoint stays valid when the project or
    # the data directory moves
    for array in (weights, penalty, train.numbers, train.positions, train.cells, train.pbc,
                  train.energy, train.forces, train.stress):
        h.update(np.ascontiguousarray(array, dtype=float).tobytes())
    return h.hexdigest()


def _write_checkpoint(path, state, fingerprint, context=None):
    from ace.potential import write_atomic

    write_atomic(path, json.dumps({"format": CHECKPOINT_FORMAT, "fingerprint": fingerprint,
                                   "state": state, "context": context}))


def _load_checkpoint(path):
    """The checkpoint's JSON, checked to be one of ours (not yet that it is this fit's)."""
    if not path or not os.path.exists(path):
        raise CheckpointError(f"no checkpoint to resume from at {path}")
    try:
        with open(path) as fh:
            data = json.load(fh)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint ({exc})") from exc
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not an ace nonlinear-fit checkpoint")
    return data


def read_checkpoint_context(path):
    """The ``context`` a fit stored with its checkpoint at ``path`` (None if it stored none)."""
    return _load_checkpoint(path).get("context")


def _read_checkpoint(path, fingerprint):
    data = _load_checkpoint(path)
    if data.get("fingerprint") != fingerprint:
        raise CheckpointError(f"{path}: the checkpoint belongs to a different fit (other data, "
                              "basis or settings); remove it or fit without --resume")
    fields = _initial_state(None)
    state = data.get("state")
    missing = [k for k in fields if k not in state] if isinstance(state, dict) else ["state"]
    if missing:
        raise CheckpointError(f"{path}: not an ace nonlinear-fit checkpoint (missing {missing})")
    return state
