"""Physics of the compiled core on random potentials and structures.

- forces = -grad E and stress = strain derivative (ace.testing's step sweeps) for every radial
  family, both embeddings with 1-3 densities, 1-3 elements, ranks 1-5, every inner cutoff /
  core repulsion, periodic, mixed and open boundaries and cells smaller than the cutoff;
- invariance under rotation, translation and permutation;
- the slow numpy reference evaluator (tests/reference_evaluator.py) against the core: per-atom
  energies, forces (finite differences of the reference energy) and design-matrix rows;
- 1 and 2 OpenMP threads agree; sum rules (per-atom energies, zero net force);
- bad input is refused with a message that names the problem.
"""
import functools

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.calculator import PropertyNotImplementedError
from ase.neighborlist import neighbor_list

import reference_evaluator as ref
from ace.calculator import ACECalculator
from ace.evaluator import Evaluator, Structure
from ace.testing import check_forces, check_invariance, check_stress
from conftest import (make_structure, mixed_potential, random_potential, requires_openmp,
                      shift_densities_positive, with_calculator)

pytestmark = pytest.mark.usefixtures("single_threaded_blas")

CU, CUNI, ALCUNI = ("Cu",), ("Cu", "Ni"), ("Al", "Cu", "Ni")
FS, FSSS = "FinnisSinclair", "FinnisSinclairShiftedScaled"
PERIODIC = ("bulk", "small_cell", "triclinic")

RADIAL_FAMILIES = ("ChebExpCos", "ChebPow", "SBessel")
EMBEDDINGS = [(npot, nd) for npot in (FS, FSSS) for nd in (1, 2, 3)]
INNER_TYPES = (None, "distance", "density", "zbl")
ELEMENT_SETS = (CU, CUNI, ALCUNI)
KINDS = ("bulk", "small_cell", "triclinic", "cluster", "slab")


def make_cases():
    """Every radial family x embedding (1-3 densities) x inner cutoff; the highest rank, the
    element set and the structure kind cycle with different periods, so that every rank meets
    every family and every structure kind, every inner cutoff every structure kind, and so on
    (test_cases_cover_the_space checks it)."""
    cases = []
    grid = [(radbase, npot, nd, inner) for radbase in RADIAL_FAMILIES
            for npot, nd in EMBEDDINGS for inner in INNER_TYPES]
    for k, (radbase, npot, nd, inner) in enumerate(grid):
        rank = 1 + k % 5
        kind = KINDS[(k // 5 + k // 25) % 5]
        elements = ELEMENT_SETS[(k + k // 3 + k // 12) % 3]
        cases.append((radbase, npot, nd, elements, rank, inner, kind))
    return cases


# radial family, embedding, ndensity, elements, highest rank, inner cutoff, structure kind
CASES = make_cases()


def case_id(case):
    radbase, npot, nd, elements, rank, inner, structure = case
    embedding = "FS" if npot == FS else "FSSS"
    return f"{radbase}-{embedding}{nd}-{''.join(elements)}-rank{rank}-{inner}-{structure}"


@functools.lru_cache(maxsize=None)
def case_atoms(case):
    """The structure of a case, with an ACECalculator on its random potential (1 thread)."""
    radbase, npot, nd, elements, rank, inner, kind = case
    seed = CASES.index(case)
    atoms = make_structure(kind, elements, seed=seed)
    pot = random_potential(elements, radbase, npot, nd, rank, inner, seed=seed)
    pot = shift_densities_positive(pot, [atoms])
    return with_calculator(atoms, pot)


def fresh(case):
    atoms = case_atoms(case)
    return with_calculator(atoms, atoms.calc.potential)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_forces_are_minus_energy_gradient(case):
    check_forces(fresh(case))


@pytest.mark.parametrize("case", [c for c in CASES if c[-1] in PERIODIC], ids=case_id)
def test_stress_is_strain_derivative(case):
    check_stress(fresh(case))


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_invariance(case):
    check_invariance(fresh(case), rtol=1e-10)


def test_cases_cover_the_space():
    """The cases meet every pair of settings that could interact."""
    def pairs(a, b):
        return {(case[a], case[b]) for case in CASES}

    def full(a, b):
        return {(x, y) for x in {case[a] for case in CASES} for y in {case[b] for case in CASES}}

    radbase, npot, nd, elements, rank, inner, kind = range(7)
    assert {case[radbase] for case in CASES} == set(RADIAL_FAMILIES)
    assert {(case[npot], case[nd]) for case in CASES} == set(EMBEDDINGS)
    assert {case[elements] for case in CASES} == set(ELEMENT_SETS)
    assert {case[rank] for case in CASES} == {1, 2, 3, 4, 5}
    assert {case[inner] for case in CASES} == set(INNER_TYPES)
    assert {case[kind] for case in CASES} == set(KINDS)
    for a, b in [(radbase, rank), (rank, kind), (inner, kind), (elements, rank),
                 (elements, inner), (radbase, kind), (elements, kind), (npot, inner),
                 (nd, rank), (inner, rank)]:
        assert pairs(a, b) == full(a, b), (a, b, full(a, b) - pairs(a, b))


def test_inner_zones_are_visited():
    """The structures reach into the inner-cutoff zones, so the tests above mean something:
    some atom is blended (zbl, density) or some pair is in the inner cutoff (distance)."""
    for case in CASES:
        atoms = case_atoms(case)
        pot = atoms.calc.potential
        if case[5] in ("zbl", "density"):
            blend = ref.blend_factors(pot, atoms)
            assert np.any((blend > 0) & (blend < 1)), case_id(case)
        elif case[5] == "distance":
            bond = pot.bonds[(0, 0)]
            distances = neighbor_list("d", atoms, pot.cutoff)
            assert np.any((distances > bond.r_in - bond.delta_in) & (distances < bond.r_in))


# ----------------------------------------------------------------------------- the reference

# (elements, inner cutoff, radial family, embedding, structure): 1 and 2 elements, each inner type
REFERENCE_CASES = [
    (CU, None, "ChebExpCos", FSSS, "bulk"),
    (CU, "distance", "SBessel", FS, "cluster"),
    (CU, "density", "ChebPow", FSSS, "small_cell"),
    (CU, "zbl", "ChebExpCos", FS, "triclinic"),
    (CUNI, None, "SBessel", FS, "cluster"),
    (CUNI, "distance", "ChebPow", FSSS, "triclinic"),
    (CUNI, "density", "ChebExpCos", FS, "bulk"),
    (CUNI, "zbl", "SBessel", FSSS, "small_cell"),
]


def reference_id(case):
    elements, inner, radbase, npot, kind = case
    return f"{''.join(elements)}-{inner}-{radbase}-{'FS' if npot == FS else 'FSSS'}-{kind}"


@functools.lru_cache(maxsize=None)
def reference_setup(case):
    elements, inner, radbase, npot, kind = case
    seed = 100 + REFERENCE_CASES.index(case)
    size = {"cluster": {"n_atoms": 6}, "bulk": {"repeat": (1, 1, 1)}}.get(kind, {})
    atoms = make_structure(kind, elements, seed=seed, **size)
    orders = ([4, 2, 2, 1], [0, 2, 1, 1]) if len(elements) == 1 else ([3, 2, 1], [0, 2, 1])
    pot = random_potential(elements, radbase, npot, 2, orders, inner, seed=seed)
    return shift_densities_positive(pot, [atoms]), atoms


def reference_rows(pot, atoms):
    """Energy design rows from the reference: sum_i blend_i B_i."""
    return ref.blend_factors(pot, atoms) @ ref.per_atom_b(pot, atoms)


def strained(atoms, a, b, h):
    work = atoms.copy()
    deformation = np.eye(3)
    deformation[a, b] += h
    work.set_cell(atoms.cell.array @ deformation.T, scale_atoms=False)
    work.positions = atoms.positions @ deformation.T
    return work


def strain_derivative(function, atoms, h=1e-5):
    """d function / d deformation[a, b] by central differences, transposed to the core's
    convention sum_ij D_ij[a] d/dD_ij[b] (deformation (1 + eps) acts as D -> (1 + eps) D)."""
    derivative = np.array([[(function(strained(atoms, a, b, h))
                             - function(strained(atoms, a, b, -h))) / (2 * h)
                            for b in range(3)] for a in range(3)])
    return np.swapaxes(derivative, 0, 1)


def column_scale(rows, axes):
    return np.maximum(1.0, np.abs(rows).max(axis=axes))


@pytest.mark.parametrize("case", REFERENCE_CASES, ids=reference_id)
def test_reference_energies_and_forces(case):
    pot, atoms = reference_setup(case)
    atoms = with_calculator(atoms, pot)
    expected = ref.energies(pot, atoms)
    np.testing.assert_allclose(atoms.get_potential_energies(), expected, rtol=1e-10,
                               atol=1e-10 * max(1.0, np.abs(expected).max()))
    numerical = ref.finite_difference(lambda work: ref.energies(pot, work).sum(), atoms)
    forces = atoms.get_forces()
    assert np.abs(forces - numerical).max() <= 1e-6 * max(1.0, np.abs(forces).max())
    if atoms.pbc.all():
        stress = atoms.get_stress(voigt=False) * atoms.cell.volume
        numerical = strain_derivative(lambda work: ref.energies(pot, work).sum(), atoms)
        assert np.abs(stress - numerical).max() <= 1e-6 * max(1.0, np.abs(stress).max())


@pytest.mark.parametrize("case", REFERENCE_CASES, ids=reference_id)
def test_reference_design_rows(case):
    pot, atoms = reference_setup(case)
    rows = Evaluator(pot).design_rows(Structure.from_atoms(pot, atoms), num_threads=1)
    per_atom = ref.blend_factors(pot, atoms)[:, None] * ref.per_atom_b(pot, atoms)
    scale = column_scale(per_atom, 0)
    np.testing.assert_allclose(rows.per_atom, per_atom, rtol=0, atol=1e-10 * scale.max())
    assert np.all(np.abs(rows.energy - per_atom.sum(axis=0)) <= 1e-10 * scale * len(atoms))

    numerical = ref.finite_difference(lambda work: reference_rows(pot, work), atoms)
    assert rows.forces.shape == numerical.shape == (len(atoms), 3, pot.n_functions)
    scale = column_scale(rows.forces, (0, 1))
    assert np.all(np.abs(rows.forces - numerical).max(axis=(0, 1)) <= 1e-6 * scale)

    # for a cluster the "strain" deforms the positions only
    strain = strain_derivative(lambda work: reference_rows(pot, work), atoms)
    scale = column_scale(rows.strain_derivative, (0, 1))
    error = np.abs(rows.strain_derivative - strain).max(axis=(0, 1))
    assert np.all(error <= 1e-6 * scale)


@pytest.mark.parametrize("inner", INNER_TYPES, ids=str)
def test_per_pair_bonds_and_per_element_embeddings(inner):
    """Bonds with their own cutoff, radial family and inner cutoff, embeddings with their own
    type and number of densities: the core agrees with the reference and with -grad E."""
    for k, kind in enumerate(("bulk", "cluster", "small_cell")):
        atoms = make_structure(kind, CUNI, seed=30 + k)
        pot = shift_densities_positive(mixed_potential(inner, seed=30 + k), [atoms])
        work = with_calculator(atoms, pot)
        expected = ref.energies(pot, atoms)
        np.testing.assert_allclose(work.get_potential_energies(), expected, rtol=1e-10,
                                   atol=1e-10 * max(1.0, np.abs(expected).max()))
        rows = Evaluator(pot).design_rows(Structure.from_atoms(pot, atoms), num_threads=1)
        per_atom = ref.blend_factors(pot, atoms)[:, None] * ref.per_atom_b(pot, atoms)
        np.testing.assert_allclose(rows.per_atom, per_atom, rtol=0,
                                   atol=1e-10 * max(1.0, np.abs(per_atom).max()))
        check_forces(work)
        check_invariance(work)
        if atoms.pbc.all():
            check_stress(work)


@pytest.mark.parametrize("kind", ["bulk", "small_cell", "triclinic", "slab"])
def test_periodic_images_are_the_same_atoms(kind):
    """Moving atoms by lattice vectors (along periodic directions) changes nothing."""
    atoms = make_structure(kind, CUNI, seed=12)
    pot = shift_densities_positive(random_potential(CUNI, ndensity=2, orders=3, inner="zbl",
                                                    seed=12), [atoms])
    rng = np.random.default_rng(12)
    moved = atoms.copy()
    lattice_shifts = rng.integers(-3, 4, (len(atoms), 3)) * atoms.pbc
    moved.positions += lattice_shifts @ atoms.cell.array
    a, b = with_calculator(atoms, pot), with_calculator(moved, pot)
    energies = a.get_potential_energies()
    np.testing.assert_allclose(b.get_potential_energies(), energies, rtol=1e-12,
                               atol=1e-12 * np.abs(energies).max())
    forces = a.get_forces()
    np.testing.assert_allclose(b.get_forces(), forces, rtol=0, atol=1e-11 * np.abs(forces).max())
    if atoms.pbc.all():
        stress = a.get_stress()
        np.testing.assert_allclose(b.get_stress(), stress, rtol=0,
                                   atol=1e-11 * np.abs(stress).max())


# ----------------------------------------------------------------------------- threads, sum rules

@pytest.fixture(scope="module")
def thread_setup():
    atoms = make_structure("bulk", CUNI, seed=5, repeat=(2, 2, 2))
    pot = random_potential(CUNI, "ChebExpCos", FSSS, 2, 4, "zbl", seed=5)
    return shift_densities_positive(pot, [atoms]), atoms


@requires_openmp
def test_one_and_two_threads_agree(thread_setup):
    pot, atoms = thread_setup
    results = []
    for n in (1, 2):
        work = with_calculator(atoms, pot, num_threads=n)
        results.append((work.get_potential_energy(), work.get_potential_energies(),
                        work.get_forces(), work.get_stress()))
    for one, two in zip(*results):
        np.testing.assert_allclose(two, one, rtol=1e-12, atol=1e-12 * np.abs(one).max())

    structure = Structure.from_atoms(pot, atoms)
    evaluator = Evaluator(pot)
    one, two = (evaluator.design_rows(structure, num_threads=n) for n in (1, 2))
    for name in ("energy", "per_atom", "forces", "strain_derivative"):
        a, b = getattr(one, name), getattr(two, name)
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12 * np.abs(a).max(), err_msg=name)


@pytest.mark.parametrize("kind", ["bulk", "small_cell", "cluster", "slab"])
def test_sum_rules(kind):
    atoms = make_structure(kind, CUNI, seed=7)
    pot = shift_densities_positive(random_potential(CUNI, ndensity=2, orders=4, inner="zbl",
                                                    seed=7), [atoms])
    atoms = with_calculator(atoms, pot)
    energy = atoms.get_potential_energy()
    forces = atoms.get_forces()
    assert atoms.get_potential_energy(force_consistent=True) == energy  # free_energy
    assert abs(atoms.get_potential_energies().sum() - energy) <= 1e-12 * max(1.0, abs(energy))
    assert np.abs(forces.sum(axis=0)).max() <= 1e-11 * max(1.0, np.abs(forces).max())

    rows = Evaluator(pot).design_rows(Structure.from_atoms(pot, atoms), num_threads=1)
    scale = column_scale(rows.per_atom, 0)
    assert np.all(np.abs(rows.per_atom.sum(axis=0) - rows.energy) <= 1e-12 * scale * len(atoms))
    assert np.all(np.abs(rows.forces.sum(axis=0)).max(axis=0)
                  <= 1e-11 * column_scale(rows.forces, (0, 1)))


def test_design_rows_match_the_energy_of_a_linear_potential():
    """With a linear embedding and no core, E = sum_i E0 + rows.energy @ c, F = rows.forces @ c
    and the strain derivative is rows.strain_derivative @ c."""
    atoms = make_structure("triclinic", CUNI, seed=8)
    pot = random_potential(CUNI, ndensity=1, orders=4, seed=8)
    work = with_calculator(atoms, pot)
    rows = Evaluator(pot).design_rows(Structure.from_atoms(pot, atoms), num_threads=1)
    c = pot.coefficients[:, 0]
    species = Structure.from_atoms(pot, atoms).species
    energy = work.get_potential_energy()
    assert abs(pot.e0[species].sum() + rows.energy @ c - energy) <= 1e-11 * max(1, abs(energy))
    np.testing.assert_allclose(rows.forces @ c, work.get_forces(), rtol=0,
                               atol=1e-11 * max(1, np.abs(work.get_forces()).max()))
    stress = work.get_stress(voigt=False) * atoms.cell.volume
    strain = rows.strain_derivative @ c
    np.testing.assert_allclose(0.5 * (strain + strain.T), stress, rtol=0,
                               atol=1e-11 * max(1, np.abs(stress).max()))


def test_calculator_reusing_its_neighbour_list_matches_a_fresh_one():
    """Small moves reuse the calculator's neighbour list (within its skin), larger ones and cell
    changes rebuild it; either way the results are those of a fresh calculator."""
    atoms = make_structure("bulk", CUNI, seed=6)
    pot = shift_densities_positive(random_potential(CUNI, ndensity=2, orders=3, inner="zbl",
                                                    seed=6), [atoms])
    atoms.calc = ACECalculator(pot, num_threads=1)
    rng = np.random.default_rng(6)
    for step in range(14):
        if step == 10:
            atoms.set_cell(atoms.cell.array * 1.01, scale_atoms=True)
        else:
            atoms.positions += 0.04 * rng.standard_normal(atoms.positions.shape)
        fresh_atoms = with_calculator(atoms, pot)
        for name in ("get_potential_energies", "get_forces", "get_stress"):
            reused, expected = getattr(atoms, name)(), getattr(fresh_atoms, name)()
            np.testing.assert_allclose(reused, expected, rtol=1e-12,
                                       atol=1e-12 * np.abs(expected).max(), err_msg=name)


# ----------------------------------------------------------------------------- bad input

def test_element_not_in_the_potential(cu_potential):
    atoms = with_calculator(make_structure("bulk", ("Cu", "Fe"), seed=1), cu_potential)
    with pytest.raises(ValueError, match=r"element\(s\) \['Fe'\] not in the potential"):
        atoms.get_potential_energy()


def test_nan_positions(cu_potential):
    atoms = with_calculator(make_structure("bulk", CU, seed=1), cu_potential)
    atoms.positions[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"positions of atoms \[3\] are not finite"):
        atoms.get_potential_energy()


@pytest.mark.parametrize("cell", [np.diag([3.6, 3.6, 0.0]),
                                  [[3.6, 0, 0], [7.2, 0, 0], [0, 0, 3.6]]],
                         ids=["zero_vector", "parallel_vectors"])
def test_zero_volume_periodic_cell(cu_potential, cell):
    atoms = make_structure("bulk", CU, seed=1, repeat=(1, 1, 1))
    atoms.set_cell(cell, scale_atoms=False)
    atoms = with_calculator(atoms, cu_potential)
    with pytest.raises(ValueError, match="zero volume"):
        atoms.get_potential_energy()


def dimer(distance, symbols="Cu2"):
    return Atoms(symbols, positions=[[0, 0, 0], [distance, 0, 0]], pbc=False)


def test_closer_than_min_distance_without_core_repulsion():
    pot = random_potential(CU, ndensity=2, orders=3, seed=2, min_distance=2.0)
    assert not pot.has_core_repulsion
    bulk_atoms = make_structure("bulk", CU, seed=1)
    bulk_atoms.positions[1] = bulk_atoms.positions[0] + [1.5, 0, 0]
    for atoms in (dimer(1.5), dimer(1.9), bulk_atoms):
        atoms = with_calculator(atoms, pot)
        with pytest.raises(ValueError, match=r"1\.[59]\d* Å apart, closer than this potential "
                                             r"allows \(2\.0000 Å"):
            atoms.get_potential_energy()
    assert np.isfinite(with_calculator(dimer(2.1), pot).get_potential_energy())


@pytest.mark.parametrize("inner, r_max", [("zbl", 1.95), ("distance", 2.05), ("density", 1.3)])
def test_core_repulsion_is_finite_and_repulsive(inner, r_max):
    """Below the inner cutoff (pure core repulsion) the dimer energy rises as the atoms approach
    and the forces push them apart; min_distance does not refuse the structure."""
    pot = random_potential(CUNI, ndensity=2, orders=3, inner=inner, seed=4, min_distance=2.2)
    assert pot.has_core_repulsion
    calc = ACECalculator(pot, num_threads=1)
    for symbols in ("Cu2", "CuNi"):
        distances = np.linspace(0.25, r_max, 25)
        energies, forces = [], []
        for r in distances:
            atoms = dimer(r, symbols)
            atoms.calc = calc
            energies.append(atoms.get_potential_energy())
            forces.append(atoms.get_forces())
        energies, forces = np.array(energies), np.array(forces)
        assert np.all(np.isfinite(energies)) and np.all(np.isfinite(forces))
        assert np.all(np.diff(energies) < 0), f"{symbols}: energy must fall with distance"
        assert np.all(forces[:, 0, 0] < 0) and np.all(forces[:, 1, 0] > 0), symbols
        np.testing.assert_allclose(forces[:, :, 1:], 0, atol=1e-10)
    # and inside a crystal: an atom pushed onto its neighbour is pushed back
    atoms = make_structure("bulk", CUNI, seed=3)
    direction = atoms.positions[1] - atoms.positions[0]
    atoms.positions[1] = atoms.positions[0] + 0.8 * direction / np.linalg.norm(direction)
    atoms.calc = calc
    assert np.dot(atoms.get_forces()[1], direction) > 0
    check_forces(atoms)


def test_zbl_without_prefactor_is_not_core_repulsion():
    """A ZBL inner cutoff with prefactor 0 repels nothing: min_distance still applies."""
    pot = random_potential(CU, ndensity=1, orders=2, inner="zbl", seed=1, min_distance=2.0)
    for bond in pot.bonds.values():
        bond.core_repulsion = (0.0, 1.0)
    with pytest.raises(ValueError, match="closer than this potential allows"):
        with_calculator(dimer(1.0), pot).get_potential_energy()


@pytest.mark.parametrize("inner", [None, "zbl"])
def test_coincident_atoms(inner):
    pot = random_potential(CU, ndensity=1, orders=2, inner=inner, seed=2)
    atoms = make_structure("bulk", CU, seed=1)
    atoms.positions[5] = atoms.positions[2]
    atoms = with_calculator(atoms, pot)
    with pytest.raises(ValueError, match="atoms 2 and 5 are at the same position"):
        atoms.get_forces()
    # the same atom again through a lattice vector
    atoms.positions[5] = atoms.positions[2] + atoms.cell[0]
    with pytest.raises(ValueError, match="at the same position"):
        atoms.get_forces()


@pytest.mark.parametrize("kind", ["cluster", "slab"])
def test_stress_needs_a_periodic_cell(cu_potential, kind):
    atoms = with_calculator(make_structure(kind, CU, seed=1), cu_potential)
    assert np.isfinite(atoms.get_potential_energy())
    with pytest.raises(PropertyNotImplementedError, match="periodic"):
        atoms.get_stress()


def test_calculator_follows_species_changes():
    """Changing the species after a calculation refuses an unknown element, then recovers."""
    pot = random_potential(CUNI, ndensity=2, orders=3, seed=9)
    atoms = make_structure("bulk", CUNI, seed=9)
    atoms.calc = ACECalculator(pot, num_threads=1)
    e_mixed = atoms.get_potential_energy()
    atoms.numbers[:] = 29
    e_cu = atoms.get_potential_energy()
    assert e_cu != e_mixed
    assert e_cu == with_calculator(atoms, pot).get_potential_energy()
    atoms.symbols[0] = "Fe"
    with pytest.raises(ValueError, match="not in the potential"):
        atoms.get_potential_energy()
