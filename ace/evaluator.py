"""Python side of the evaluator: compile a potential into flat arrays, check inputs, call the core.

The compiled form folds the coupling and fitted coefficients into one coefficient per product
of A's (PACE's C-tilde basis) for energies and forces, and keeps each B-function separate for
the design-matrix rows. An energy model compiled with ``projections`` also holds the
B-functions on its own product tree, so that one pass gives energies, forces and the
projection vectors of the extrapolation grade.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ase.data import atomic_numbers, chemical_symbols

from ace._core import effective_n_threads
from ace._core._basis_tangents import basis_tangents, weighted_forces
from ace._core._evaluator import CompiledModel, design_rows, energy_forces
from ace._core._projections import atom_projections
from ace._core._radial import NPOT_IDS, RADBASE_IDS
from ace.basis.ctilde import bfunction_ms_coefficients, to_ctilde
from ace.neighbours import build_neighbour_list, check_not_coincident

# columns of comb_index, one per factor of a product: the core's fixed row width (MAX_RANK in
# ace/_core/_evaluator.pxd), at least the highest rank of a function (ace.basis.coupling.MAX_RANK)
COMB_INDEX_COLUMNS = 8
INNER_TYPE_IDS = {"density": 0, "distance": 1, "zbl": 2}  # the INNER_* of _evaluator.pxd


@dataclass
class Results:
    energy: float
    energies: np.ndarray  # [n_atoms]
    forces: np.ndarray  # [n_atoms, 3]
    strain_derivative: np.ndarray  # [3, 3]: dE/d(strain) = volume * stress
    densities: np.ndarray  # [n_atoms, ndensity]
    projections: np.ndarray | None = None  # [n_atoms, width] when asked for (compute)


@dataclass
class DesignRows:
    """Linear design-matrix rows of one structure (linear embedding, without E0)."""

    energy: np.ndarray  # [n_funcs]: sum_i B_i
    per_atom: np.ndarray  # [n_atoms, n_funcs]
    forces: np.ndarray  # [n_atoms, 3, n_funcs]: -d(sum_i B_i)/dr_k
    strain_derivative: np.ndarray  # [3, 3, n_funcs]: d(sum_i B_i)/d(strain)


class Structure:
    """Positions, cell, periodicity and species indices of one structure, checked."""

    def __init__(self, potential, numbers, positions, cell, pbc):
        index = {atomic_numbers[e]: i for i, e in enumerate(potential.elements)}
        numbers = np.asarray(numbers)
        unknown = sorted(set(numbers.tolist()) - set(index))
        if unknown:
            raise ValueError(f"element(s) {[chemical_symbols[z] for z in unknown]} not in the "
                             f"potential (it has {potential.elements})")
        self.species = np.array([index[z] for z in numbers], dtype=np.int32)
        self.positions = positions
        self.cell = cell
        self.pbc = pbc

    @classmethod
    def from_atoms(cls, potential, atoms):
        return cls(potential, atoms.numbers, atoms.positions, atoms.cell.array, atoms.pbc)


class Evaluator:
    """Evaluates one potential; compiled arrays are built once and cached.

    The energy model gains the B-function tables (``projections``) on the first ``compute``
    that asks for projection vectors and keeps them: its product tree then also holds every
    B-function's products (the same tree unless some product has a zero C-tilde coefficient).
    """

    def __init__(self, potential):
        self.potential = potential
        self._energy_model = None
        self._design_model = None

    @property
    def energy_model(self):
        if self._energy_model is None:
            self._energy_model = compile_model(self.potential, design=False)
        return self._energy_model

    @property
    def projection_model(self):
        """The energy model with the B-function tables (from now on also the energy_model)."""
        if self._energy_model is None or not self._energy_model.has_projections:
            self._energy_model = compile_model(self.potential, design=False, projections=True)
        return self._energy_model

    @property
    def design_model(self):
        if self._design_model is None:
            self._design_model = compile_model(self.potential, design=True)
        return self._design_model

    def neighbours(self, structure, num_threads=None):
        nl = build_neighbour_list(structure.positions, structure.cell, structure.pbc,
                                  self.potential.cutoff, num_threads)
        self.check_distances(nl)
        return nl

    def check_distances(self, nl):
        k, shortest = check_not_coincident(nl)
        if k < 0:
            return
        limit = self.potential.min_distance
        if shortest < limit and not self.potential.has_core_repulsion:
            raise ValueError(f"atoms {nl.i[k]} and {nl.j[k]} are {shortest:.4f} Å apart, closer "
                             f"than this potential allows ({limit:.4f} Å; it has no core "
                             "repulsion to handle it)")

    def compute(self, structure, num_threads=None, neighbour_list=None,
                projections=None) -> Results:
        """Energies, forces and strain derivative; with ``projections`` ("linear" or "full")
        also the per-atom projection vectors of the extrapolation grade from the same pass
        (``Results.projections``, as ace.uncertainty.projections.structure_projections)."""
        nl = neighbour_list if neighbour_list is not None else self.neighbours(structure, num_threads)
        extra = {}
        if projections is not None:
            if projections not in ("linear", "full"):
                raise ValueError(f"unknown projection mode '{projections}' (known: linear, full)")
            model = self.projection_model
            full = projections == "full"
            extra = {"projections": np.zeros((len(structure.species),
                                              model.projection_width(full))), "full": full}
        else:
            model = self.energy_model
        energies, forces, strain, densities = energy_forces(
            model, structure.species, nl.first, nl.i, nl.j,
            np.ascontiguousarray(nl.vectors), effective_n_threads(num_threads), **extra)
        if not np.isfinite(energies).all() or not np.isfinite(forces).all():
            raise FloatingPointError("the potential produced NaN or inf (is the structure far "
                                     "outside its domain, e.g. a negative density with a "
                                     "fractional-power embedding?)")
        with np.errstate(over="ignore"):  # an overflow is reported just below
            energy = float(energies.sum())
        if not (np.isfinite(energy) and np.isfinite(strain).all()):
            raise FloatingPointError(f"the total energy or the stress is not finite (energy "
                                     f"{energy}): the per-atom energies (largest "
                                     f"{np.abs(energies).max():.3g} eV) overflow when summed; "
                                     "check E0 and the coefficients of the potential")
        return Results(energy, energies, forces, strain, densities, extra.get("projections"))

    def design_rows(self, structure, num_threads=None, neighbour_list=None) -> DesignRows:
        nl = neighbour_list if neighbour_list is not None else self.neighbours(structure, num_threads)
        per_atom, forces, strain = design_rows(
            self.design_model, structure.species, nl.first, nl.j,
            np.ascontiguousarray(nl.vectors), effective_n_threads(num_threads))
        return DesignRows(per_atom.sum(axis=0), per_atom, forces, strain)

    # The potential as a descriptor (physically-informed potentials): its raw B-functions per
    # atom, in the columns of each element's functions (f - first function of the element),
    # without core repulsion or blending.

    def basis_values(self, structure, num_threads=None, neighbour_list=None):
        """B [n_atoms, n_columns]: the B-functions of each atom."""
        nl = neighbour_list if neighbour_list is not None else self.neighbours(structure, num_threads)
        return atom_projections(self.design_model, structure.species, nl.first, nl.j,
                                np.ascontiguousarray(nl.vectors), np.zeros((1, 1)), False,
                                effective_n_threads(num_threads))

    def basis_tangents(self, structure, displacement, strain, num_threads=None,
                       neighbour_list=None):
        """(B, T) [n_atoms, n_columns]: B-functions per atom and their tangents
        T_if = sum_j delta_ij . dB_if/dD_ij along delta_ij = g_j - g_i + strain @ D_ij
        (g = displacement [n_atoms, 3])."""
        nl = neighbour_list if neighbour_list is not None else self.neighbours(structure, num_threads)
        return basis_tangents(self.design_model, structure.species, nl.first, nl.j,
                              np.ascontiguousarray(nl.vectors),
                              np.ascontiguousarray(displacement, dtype=float),
                              np.ascontiguousarray(strain, dtype=float),
                              effective_n_threads(num_threads))

    def weighted_forces(self, structure, weights, num_threads=None, neighbour_list=None):
        """E_W = sum_if W_if B_if: (per-atom values [n_atoms], forces -dE_W/dr [n_atoms, 3],
        strain derivative [3, 3] (as Results.strain_derivative))."""
        nl = neighbour_list if neighbour_list is not None else self.neighbours(structure, num_threads)
        return weighted_forces(self.design_model, structure.species, nl.first, nl.j,
                               np.ascontiguousarray(nl.vectors),
                               np.ascontiguousarray(weights, dtype=float),
                               effective_n_threads(num_threads))


def compile_model(potential, design, projections=False):
    """Flatten a potential for the core: bonds, embeddings and product tables.

    The design model and, with ``projections``, the energy model also get the B-function
    tables (bfunc_first, bcomb_*: each B-function's rows as nodes of the model's own tree).
    """
    pot = potential
    n_el = len(pot.elements)
    nradbase = max(b.nradbase for b in pot.bonds.values())
    nradmax = max(max(b.nradmax for b in pot.bonds.values()), 1)
    lmax = max(b.lmax for b in pot.bonds.values())
    arrays = _bond_arrays(pot, n_el, nradbase, nradmax, lmax)
    arrays.update(_element_arrays(pot, n_el))
    b_entries = [(f.mu0, f.mus, f.ns, f.ls, *bfunction_ms_coefficients(f)) for f in pot.functions]
    if design:
        entries = b_entries
        n_coef = 1
        # the nonlinear-fit kernels evaluate the products once per atom on this tree
        tree, node_index = _design_tree(entries, n_el, nradmax, lmax)
        arrays.update(tree)
        arrays.update(_bfunction_arrays(b_entries, n_el, nradbase, nradmax, lmax, node_index))
    else:
        entries = [(c.mu0, c.mus, c.ns, c.ls, c.ms, c.ctildes)
                   for c in to_ctilde(pot.functions, pot.coefficients)]
        n_coef = pot.ndensity_max
        tree, node_index = _product_tree(entries, n_el, n_coef, nradmax, lmax,
                                         b_entries if projections else ())
        arrays.update(tree)
        if projections:
            arrays.update(_bfunction_arrays(b_entries, n_el, nradbase, nradmax, lmax, node_index))
        entries = [e for e in entries if len(e[1]) == 1]  # the tree holds the higher ranks
    arrays.update(_product_arrays(entries, n_el, n_coef, nradbase, nradmax, lmax))
    sizes = {"n_elements": n_el, "nradbase": nradbase, "nradmax": nradmax, "lmax": lmax,
             "inner_type": INNER_TYPE_IDS[pot.inner_cutoff_type], "n_coef": n_coef}
    return CompiledModel(arrays, sizes)


def _bond_arrays(pot, n_el, nradbase, nradmax, lmax):
    bonds = [pot.bonds[(i, j)] for i in range(n_el) for j in range(n_el)]
    crad = np.zeros((len(bonds), nradmax, lmax + 1, nradbase))
    for b, bond in enumerate(bonds):
        crad[b, :bond.nradmax, :bond.lmax + 1, :bond.nradbase] = bond.crad
    return {
        "family": [RADBASE_IDS[b.radbase] for b in bonds],
        "lam": [b.radparameters[0] if b.radparameters else 0.0 for b in bonds],
        "rcut": [b.rcut for b in bonds],
        "dcut": [b.dcut for b in bonds],
        "bond_nradbase": [b.nradbase for b in bonds],
        "bond_nradmax": [b.nradmax for b in bonds],
        "bond_lmax": [b.lmax for b in bonds],
        "r_in": [b.r_in for b in bonds],
        "delta_in": [b.delta_in for b in bonds],
        "prehc": [b.core_repulsion[0] for b in bonds],
        "lambdahc": [b.core_repulsion[1] for b in bonds],
        "crad": crad,
    }


def _element_arrays(pot, n_el):
    nd = pot.ndensity_max
    fs_w = np.zeros((n_el, nd))
    fs_m = np.ones((n_el, nd))
    for i, emb in pot.embeddings.items():
        fs_w[i, :emb.ndensity] = emb.fs_parameters[0::2]
        fs_m[i, :emb.ndensity] = emb.fs_parameters[1::2]
    return {
        "npot": [NPOT_IDS[pot.embeddings[i].npot] for i in range(n_el)],
        "ndensity": [pot.embeddings[i].ndensity for i in range(n_el)],
        "fs_w": fs_w, "fs_m": fs_m,
        "rho_core_cut": [pot.embeddings[i].rho_core_cut for i in range(n_el)],
        "drho_core_cut": [pot.embeddings[i].drho_core_cut for i in range(n_el)],
        "e0": pot.e0,
        "atomic_number": [float(atomic_numbers[e]) for e in pot.elements],
    }


def _product_arrays(entries, n_el, n_coef, nradbase, nradmax, lmax):
    """Product tables: per function its rank and combinations of A indices with coefficients."""
    n_lm = (lmax + 1) ** 2
    func_rank, comb_counts, comb_index, comb_coef, func_mu = [], [], [], [], []
    for mu0, mus, ns, ls, ms, coef in entries:
        ms = np.asarray(ms, dtype=np.int64).reshape(-1, len(mus))
        coef = np.asarray(coef, dtype=float).reshape(len(ms), -1)
        index = np.zeros((len(ms), COMB_INDEX_COLUMNS), dtype=np.int64)
        if len(mus) == 1:  # rank 1 reads the real base A1[mu, k]
            index[:, 0] = mus[0] * nradbase + ns[0]
        else:
            for t, (mu, n, l) in enumerate(zip(mus, ns, ls)):
                index[:, t] = (mu * nradmax + n) * n_lm + l * l + l + ms[:, t]
        padded = np.zeros((len(ms), n_coef))
        padded[:, :coef.shape[1]] = coef
        func_mu.append(mu0)
        func_rank.append(len(mus))
        comb_counts.append(len(ms))
        comb_index.append(index)
        comb_coef.append(padded)
    func_mu = np.array(func_mu, dtype=np.int64)
    if len(func_mu) and np.any(np.diff(func_mu) < 0):
        raise ValueError("product functions must be sorted by central element")
    func_first = np.zeros(n_el + 1, dtype=np.int64)
    np.cumsum(np.bincount(func_mu, minlength=n_el), out=func_first[1:])
    comb_first = np.zeros(len(entries) + 1, dtype=np.int64)
    np.cumsum(comb_counts, out=comb_first[1:])
    return {
        "func_first": func_first,
        "func_rank": np.array(func_rank, dtype=np.int64),
        "comb_first": comb_first,
        "comb_index": (np.concatenate(comb_index) if comb_index
                       else np.zeros((0, COMB_INDEX_COLUMNS), np.int64)),
        "comb_coef": np.concatenate(comb_coef) if comb_coef else np.zeros((0, n_coef)),
    }


def _sorted_products(mus, ns, ls, ms, nradmax, lmax):
    """Each row of ms as the sorted tuple of its A indices (the product commutes)."""
    n_lm = (lmax + 1) ** 2
    ms = np.asarray(ms, dtype=np.int64).reshape(-1, len(mus))
    base = np.array([(mu * nradmax + n) * n_lm + l * l + l for mu, n, l in zip(mus, ns, ls)])
    return list(map(tuple, np.sort(base + ms, axis=1).tolist()))


def _prefix_tree(keys_per_element):
    """Prefix tree of the products (sorted A-index tuples) of each central element: each node
    multiplies its parent by one A; nodes stored parents first, elements one after another.
    Returns (parent, factor, node_first, [per element: {key or prefix: node}])."""
    parent, factor, node_first, node_maps = [], [], [0], []
    for keys in keys_per_element:
        node_of = {}
        for key in sorted(keys):
            for depth in range(1, len(key) + 1):
                prefix = key[:depth]
                if prefix not in node_of:
                    node_of[prefix] = len(parent)
                    parent.append(node_of[prefix[:-1]] if depth > 1 else -1)
                    factor.append(prefix[-1])
        node_first.append(len(parent))
        node_maps.append(node_of)
    return parent, factor, node_first, node_maps


def _tree_arrays(parent, factor, node_first):
    return {"node_first": np.array(node_first, dtype=np.int64),
            "node_parent": np.array(parent, dtype=np.int64),
            "node_factor": np.array(factor, dtype=np.int64)}


def _product_tree(entries, n_el, n_coef, nradmax, lmax, b_entries=()):
    """Rank >= 2 products as a prefix tree with their folded coefficients, and per element
    {sorted A-index tuple: node}.

    Equal products are merged and common prefixes are computed once per atom. The products of
    ``b_entries`` (B-functions) are added with zero coefficients where the C-tilde functions
    lack them (rows folded to zero), so that every B-function can be read off the tree.
    """
    products = [{} for _ in range(n_el)]  # per central element: sorted A-index tuple -> coef
    for mu0, mus, ns, ls, ms, coef in entries:
        if len(mus) == 1:
            continue
        coef = np.asarray(coef, dtype=float).reshape(len(np.asarray(ms).reshape(-1, len(mus))), -1)
        for key, c in zip(_sorted_products(mus, ns, ls, ms, nradmax, lmax), coef):
            padded = np.zeros(n_coef)
            padded[:len(c)] = c
            products[mu0][key] = products[mu0].get(key, 0.0) + padded
    for mu0, mus, ns, ls, ms, _ in b_entries:
        if len(mus) > 1:
            for key in _sorted_products(mus, ns, ls, ms, nradmax, lmax):
                products[mu0].setdefault(key, np.zeros(n_coef))
    parent, factor, node_first, node_maps = _prefix_tree(products)
    coefs = np.zeros((len(parent), n_coef))
    terminal = np.zeros(len(parent), dtype=np.int8)
    for per_element, node_of in zip(products, node_maps):
        for key, c in per_element.items():
            coefs[node_of[key]] = c
            terminal[node_of[key]] = int(np.any(c != 0))
    parent, factor, leaf_first, order = _leaves_last(parent, factor, node_first, n_el)
    return ({**_tree_arrays(parent, factor, node_first),
             "node_leaf_first": np.array(leaf_first, dtype=np.int64),
             "node_coef": coefs[order], "node_terminal": terminal[order]},
            _final_node_index(node_maps, order))


def _final_node_index(node_maps, order):
    """Per element {product key: node index after _leaves_last's reordering}."""
    new_index = np.empty(len(order), dtype=np.int64)
    new_index[order] = np.arange(len(order))
    return [{key: int(new_index[node]) for key, node in node_of.items()} for node_of in node_maps]


def _bfunction_arrays(b_entries, n_el, nradbase, nradmax, lmax, node_index):
    """The B-function tables of the core (Model.bfunc_first, bcomb_*): per B-function its rows
    coef * Re(P_node), node from node_index, or for rank 1 coef * A1[k] as node -1 - k."""
    mus0 = np.array([e[0] for e in b_entries], dtype=np.int64)
    if len(mus0) and np.any(np.diff(mus0) < 0):
        raise ValueError("B-functions must be sorted by central element")
    bfunc_first = np.zeros(n_el + 1, dtype=np.int64)
    np.cumsum(np.bincount(mus0, minlength=n_el), out=bfunc_first[1:])
    counts, nodes, coefs = [], [], []
    for mu0, mus, ns, ls, ms, coef in b_entries:
        coef = np.asarray(coef, dtype=float).ravel()
        if len(mus) == 1:
            nodes.append(np.full(len(coef), -1 - (mus[0] * nradbase + ns[0])))
        else:
            nodes.append([node_index[mu0][key]
                          for key in _sorted_products(mus, ns, ls, ms, nradmax, lmax)])
        coefs.append(coef)
        counts.append(len(coef))
    bcomb_first = np.zeros(len(b_entries) + 1, dtype=np.int64)
    np.cumsum(counts, out=bcomb_first[1:])
    return {"bfunc_first": bfunc_first, "bcomb_first": bcomb_first,
            "bcomb_node": np.concatenate(nodes).astype(np.int64) if nodes else np.zeros(0, np.int64),
            "bcomb_coef": np.concatenate(coefs) if coefs else np.zeros(0)}


def _leaves_last(parent, factor, node_first, n_el):
    """Reorder a prefix tree: per element the inner nodes first (still parents first), then the
    leaves, which the kernels handle in cheaper loops (real part only, parent loaded once per
    run of siblings). Returns (parent, factor, leaf_first, order): node k is old node order[k]."""
    parent = np.array(parent, dtype=np.int64)
    inner = np.zeros(len(parent), dtype=bool)
    inner[parent[parent >= 0]] = True
    order, leaf_first = [], []
    for e in range(n_el):
        idx = np.arange(node_first[e], node_first[e + 1])
        order.extend(idx[inner[idx]].tolist())
        leaf_first.append(len(order))
        leaves = idx[~inner[idx]]  # in runs of siblings
        order.extend(leaves[np.argsort(parent[leaves], kind="stable")].tolist())
    order = np.array(order, dtype=np.int64)
    new_index = np.empty(len(order), dtype=np.int64)
    new_index[order] = np.arange(len(order))
    parent = np.where(parent[order] >= 0, new_index[np.maximum(parent[order], 0)], -1)
    return parent, np.array(factor, dtype=np.int64)[order], leaf_first, order


def _design_tree(entries, n_el, nradmax, lmax):
    """The prefix tree of the B-functions' products and, per combination (in the order of
    _product_arrays), the node holding its product (-1 for rank 1)."""
    keys = [[] for _ in range(n_el)]
    per_comb = []
    for mu0, mus, ns, ls, ms, coef in entries:
        rows = len(np.asarray(ms).reshape(-1, len(mus)))
        if len(mus) == 1:
            per_comb += [None] * rows
            continue
        products = _sorted_products(mus, ns, ls, ms, nradmax, lmax)
        keys[mu0] += products
        per_comb += [(mu0, key) for key in products]
    parent, factor, node_first, node_maps = _prefix_tree([set(k) for k in keys])
    parent, factor, leaf_first, order = _leaves_last(parent, factor, node_first, n_el)
    node_index = _final_node_index(node_maps, order)
    comb_node = np.array([-1 if c is None else node_index[c[0]][c[1]] for c in per_comb],
                         dtype=np.int64)
    return ({**_tree_arrays(parent, factor, node_first), "comb_node": comb_node,
             "node_leaf_first": np.array(leaf_first, dtype=np.int64),
             "node_coef": np.zeros((len(parent), 1)),
             "node_terminal": np.zeros(len(parent), dtype=np.int8)}, node_index)
