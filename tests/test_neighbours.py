import numpy as np
import pytest
from ase import Atoms
from ase.neighborlist import neighbor_list

from ace.neighbours import build_neighbour_list


def pair_set(i, j, shift):
    return sorted(zip(i.tolist(), j.tolist(), map(tuple, np.asarray(shift).tolist())))


def random_cell(rng, kind):
    if kind == "cubic":
        return np.eye(3) * rng.uniform(6, 9)
    if kind == "small":  # smaller than the cutoff in every direction
        return np.eye(3) * 2.1 + rng.uniform(-0.3, 0.3, (3, 3))
    cell = np.eye(3) * rng.uniform(4, 7, 3) + rng.uniform(-1.5, 1.5, (3, 3))  # triclinic
    return cell


@pytest.fixture(autouse=True)
def parallel_even_when_small(monkeypatch):
    """These structures are small: build them with the requested threads all the same, so the
    parallel passes are the ones tested."""
    import ace.neighbours

    monkeypatch.setattr(ace.neighbours, "PARALLEL_FROM_ATOMS", 0)


def test_small_and_large_structures_give_the_same_list_on_any_thread_count(monkeypatch):
    import ace.neighbours
    from ase.build import bulk

    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((4, 4, 4))  # 256 atoms
    atoms.rattle(0.1, seed=1)
    lists = {}
    for threshold in (0, 10_000):  # parallel, then serial below the threshold
        monkeypatch.setattr(ace.neighbours, "PARALLEL_FROM_ATOMS", threshold)
        lists[threshold] = build_neighbour_list(atoms.positions, atoms.cell.array, atoms.pbc,
                                                4.5, num_threads=2)
    for name in ("first", "j", "shift", "vectors"):
        np.testing.assert_array_equal(getattr(lists[0], name), getattr(lists[10_000], name))


@pytest.mark.parametrize("kind", ["cubic", "small", "triclinic"])
@pytest.mark.parametrize("pbc", [(True, True, True), (True, False, True), (False, False, False)])
def test_matches_ase(kind, pbc):
    rng = np.random.default_rng(hash((kind, pbc)) % 2**32)
    for _ in range(3):
        cell = random_cell(rng, kind)
        n = int(rng.integers(1, 12))
        # positions deliberately outside the cell, to test wrapping
        atoms = Atoms("Cu" * n, scaled_positions=rng.uniform(-0.7, 1.7, (n, 3)), cell=cell, pbc=pbc)
        cutoff = rng.uniform(3.0, 5.5)
        i, j, shift = neighbor_list("ijS", atoms, cutoff)
        nl = build_neighbour_list(atoms.positions, atoms.cell.array, atoms.pbc, cutoff, num_threads=2)
        assert pair_set(nl.i, nl.j, nl.shift) == pair_set(i, j, shift)
        expected = atoms.positions[nl.j] - atoms.positions[nl.i] + nl.shift @ atoms.cell.array
        np.testing.assert_allclose(nl.vectors, expected, atol=1e-12)
        assert np.all(np.diff(nl.i) >= 0), "pairs must be sorted by i"


def test_no_cell_and_slab_with_zero_vector():
    rng = np.random.default_rng(3)
    positions = rng.uniform(0, 6, (15, 3))
    nl = build_neighbour_list(positions, np.zeros((3, 3)), False, 3.0)
    atoms = Atoms("H15", positions=positions)
    i, j = neighbor_list("ij", atoms, 3.0)
    assert pair_set(nl.i, nl.j, nl.shift) == pair_set(i, j, np.zeros((len(i), 3), int))
    # periodic in x, y only; the z cell vector is zero
    cell = np.array([[3.3, 0, 0], [0.5, 3.2, 0], [0, 0, 0]])
    slab = Atoms("H15", positions=positions, cell=cell, pbc=(True, True, False))
    i, j, s = neighbor_list("ijS", slab, 3.0)
    nl = build_neighbour_list(slab.positions, cell, slab.pbc, 3.0)
    assert pair_set(nl.i, nl.j, nl.shift) == pair_set(i, j, s)


def test_bad_geometry_is_named():
    with pytest.raises(ValueError, match="zero volume"):
        build_neighbour_list(np.zeros((2, 3)), np.diag([3.0, 3.0, 0.0]), True, 3.0)
    with pytest.raises(ValueError, match="not finite"):
        build_neighbour_list(np.array([[0, 0, np.nan]]), np.eye(3) * 3, True, 3.0)
    with pytest.raises(ValueError, match="zero volume"):
        build_neighbour_list(np.zeros((1, 3)), [[1, 0, 0], [2, 0, 0], [0, 0, 1]], True, 3.0)
