import numpy as np
import pytest
from ase.build import bulk

from ace.basis import BasisSpec, build_basis
from ace.calculator import ACECalculator
from ace.potential import ACEPotential


def small_potential(seed=0):
    spec = BasisSpec.from_dict({
        "elements": ["Cu"],
        "bonds": {"ALL": {"radbase": "ChebExpCos", "radparameters": [5.25], "rcut": 4.5, "dcut": 0.3}},
        "functions": {"ALL": {"nradmax_by_orders": [5, 3, 2], "lmax_by_orders": [0, 2, 1]}}})
    basis = build_basis(spec)
    rng = np.random.default_rng(seed)
    return ACEPotential.from_basis(basis, 0.3 * rng.standard_normal((basis.n_functions, 1)))


def test_neighbour_reuse_matches_fresh_lists():
    """Moves below half the skin reuse the pair list; results equal a fresh list each step."""
    pot = small_potential()
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True) * (2, 2, 2)
    reused, fresh = ACECalculator(pot, skin=1.0), ACECalculator(pot, skin=0.0)
    rng = np.random.default_rng(4)
    start = atoms.positions.copy()
    for step in range(12):
        atoms.positions = start + 0.04 * step * rng.standard_normal((len(atoms), 3)) / np.sqrt(3)
        atoms.calc = reused
        e_reused, f_reused = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = fresh
        np.testing.assert_allclose(e_reused, atoms.get_potential_energy(), rtol=1e-12)
        np.testing.assert_allclose(f_reused, atoms.get_forces(), atol=1e-10)
    assert reused._neighbours is not None


def test_calculator_from_file_and_repr(tmp_path):
    pot = small_potential(1)
    path = tmp_path / "cu.yaml"
    pot.save(path)
    atoms = bulk("Cu", "fcc", a=3.6) * (2, 2, 2)
    atoms.rattle(0.05, seed=3)
    atoms.calc = ACECalculator(str(path))
    e_file = atoms.get_potential_energy()
    atoms.calc = ACECalculator(pot)
    assert e_file == atoms.get_potential_energy()
    assert "ACECalculator(ACEPotential(elements=['Cu']" in repr(atoms.calc)
    assert ACECalculator.implemented_properties == ["energy", "free_energy", "energies", "forces", "stress"]


def test_empty_structure_gives_zero_without_warnings():
    import warnings
    from ase import Atoms

    atoms = Atoms(cell=[5.0, 5.0, 5.0], pbc=True)
    atoms.calc = ACECalculator(small_potential(), num_threads=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. a division by zero in the neighbour binning
        assert atoms.get_potential_energy() == 0.0
        assert atoms.get_forces().shape == (0, 3)


@pytest.mark.parametrize("bad", [2.5, "2", True, 0])
def test_bad_thread_count_is_refused_at_construction(bad):
    with pytest.raises(ValueError, match="num_threads"):
        ACECalculator(small_potential(), num_threads=bad)
