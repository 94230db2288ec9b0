"""The concrete pieces of an ACE model: radial bonds, embeddings and coupled B-functions.

These mirror the PACE B-basis (docs/file-formats.md) so that import and export are exact, with
one difference: radial indices ``ns`` are 0-based here (PACE files are 1-based).

For a rank-1 function, ``ns[0]`` indexes the radial *base* function g_k; for rank > 1, ``ns``
index the radial functions R_nl = sum_k crad[n, l, k] g_k.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ace._core._radial import NPOT_IDS, RADBASE_IDS

# the families and embeddings the core evaluates, named as in PACE (ids: the core's tables)
RADIAL_FAMILIES = tuple(RADBASE_IDS)
EMBEDDINGS = tuple(NPOT_IDS)
INNER_CUTOFF_TYPES = ("density", "distance", "zbl")


@dataclass
class Bond:
    """Radial basis of the ordered element pair (mu_i, mu_j)."""

    radbase: str  # one of RADIAL_FAMILIES
    radparameters: list  # [lambda]
    rcut: float
    dcut: float
    nradbase: int  # number of radial base functions g_k
    nradmax: int  # number of radial functions R_nl per l
    lmax: int
    crad: np.ndarray  # [nradmax, lmax + 1, nradbase]
    r_in: float = 0.0
    delta_in: float = 0.0
    inner_cutoff_type: str = "distance"  # one of INNER_CUTOFF_TYPES
    core_repulsion: tuple = (0.0, 1.0)  # (prehc, lambdahc)

    def __post_init__(self):
        self.crad = np.asarray(self.crad, dtype=float).reshape(
            self.nradmax, self.lmax + 1, self.nradbase)
        self.radparameters = [float(x) for x in self.radparameters]
        self.core_repulsion = tuple(float(x) for x in self.core_repulsion)


@dataclass
class Embedding:
    """Embedding of the densities of one central element: F = sum_p w_p F_{m_p}(rho_p)."""

    ndensity: int
    npot: str  # one of EMBEDDINGS
    fs_parameters: list  # [w_1, m_1, w_2, m_2, ...], length 2 * ndensity
    rho_core_cut: float = 100000.0
    drho_core_cut: float = 250.0


@dataclass(frozen=True)
class BFunction:
    """One rotation-invariant coupled function B of central element mu0.

    ``mus``, ``ns``, ``ls`` have one entry per factor (rank); ``LS`` are the intermediate
    couplings of PACE's fixed binary tree (length max(rank - 2, 0)).
    """

    mu0: int
    mus: tuple
    ns: tuple
    ls: tuple
    LS: tuple = field(default=())

    @property
    def rank(self):
        return len(self.mus)
