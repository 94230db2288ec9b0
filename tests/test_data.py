"""Data readers: extxyz (calculator results and named keys), ASE db, globs, slices, bad data."""
import warnings

import ase.db
import ase.io
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator
from ase.stress import voigt_6_to_full_3x3_stress

from ace.data import DataError, DataKeys, Dataset, read_dataset


def labelled(seed, n_repeat=1, config_type="bulk", stress=True, element="Cu"):
    """A rattled fcc cell with random labels stored as calculator results."""
    rng = np.random.default_rng(seed)
    atoms = bulk(element, "fcc", a=3.6, cubic=True).repeat((n_repeat, 1, 1))
    atoms.rattle(0.1, seed=seed)
    results = {"energy": float(rng.normal(-10, 1)), "forces": rng.normal(size=(len(atoms), 3))}
    if stress:
        results["stress"] = rng.normal(size=6) * 0.01
    atoms.calc = SinglePointCalculator(atoms, **results)
    atoms.info["config_type"] = config_type
    return atoms


def test_extxyz_calculator_results(tmp_path):
    images = [labelled(k, n_repeat=1 + k % 2, config_type=["bulk", "md"][k % 2]) for k in range(5)]
    path = tmp_path / "data.xyz"
    ase.io.write(path, images, format="extxyz")
    data = read_dataset(str(path))
    assert len(data) == 5 and data.total_atoms == sum(len(a) for a in images)
    assert data.elements == ["Cu"]
    assert data.config_type_counts() == {"bulk": 3, "md": 2}
    assert data.names[3] == f"{path}:3"
    for s, atoms in enumerate(images):
        assert data.energy[s] == pytest.approx(atoms.calc.results["energy"], abs=1e-10)
        np.testing.assert_allclose(data.forces[data.atom_slice(s)], atoms.calc.results["forces"],
                                   atol=1e-7)
        np.testing.assert_allclose(data.stress[s],
                                   voigt_6_to_full_3x3_stress(atoms.calc.results["stress"]),
                                   atol=1e-12)
        # extxyz stores 8 decimals
        np.testing.assert_allclose(data.positions[data.atom_slice(s)], atoms.positions, atol=1e-7)
        np.testing.assert_allclose(data.cells[s], atoms.cell.array, atol=1e-7)
    assert data.has_forces.all() and data.has_stress.all()
    # round trip through Atoms
    again = data.atoms(1)
    assert again.get_potential_energy() == pytest.approx(data.energy[1])
    np.testing.assert_allclose(again.get_forces(), data.forces[data.atom_slice(1)])


def test_extxyz_named_info_keys_and_virial(tmp_path):
    images = []
    rng = np.random.default_rng(3)
    for k in range(3):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
        atoms.rattle(0.05, seed=k)
        atoms.info["dft_energy"] = -3.0 * len(atoms) + k
        atoms.arrays["dft_forces"] = rng.normal(size=(len(atoms), 3))
        atoms.info["virial"] = np.arange(9.0).reshape(3, 3) + k
        atoms.info["kind"] = "custom"
        atoms.info["w"] = 2.0 + k
        images.append(atoms)
    path = tmp_path / "named.xyz"
    ase.io.write(path, images, format="extxyz")
    keys = DataKeys(energy="dft_energy", forces="dft_forces", virial="virial",
                    config_type="kind", weight="w")
    data = read_dataset(str(path), keys)
    np.testing.assert_allclose(data.energy, [a.info["dft_energy"] for a in images])
    np.testing.assert_allclose(data.forces, np.concatenate([a.arrays["dft_forces"] for a in images]),
                               atol=1e-7)
    virial = np.arange(9.0).reshape(3, 3) + 1
    np.testing.assert_allclose(data.stress[1], -virial / images[1].get_volume(), rtol=1e-6)
    assert set(data.config_type) == {"custom"}
    np.testing.assert_allclose(data.weight, [2.0, 3.0, 4.0])
    # without keys the energy is missing: a clear error naming the structure
    with pytest.raises(DataError, match=r"named\.xyz:0: missing energy"):
        read_dataset(str(path))


def test_ase_db_with_key_value_pairs(tmp_path):
    path = tmp_path / "data.db"
    images = [labelled(k, config_type=["a", "b"][k % 2]) for k in range(4)]
    with ase.db.connect(str(path)) as db:
        for atoms in images:
            db.write(atoms, config_type=atoms.info["config_type"])
    data = read_dataset(str(path))
    assert len(data) == 4
    assert data.config_type.tolist() == ["a", "b", "a", "b"]
    np.testing.assert_allclose(data.energy, [a.calc.results["energy"] for a in images])
    np.testing.assert_allclose(data.forces, np.concatenate([a.calc.results["forces"] for a in images]))
    assert data.names[0] == f"{path}:id=1"


def test_globs_lists_and_slices(tmp_path):
    for name in ("a", "b"):
        ase.io.write(tmp_path / f"{name}.xyz", [labelled(k) for k in range(3)], format="extxyz")
    assert len(read_dataset(str(tmp_path / "*.xyz"), warn_duplicates=False)) == 6
    assert len(read_dataset([str(tmp_path / "a.xyz"), str(tmp_path / "b.xyz@:2")],
                            warn_duplicates=False)) == 5
    with pytest.raises(DataError, match="matches no file"):
        read_dataset(str(tmp_path / "*.extxyz"))
    with pytest.raises(DataError, match="no such file"):
        read_dataset(str(tmp_path / "missing.xyz"))


def test_duplicates_warn(tmp_path):
    images = [labelled(0), labelled(1), labelled(0)]
    path = tmp_path / "dup.xyz"
    ase.io.write(path, images, format="extxyz")
    with pytest.warns(UserWarning, match=r"1 duplicate structure\(s\): .*dup\.xyz:2 repeats .*dup\.xyz:0"):
        data = read_dataset(str(path))
    assert data.duplicates() == [(0, 2)]


def test_bad_data_errors(tmp_path):
    good = labelled(0)
    nan_energy = labelled(1)
    nan_energy.calc.results["energy"] = float("nan")
    with pytest.raises(DataError, match=r"<atoms>:1: energy is NaN"):
        Dataset.from_atoms([good, nan_energy])
    short_forces = labelled(2)
    short_forces.calc.results["forces"] = np.zeros((len(short_forces) - 1, 3))
    with pytest.raises(DataError, match=r"set:0: forces 'forces' have shape \(3, 3\), expected \(4, 3\)"):
        Dataset.from_atoms([short_forces], source="set")
    nan_forces = labelled(3)
    nan_forces.calc.results["forces"][0, 0] = np.inf
    with pytest.raises(DataError, match="forces 'forces' contain NaN"):
        Dataset.from_atoms([nan_forces])
    no_energy = Atoms("Cu2", positions=[[0, 0, 0], [0, 0, 2.5]])
    with pytest.raises(DataError, match="missing energy"):
        Dataset.from_atoms([no_energy])
    with pytest.raises(DataError, match="no structures"):
        Dataset.from_atoms([])
    empty = tmp_path / "empty.xyz"
    empty.write_text("")
    with pytest.raises(DataError, match="empty.xyz: no structures"):
        read_dataset(str(empty))
    # elements absent from the basis: the first offending structure is named
    data = Dataset.from_atoms([labelled(4), labelled(5, element="Ni")], source="mix")
    with pytest.raises(DataError, match=r"mix:1: element\(s\) \['Ni'\] are not in the basis"):
        data.check_elements(["Cu"])


def test_stress_for_non_periodic_structure_is_an_error():
    atoms = Atoms("Cu2", positions=[[0, 0, 0], [0, 0, 2.5]])
    atoms.calc = SinglePointCalculator(atoms, energy=-1.0)
    atoms.info["stress"] = np.zeros(6)
    with pytest.raises(DataError, match="not periodic"):
        Dataset.from_atoms([atoms])


def test_missing_forces_and_stress_are_allowed():
    atoms = labelled(0, stress=False)
    atoms.calc = SinglePointCalculator(atoms, energy=-3.0)
    data = Dataset.from_atoms([atoms, labelled(1)])
    assert data.has_forces.tolist() == [False, True]
    assert data.has_stress.tolist() == [False, True]


def test_split_subset_and_concatenate():
    images = [labelled(k, config_type=["a", "b", "c"][k % 3]) for k in range(30)]
    images.append(labelled(99, config_type="single"))
    data = Dataset.from_atoms(images)
    rest, held = data.split_indices(0.2, seed=1)
    assert sorted(rest.tolist() + held.tolist()) == list(range(len(data)))
    held_types = data.config_type[held].tolist()
    assert held_types.count("a") == held_types.count("b") == held_types.count("c") == 2
    assert "single" not in held_types  # a config_type is never held out entirely
    train, val = data.split(0.2, seed=1)
    both = Dataset.concatenate([train, val])
    assert len(both) == len(data) and both.total_atoms == data.total_atoms
    order = [data.names.index(n) for n in both.names]
    np.testing.assert_allclose(both.energy, data.energy[order])
    sub = data.subset([3, 1])
    np.testing.assert_allclose(sub.forces[sub.atom_slice(0)], data.forces[data.atom_slice(3)])
    np.testing.assert_allclose(data.counts(["Cu"])[:, 0], data.n_atoms)


def test_live_calculator_results_are_computed_per_structure():
    """A calculator shared between Atoms objects (results cached for the last one) is asked
    again for each structure."""
    from ase.calculators.emt import EMT

    calc = EMT()
    images = []
    for k in range(3):
        atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((1 + k, 1, 1))
        atoms.rattle(0.05, seed=k)
        atoms.calc = calc
        images.append(atoms)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = Dataset.from_atoms(images)
    for s, atoms in enumerate(images):
        probe = atoms.copy()
        probe.calc = EMT()
        assert data.energy[s] == pytest.approx(probe.get_potential_energy())
