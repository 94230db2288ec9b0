"""Reference energies E0: given, fitted, or taken from isolated-atom structures in the data."""
import numpy as np
import pytest
from ase import Atoms

from ace.data import DataError, Dataset
from ace.fitting.config import ConfigError, FitConfig
from ace.fitting.linear import LossSettings, fit_linear
from ace.potential import ACEPotential

from test_fit import E0_TRUE, emt_like_structures, label, recovery_tolerance, true_potential
from test_fit import basis  # noqa: F401  (module fixture)


def free_atom(symbol, energy, box=12.0, config_type="isolated_atom", pbc=True):
    from ase.calculators.singlepoint import SinglePointCalculator
    atoms = Atoms(symbol, positions=[[0.3, 0.2, 0.1]], cell=[box] * 3, pbc=pbc)
    atoms.info["config_type"] = config_type
    atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=np.zeros((1, 3)))
    return atoms


def with_atoms(dataset, extra):
    return Dataset.concatenate([dataset, Dataset.from_atoms(extra, source="free")])


def test_isolated_takes_e0_from_a_single_atom_in_a_large_cell(basis):
    truth = true_potential(basis)
    # the teacher's isolated atom has energy E0 exactly (no neighbour, every B-function zero)
    structures = emt_like_structures(48, volume=0.08, strain=0.05, rattle=0.3)
    data = with_atoms(label(structures, truth), [free_atom("Cu", E0_TRUE, config_type="any")])
    fit = fit_linear(ACEPotential.from_basis(basis), data,
                     LossSettings(forces=1.0, stress=1.0, l2=0.0, smoothness=None, e0="isolated"), num_threads=1)
    assert fit.potential.e0[0] == E0_TRUE
    assert not fit.report["e0_fitted"]
    assert "isolated-atom" in fit.report["e0_source"]
    # the recovered coefficients are the teacher's: E0 was right
    c_true = truth.coefficients[:, 0]
    assert np.abs(fit.potential.coefficients[:, 0] - c_true).max() <= \
        recovery_tolerance(fit.report) * np.abs(c_true).max()


def test_isolated_by_config_type_and_averaging():
    data = Dataset.from_atoms([free_atom("Cu", -0.25, config_type="free"),
                               free_atom("Cu", -0.2502, config_type="free"),
                               free_atom("Ni", -0.5, config_type="free", box=3.0)])
    # Ni's cell is smaller than the cutoff: not isolated by geometry, isolated by its label
    assert data.isolated_atom_energies(["Cu", "Ni"], 5.0, "free") == pytest.approx(
        {"Cu": -0.2501, "Ni": -0.5})
    with pytest.raises(DataError, match=r"no isolated-atom energy for \['Ni'\].*cutoff \(5 Å\)"):
        data.isolated_atom_energies(["Cu", "Ni"], 5.0)


def test_isolated_without_isolated_atoms_is_a_clear_error(basis):
    data = label(emt_like_structures(8), true_potential(basis))
    with pytest.raises(DataError, match=r"no isolated-atom energy for \['Cu'\].*give e0 as"):
        fit_linear(ACEPotential.from_basis(basis), data, LossSettings(e0="isolated"),
                   num_threads=1)
    with pytest.raises(DataError, match=r"config_type 'free'"):
        fit_linear(ACEPotential.from_basis(basis), data,
                   LossSettings(e0={"isolated": "free"}), num_threads=1)


def test_fitted_e0_is_reported_as_not_meaningful(basis):
    data = label(emt_like_structures(24), true_potential(basis))
    fit = fit_linear(ACEPotential.from_basis(basis), data, LossSettings(forces=1.0, l2=1e-10),
                     num_threads=1)
    assert fit.report["e0_fitted"]
    assert "not physically meaningful" in fit.report["e0_source"]


@pytest.mark.parametrize("e0, message", [
    ({"Cu": float("nan")}, "finite numbers"),
    ({"Cu": -1.0, "Ni": -2.0}, r"unknown \['Ni'\]"),
    ({"isolated": 3}, "isolated: <config_type"),
    ("free", "expected 'auto', 'isolated'"),
])
def test_bad_e0_settings_name_the_key(tmp_path, e0, message):
    raw = {"elements": ["Cu"], "cutoff": 4.0, "data": {"train": "x.xyz"}, "output": "p.yaml",
           "e0": e0}
    with pytest.raises(ConfigError, match=r"^e0: .*" + message):
        FitConfig.from_dict(raw, base_dir=str(tmp_path))


def test_given_e0_is_not_trained_by_the_nonlinear_fit(tmp_path):
    raw = {"elements": ["Cu"], "cutoff": 4.0, "data": {"train": "x.xyz"}, "output": "p.yaml",
           "e0": {"Cu": -0.25}, "fit": {"method": "nonlinear"}}
    config = FitConfig.from_dict(raw, base_dir=str(tmp_path))
    assert "e0" not in config.nonlinear.trainable
    raw["fit"]["trainable"] = ["coefficients", "e0"]
    with pytest.raises(ConfigError, match="e0 is given"):
        FitConfig.from_dict(raw, base_dir=str(tmp_path))


def test_ace_info_says_a_fitted_e0_makes_cohesive_energies_meaningless(basis, tmp_path, capsys):
    from ace.cli import main

    data = label(emt_like_structures(24), true_potential(basis))
    fit = fit_linear(ACEPotential.from_basis(basis), data, LossSettings(forces=1.0, l2=1e-10),
                     num_threads=1)
    fitted = fit.potential
    fitted.metadata = {"fit": {"report": fit.report}}
    fitted.save(tmp_path / "p.yaml")
    assert main(["info", str(tmp_path / "p.yaml")]) == 0
    assert "cohesive energies of this potential are not physically meaningful" in \
        capsys.readouterr().out
