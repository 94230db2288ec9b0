"""Periodic neighbour list for any cell: triclinic, smaller than the cutoff, mixed or no periodicity.

Convention (stated once): for a pair (i, j, shift), the displacement is
``D = r[j] - r[i] + shift @ cell`` and pairs are sorted by i.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ace._core import effective_n_threads
from ace._core._neighbours import neighbour_pairs, pair_vectors, shortest_pair
from ace.limits import check_periodic_images


# Below this many atoms the list is built on one thread: it takes well under a millisecond,
# and its three parallel regions cost more than they save. On the shared 2-core machine at
# load 12, the lists of mlearn Mo (54 atoms) took 58 ms each on two threads, 1.4 ms on one (a
# parallel region waits for its slowest thread, and on a loaded machine that thread waits for
# a time slice).
PARALLEL_FROM_ATOMS = 500


@dataclass
class NeighbourList:
    first: np.ndarray  # [n_atoms + 1]: pairs of atom i are first[i]:first[i+1]
    i: np.ndarray  # [n_pairs]
    j: np.ndarray  # [n_pairs]
    shift: np.ndarray  # [n_pairs, 3] integer lattice shifts
    vectors: np.ndarray  # [n_pairs, 3] D = r[j] - r[i] + shift @ cell
    cutoff: float

    def __len__(self):
        return len(self.j)

    def shortest(self):
        """(pair index, length) of the shortest pair; (-1, inf) without pairs."""
        return shortest_pair(np.ascontiguousarray(self.vectors, dtype=float))

    def __repr__(self):
        return f"NeighbourList(n_atoms={len(self.first) - 1}, n_pairs={len(self)}, cutoff={self.cutoff})"


def check_geometry(positions, cell, pbc):
    """Validate positions and cell; return float arrays. Raises ValueError naming the problem."""
    positions = np.ascontiguousarray(positions, dtype=float)
    cell = np.ascontiguousarray(cell, dtype=float).reshape(3, 3)
    pbc = np.asarray(pbc, dtype=bool).reshape(3) if np.ndim(pbc) else np.array([bool(pbc)] * 3)
    if positions.ndim != 2 or positions.shape[1] != 3:
        raise ValueError(f"positions must have shape (n_atoms, 3), got {positions.shape}")
    bad = ~np.isfinite(positions).all(axis=1)
    if bad.any():
        raise ValueError(f"positions of atoms {np.flatnonzero(bad)[:10].tolist()} are not finite (NaN or inf)")
    if not np.isfinite(cell).all():
        raise ValueError("the cell contains NaN or inf")
    periodic = cell[pbc]
    if pbc.any():
        gram = periodic @ periodic.T
        lengths = np.sqrt(np.diag(gram))
        volume = np.sqrt(max(np.linalg.det(gram), 0.0))
        if lengths.min() == 0 or volume <= 1e-9 * lengths.prod():
            raise ValueError(
                f"the periodic cell vectors {np.flatnonzero(pbc).tolist()} have zero volume "
                "(zero or linearly dependent cell vectors along periodic directions)")
    return positions, cell, pbc


def effective_lattice(cell, pbc):
    """A full-rank basis: periodic vectors kept, the others replaced by orthonormal completions."""
    basis = np.zeros((3, 3))
    basis[pbc] = cell[pbc]
    if (~pbc).any():
        # Orthonormal vectors spanning the complement of the periodic vectors.
        if pbc.any():
            _, _, vt = np.linalg.svd(cell[pbc])
            complement = vt[pbc.sum():]
        else:
            complement = np.eye(3)
        basis[~pbc] = complement
    return basis


def build_neighbour_list(positions, cell, pbc, cutoff, num_threads=None) -> NeighbourList:
    """All pairs closer than ``cutoff`` (over all periodic images)."""
    positions, cell, pbc = check_geometry(positions, cell, pbc)
    if not (cutoff > 0 and np.isfinite(cutoff)):
        raise ValueError(f"cutoff must be positive and finite, got {cutoff}")
    n_threads = effective_n_threads(num_threads) if len(positions) >= PARALLEL_FROM_ATOMS else 1
    lattice = effective_lattice(cell, pbc)
    inverse = np.linalg.inv(lattice)
    fractional = matmul3(positions, inverse)
    wrap = np.where(pbc, -np.floor(fractional), 0.0)
    wrapped = matmul3(fractional + wrap, lattice)

    # Along a periodic axis, images up to ceil(cutoff / plane spacing) cells away can be in range.
    plane_spacing = 1.0 / np.linalg.norm(inverse, axis=0)
    with np.errstate(divide="ignore", over="ignore"):
        reach = np.where(pbc, np.ceil(cutoff / plane_spacing), 0.0)
    # bounded before anything is allocated: a nearly singular cell needs billions of images
    check_periodic_images(reach, len(positions), plane_spacing, cutoff, pbc)
    reach = reach.astype(np.int64)
    grids = np.meshgrid(*[np.arange(-k, k + 1) for k in reach], indexing="ij")
    image_shifts = np.ascontiguousarray(np.stack([g.ravel() for g in grids], axis=1), dtype=np.int64)

    first, j, shift, vectors = neighbour_pairs(wrapped, np.ascontiguousarray(lattice), image_shifts,
                                               float(cutoff), positions, cell,
                                               wrap.astype(np.int64), n_threads)
    i = np.repeat(np.arange(len(positions)), np.diff(first))
    return NeighbourList(first=first, i=i, j=j, shift=shift, vectors=vectors, cutoff=float(cutoff))


def update_vectors(nl, positions, cell, num_threads=None):
    """Recompute ``nl.vectors`` in place for new positions (same pairs and shifts)."""
    positions = np.ascontiguousarray(positions, dtype=float)
    cell = np.ascontiguousarray(cell, dtype=float).reshape(3, 3)
    pair_vectors(positions, cell, nl.first, nl.j, nl.shift, nl.vectors,
                 effective_n_threads(num_threads))
    return nl


def matmul3(x, m):
    """x [n, 3] @ m [3, 3] as three broadcasts: numpy's matmul would call OpenBLAS, whose
    worker threads then spin and take a core from the OpenMP kernels."""
    return x[:, 0, None] * m[0] + x[:, 1, None] * m[1] + x[:, 2, None] * m[2]
