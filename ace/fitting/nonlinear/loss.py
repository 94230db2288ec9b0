"""The nonlinear loss and its exact gradient and Jacobian, on structures in kernel form.

The loss is the linear fit's (ace.fitting.linear: each term a weighted mean square, the same
structure weights and term weights tau_F, tau_S) plus the priors (ace.fitting.nonlinear). For
the energy residuals the core returns sum_i alpha_i dE_i/dtheta; forces and stresses are
derivatives of E along the positions and the strain, so their residual terms are derivatives of
E along per-pair tangents (``ace._core._gradient``), exact and at the cost of about two energy
evaluations, independent of the number of parameters.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ace._core import effective_n_threads
from ace._core._gradient import model_values, parameter_gradient
from ace.evaluator import Evaluator, Structure

MAX_BATCH_PAIRS = 2_000_000  # neighbour pairs per kernel call (memory bound)


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

