"""Where the trainable parameters live: the vector theta the optimiser moves, and the
potential it stands for; and the active-function masks of a ladder."""
from __future__ import annotations

import numpy as np

from ace.fitting.nonlinear.settings import TRAINABLE
from ace.potential import ACEPotential


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
        coefs, crad, e0 = self.unpack(theta)
        pot = self.potential.copy()
        n_el = len(pot.elements)
        crad = crad.reshape(self.crad_shape)
        for (i, j), bond in pot.bonds.items():
            bond.crad = crad[i * n_el + j, :bond.nradmax, :bond.lmax + 1, :bond.nradbase].copy()
        return ACEPotential(pot.elements, pot.bonds, pot.embeddings, pot.functions, coefs, e0=e0,
                            basis_spec=pot.basis_spec, min_distance=pot.min_distance,
                            metadata={**pot.metadata, **(metadata or {})})



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
