"""Shared factories for the physics tests of the core: random potentials and random structures.

``random_potential`` builds a basis from a pacemaker-style dict, draws random coefficients and a
random perturbation of the radial coefficients crad (the same for the bonds (A, B) and (B, A)),
and optionally an inner cutoff with core repulsion. The structure factories make small periodic
and non-periodic structures in which every inner-cutoff zone is visited.
"""
import dataclasses
import os

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from threadpoolctl import threadpool_limits

from ace._core import openmp_enabled
from ace.basis import build_basis
from ace.calculator import ACECalculator
from ace.evaluator import Evaluator, Structure
from ace.potential import ACEPotential

RADIAL_PARAMETERS = {"ChebExpCos": [5.25], "ChebPow": [2.0], "SBessel": [1.0]}

# (nradmax_by_orders, lmax_by_orders) for each highest correlation order: small on purpose
ORDERS = {
    1: ([6], [0]),
    2: ([5, 3], [0, 3]),
    3: ([4, 3, 2], [0, 2, 2]),
    4: ([3, 2, 2, 1], [0, 2, 2, 1]),
    5: ([3, 2, 1, 1, 1], [0, 2, 1, 1, 1]),
}

# inner cutoff settings of the bonds (and the density-cut of the embeddings), tuned to the
# nearest-neighbour distances (about 2.3-2.8 Å) of the structures below
INNER = {
    None: ({}, {}),
    "distance": ({"inner_cutoff_type": "distance", "r_in": 2.6, "delta_in": 0.5,
                  "core-repulsion": [10.0, 0.5]}, {}),
    "density": ({"inner_cutoff_type": "density", "core-repulsion": [10.0, 0.5]},
                {"rho_core_cut": 2.0, "drho_core_cut": 1.8}),
    "zbl": ({"inner_cutoff_type": "zbl", "r_in": 2.5, "delta_in": 0.5,
             "core-repulsion": [1.0, 1.0]}, {}),
}

# exponents m_p of the extra densities p >= 1 (the first density is linear, m = 1)
EXTRA_EXPONENTS = (0.5, 0.75)

# thread-agreement tests compare 1 and 2 OpenMP threads: without OpenMP both run the same serial
# code and would pass without testing anything, so they skip and say why
requires_openmp = pytest.mark.skipif(
    not openmp_enabled(),
    reason="the core was built without OpenMP (ace._core.openmp_enabled() is False): "
           "1 and 2 threads would run the same serial code")

LATTICE = 3.6  # fcc lattice constant (Å) of all test structures; nearest neighbours at 2.55 Å


def potential_dict(elements, radbase="ChebExpCos", npot="FinnisSinclairShiftedScaled",
                   ndensity=1, orders=3, inner=None, rcut=4.5, dcut=0.3):
    """The pacemaker-style basis dict of a test potential."""
    nradmax, lmax = ORDERS[orders] if isinstance(orders, int) else orders
    bond_inner, embedding_inner = INNER[inner]
    fs = [1.0, 1.0]
    for p in range(1, ndensity):
        fs += [(-1) ** p * 0.5, EXTRA_EXPONENTS[(p - 1) % len(EXTRA_EXPONENTS)]]
    return {
        "elements": sorted(elements),
        "embeddings": {"ALL": {"npot": npot, "fs_parameters": fs, "ndensity": ndensity,
                               **embedding_inner}},
        "bonds": {"ALL": {"radbase": radbase, "radparameters": RADIAL_PARAMETERS[radbase],
                          "rcut": rcut, "dcut": dcut, **bond_inner}},
        "functions": {"ALL": {"nradmax_by_orders": list(nradmax), "lmax_by_orders": list(lmax)}},
    }


def random_potential(elements=("Cu",), radbase="ChebExpCos", npot="FinnisSinclairShiftedScaled",
                     ndensity=1, orders=3, inner=None, seed=0, rcut=4.5, dcut=0.3,
                     crad_noise=0.3, scale=0.3, min_distance=0.0):
    """A potential with random coefficients (damped with the rank) and a random crad."""
    rng = np.random.default_rng(seed)
    basis = build_basis(potential_dict(elements, radbase, npot, ndensity, orders, inner,
                                       rcut, dcut))
    n_el = len(basis.elements)
    for i in range(n_el):
        for j in range(i, n_el):
            bond = basis.bonds[(i, j)]
            crad = bond.crad + crad_noise * rng.standard_normal(bond.crad.shape)
            bond.crad = crad
            basis.bonds[(j, i)].crad = crad.copy()
    ranks = np.array([f.rank for f in basis.functions])
    coefficients = scale * rng.standard_normal((basis.n_functions, ndensity))
    coefficients /= 3.0 ** (ranks - 1)[:, None]
    e0 = rng.standard_normal(n_el)
    return ACEPotential.from_basis(basis, coefficients, e0=e0, min_distance=min_distance)


def mixed_potential(inner=None, seed=0):
    """Cu-Ni with per-pair bonds (each its own cutoff, radial family and inner cutoff) and
    per-element embeddings (Cu: shifted-scaled FS with 2 densities, Ni: FS with 1)."""
    d = potential_dict(("Cu", "Ni"), "ChebExpCos", "FinnisSinclairShiftedScaled", 2, 3, inner)
    d["bonds"]["CuNi"] = {"rcut": 4.0, "radbase": "SBessel", "radparameters": [1.0], "dcut": 0.2}
    d["bonds"]["Ni"] = {"rcut": 3.7, "radbase": "ChebPow", "radparameters": [2.0]}
    if inner in ("distance", "zbl"):
        d["bonds"]["Ni"].update(r_in=2.4, delta_in=0.3)
    return random_cu_ni(d, seed)


def random_cu_ni(potential_dict, seed):
    """A Cu-Ni potential on the basis of ``potential_dict`` (Ni: FS with one density) with
    random radial functions, coefficients and E0."""
    potential_dict["embeddings"]["Ni"] = {"npot": "FinnisSinclair", "ndensity": 1,
                                          "fs_parameters": [1.0, 1.0]}
    rng = np.random.default_rng(seed)
    basis = build_basis(potential_dict)
    for (i, j), bond in basis.bonds.items():
        if i <= j:
            bond.crad = bond.crad + 0.3 * rng.standard_normal(bond.crad.shape)
            basis.bonds[(j, i)].crad = bond.crad.copy()
    ranks = np.array([f.rank for f in basis.functions])
    coefficients = 0.3 * rng.standard_normal((basis.n_functions, 2)) / 3.0 ** (ranks - 1)[:, None]
    coefficients[[f.mu0 == 1 for f in basis.functions], 1] = 0.0  # Ni has one density
    return ACEPotential.from_basis(basis, coefficients, e0=rng.standard_normal(2))


def clone(potential, coefficients=None):
    """An independent copy (without a file round trip), optionally with new coefficients."""
    pot = potential
    bonds = {pair: dataclasses.replace(bond, crad=bond.crad.copy())
             for pair, bond in pot.bonds.items()}
    coefficients = pot.coefficients if coefficients is None else coefficients
    return ACEPotential(pot.elements, bonds, dict(pot.embeddings), list(pot.functions),
                        np.array(coefficients, dtype=float), e0=pot.e0.copy(),
                        basis_spec=pot.basis_spec, min_distance=pot.min_distance,
                        metadata=dict(pot.metadata))


def shift_densities_positive(potential, structures, margin=0.5):
    """A copy of ``potential`` whose densities p >= 1 (the non-linear embedding terms) are at
    least ``margin`` on every atom of ``structures`` that has a neighbour.

    The shift goes onto the rank-1, n = 0 functions: their B = sum_j g_0(r_ij) is positive for
    every radial family, so adding a positive coefficient moves the density up; the amount is
    measured with the core (densities are linear in the coefficients).
    """
    pot = clone(potential)
    rank1 = np.array([f.rank == 1 and f.ns[0] == 0 for f in pot.functions])
    if pot.ndensity_max < 2 or not rank1.any():
        return pot
    bumped = clone(pot)
    bumped.coefficients[rank1, 1:] += 1.0
    mu0 = np.array([f.mu0 for f in pot.functions])
    shift = np.zeros((len(pot.elements), pot.ndensity_max))
    for atoms in structures:
        structure = Structure.from_atoms(pot, atoms)
        rho = Evaluator(pot).compute(structure, num_threads=1).densities
        gain = Evaluator(bumped).compute(structure, num_threads=1).densities - rho
        for a, mu in enumerate(structure.species):
            for p in range(1, pot.embeddings[mu].ndensity):
                if gain[a, p] > 1e-8:
                    shift[mu, p] = max(shift[mu, p], (margin - rho[a, p]) / gain[a, p])
    for k in np.flatnonzero(rank1):
        pot.coefficients[k, 1:] += shift[mu0[k], 1:]
    return pot


def with_calculator(atoms, potential, num_threads=1):
    atoms = atoms.copy()
    atoms.calc = ACECalculator(potential, num_threads=num_threads)
    return atoms


# ----------------------------------------------------------------------------- structures

def assign_species(atoms, elements, rng):
    """Random species with every element present (when there are enough atoms)."""
    elements = sorted(elements)
    symbols = list(rng.choice(elements, size=len(atoms)))
    for k, element in enumerate(elements[:len(atoms)]):
        symbols[k] = element
    atoms.set_chemical_symbols([symbols[k] for k in rng.permutation(len(atoms))])
    return atoms


def bulk_structure(elements=("Cu",), seed=0, repeat=(2, 1, 1), rattle=0.12):
    """Periodic rattled fcc (8 atoms for the default repeat), cubic cell."""
    rng = np.random.default_rng(seed)
    atoms = bulk("Cu", "fcc", a=LATTICE, cubic=True).repeat(repeat)
    atoms.positions += rattle * rng.standard_normal(atoms.positions.shape)
    return assign_species(atoms, elements, rng)


def small_cell_structure(elements=("Cu",), seed=0, rattle=0.1):
    """Two atoms in a primitive fcc cell (2.55 x 2.55 x 5.1 Å): every cell vector is shorter
    than the cutoff, so atoms see many images of themselves."""
    rng = np.random.default_rng(seed)
    atoms = bulk("Cu", "fcc", a=LATTICE).repeat((1, 1, 2))
    atoms.positions += rattle * rng.standard_normal(atoms.positions.shape)
    return assign_species(atoms, elements, rng)


def triclinic_structure(elements=("Cu",), seed=0, rattle=0.1):
    """Four atoms in a sheared primitive fcc cell (all angles differ from 90 degrees)."""
    rng = np.random.default_rng(seed)
    atoms = bulk("Cu", "fcc", a=LATTICE).repeat((2, 2, 1))
    strain = np.eye(3) + 0.04 * rng.standard_normal((3, 3))
    atoms.set_cell(atoms.cell.array @ strain, scale_atoms=True)
    atoms.positions += rattle * rng.standard_normal(atoms.positions.shape)
    return assign_species(atoms, elements, rng)


def cluster_structure(elements=("Cu",), seed=0, rattle=0.12, n_atoms=13):
    """A non-periodic cluster: an fcc centre and (up to) its 12 neighbours, rattled."""
    rng = np.random.default_rng(seed)
    a = LATTICE / 2
    shell = [(x, y, 0) for x in (-a, a) for y in (-a, a)]
    shell += [(x, 0, z) for x in (-a, a) for z in (-a, a)]
    shell += [(0, y, z) for y in (-a, a) for z in (-a, a)]
    positions = np.array([(0.0, 0.0, 0.0)] + shell)[:n_atoms]
    positions += rattle * rng.standard_normal(positions.shape)
    atoms = Atoms(f"Cu{len(positions)}", positions=positions, pbc=False)
    return assign_species(atoms, elements, rng)


def slab_structure(elements=("Cu",), seed=0, rattle=0.12):
    """Mixed periodicity: periodic in x and y (cell smaller than the cutoff), open in z."""
    atoms = bulk_structure(elements, seed, repeat=(1, 1, 2), rattle=rattle)
    atoms.pbc = (True, True, False)
    return atoms


STRUCTURES = {
    "bulk": bulk_structure,
    "small_cell": small_cell_structure,
    "triclinic": triclinic_structure,
    "cluster": cluster_structure,
    "slab": slab_structure,
}


def make_structure(kind, elements=("Cu",), seed=0, **kwargs):
    return STRUCTURES[kind](elements, seed, **kwargs)


@pytest.fixture(scope="module")
def single_threaded_blas():
    """For modules that call small dense linear algebra thousands of times (ASE's cell filter
    uses scipy's expm/logm): a multi-threaded BLAS makes each call slower, badly so on a busy
    CI machine. Use with ``pytestmark = pytest.mark.usefixtures("single_threaded_blas")``.
    The OpenMP threads of the core are set per calculator."""
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture
def cu_potential():
    """A small one-element random potential (ranks 1-3, FS embedding with two densities)."""
    return random_potential(("Cu",), ndensity=2, orders=3, seed=11)


def package_env(**extra):
    """The environment for a subprocess that must import the same ``ace`` as this test run: the
    installed package (CI installs it and the source tree has no compiled core) or a developer's
    in-place build. Run such subprocesses outside the repository root (``cwd=tmp_path``), where
    the source tree would come first on the path."""
    import ace
    parent = os.path.dirname(os.path.dirname(os.path.abspath(ace.__file__)))
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [parent, os.environ.get("PYTHONPATH")]))
    return env
