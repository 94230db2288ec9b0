"""From pacemaker in one command, and the first hour without surprises (issue 19).

pacemaker's ``input.yaml`` (written here as its documentation shows it) is fitted by ``ace fit``
on EMT data stored as pacemaker's pickled DataFrames; the translated config re-fits to the same
potential; pickles are read only with explicit trust; and each first-hour complaint is a CLI
test on its exact message.
"""
import functools
import os
import pickle
import re
import subprocess
import sys

import ase.io
import numpy as np
import pytest
import yaml
from ase.build import bulk
from ase.calculators.emt import EMT

from ace.cli import main
from ace.data import DataError, read_dataset
from ace.fitting.config import ConfigError, FitConfig
from ace.potential import ACEPotential

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FREE_ATOM = {"Cu": -0.25, "shift": 0.1}  # pacemaker's reference_energy form, eV
KAPPA = 0.3
CUTOFF = 4.5
FUNCTIONS = 20

# pacemaker's input file as its documentation lays it out (a linear embedding keeps it fast)
PACEMAKER_INPUT = f"""\
cutoff: 7
seed: 42
metadata:
  purpose: issue 19 test
data:
  filename: train.pckl.gzip
  test_filename: test.pckl.gzip
  reference_energy: {{Cu: {FREE_ATOM['Cu']}, shift: {FREE_ATOM['shift']}}}
potential:
  deltaSplineBins: 0.001
  elements: [Cu]
  embeddings:
    ALL: {{npot: 'FinnisSinclairShiftedScaled', fs_parameters: [1, 1], ndensity: 1}}
  bonds:
    ALL: {{radbase: ChebExpCos, radparameters: [5.25], rcut: {CUTOFF}, dcut: 0.01}}
  functions:
    number_of_functions_per_element: {FUNCTIONS}
    UNARY: {{nradmax_by_orders: [6, 3, 2], lmax_by_orders: [0, 2, 1]}}
fit:
  loss: {{kappa: {KAPPA}, L1_coeffs: 1e-8, L2_coeffs: 1e-8, w0_rad: 0, w1_rad: 0, w2_rad: 0}}
  weighting: {{type: EnergyBasedWeightingPolicy, DElow: 1.0, DEup: 10.0, DE: 1.0, DF: 1.0,
              wlow: 0.75, energy: convex_hull, seed: 42}}
  optimizer: BFGS
  maxiter: 1000
  repulsion: auto
backend:
  evaluator: tensorpot
  batch_size: 100
  display_step: 50
"""


def emt_rows(n, seed):
    """pace_collect-style rows: Atoms without calculator, total and corrected energies, forces."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(n):
        atoms = bulk("Cu", "fcc", a=3.61 * (1 + 0.02 * rng.normal()), cubic=True)
        atoms.rattle(0.1, seed=seed * 100 + k)
        if k % 4 == 3:
            del atoms[0]
        atoms.calc = EMT()
        energy, forces = atoms.get_potential_energy(), atoms.get_forces()
        atoms.calc = None
        corrected = energy - len(atoms) * FREE_ATOM["Cu"] + FREE_ATOM["shift"] * len(atoms)
        rows.append({"name": f"emt/{seed}/{k}", "ase_atoms": atoms, "energy": energy,
                     "energy_corrected": corrected, "forces": forces})
    return rows


def write_frame(path, rows, drop=()):
    pandas = pytest.importorskip("pandas")
    frame = pandas.DataFrame(rows).drop(columns=list(drop))
    frame.to_pickle(path, compression="gzip")
    return path


@pytest.fixture(scope="module")
def pacemaker_dir(tmp_path_factory):
    pytest.importorskip("pandas")
    path = tmp_path_factory.mktemp("pacemaker")
    write_frame(path / "train.pckl.gzip", emt_rows(16, 0))
    write_frame(path / "test.pckl.gzip", emt_rows(4, 1))
    (path / "input.yaml").write_text(PACEMAKER_INPUT)
    return path


@pytest.fixture(scope="module")
def pacemaker_fit(pacemaker_dir):
    assert main(["fit", str(pacemaker_dir / "input.yaml"), "--trust-pickle",
                 "--num-threads", "1", "--no-progress"]) == 0
    return ACEPotential.load(pacemaker_dir / "ace_potential.yaml")


# ---------------------------------------------------------------------- pacemaker configs

def test_pacemaker_input_fits_with_its_basis_cutoff_loss_and_reference_energies(
        pacemaker_dir, pacemaker_fit):
    potential = pacemaker_fit
    assert potential.elements == ["Cu"] and potential.n_functions == FUNCTIONS
    assert potential.cutoff == pytest.approx(CUTOFF)  # the bonds' rcut, not the top-level 7
    bond = potential.bonds[(0, 0)]
    assert bond.radbase == "ChebExpCos" and bond.rcut == pytest.approx(CUTOFF)
    assert bond.inner_cutoff_type == "zbl"  # repulsion: auto
    assert potential.e0[0] == pytest.approx(FREE_ATOM["Cu"] - FREE_ATOM["shift"])
    report = potential.metadata["fit"]["report"]
    # the same loss: pacemaker's kappa as ace's force weight, no stress term
    assert report["weights"]["forces"] == pytest.approx(3 * KAPPA / (1 - KAPPA))
    assert report["weights"]["stress"] == 0
    # a real fit of EMT: test energies within a few meV/atom, forces far below their spread
    test = potential.metadata["metrics"]["test"]["overall"]
    assert test["energy_mae"] < 20 and test["forces_rmse"] < 0.1


def test_pacemaker_input_names_what_it_ignores(pacemaker_dir, capsys):
    FitConfig.load(pacemaker_dir / "input.yaml", trust_pickle=True)
    err = capsys.readouterr().err
    assert "a pacemaker input file" in err
    for key in ("backend", "metadata", "fit.loss.L1_coeffs", "fit.loss.L2_coeffs",
                "fit.weighting", "cutoff", "fit.optimizer", "fit.maxiter"):
        assert f"ignored {key}: " in err, key
    assert "ignored fit.loss.w0_rad" not in err  # zero: nothing dropped
    assert "the linear fit is solved exactly: no optimiser" in err


def test_converted_config_refits_to_the_same_potential(pacemaker_dir, pacemaker_fit, capsys):
    target = pacemaker_dir / "converted"
    target.mkdir()
    assert main(["convert-config", str(pacemaker_dir / "input.yaml"),
                 "-o", str(target / "ace.yaml")]) == 0
    text = (target / "ace.yaml").read_text()
    assert "# pacemaker keys left out:" in text and "#   backend: " in text
    config = yaml.safe_load(text)
    assert config["data"]["train"] == "../train.pckl.gzip"  # rebased for the new directory
    assert config["weights"] == {"forces": pytest.approx(3 * KAPPA / (1 - KAPPA)), "stress": 0.0}
    assert main(["fit", str(target / "ace.yaml"), "--trust-pickle", "--num-threads", "1",
                 "--no-progress"]) == 0
    refit = ACEPotential.load(target / "ace_potential.yaml")
    assert refit.n_functions == pacemaker_fit.n_functions
    np.testing.assert_allclose(refit.coefficients, pacemaker_fit.coefficients, rtol=1e-9,
                               atol=1e-12)
    np.testing.assert_allclose(refit.e0, pacemaker_fit.e0)
    atoms = emt_rows(1, 5)[0]["ase_atoms"]
    from ace.calculator import ACECalculator
    energies = []
    for pot in (pacemaker_fit, refit):
        atoms.calc = ACECalculator(pot, num_threads=1)
        energies.append(atoms.get_potential_energy())
    assert energies[0] == pytest.approx(energies[1], abs=1e-9)


def test_nonlinear_pacemaker_embedding_maps_to_a_nonlinear_fit():
    from ace.fitting.pacemaker import translate

    raw = yaml.safe_load(PACEMAKER_INPUT.replace(
        "fs_parameters: [1, 1], ndensity: 1", "fs_parameters: [1, 1, 1, 0.5], ndensity: 2")
        .replace("maxiter: 1000", "maxiter: 1000\n  fit_cycles: 2\n  trainable_parameters: ALL"))
    config, notes = translate(raw)
    assert config["fit"] == {"method": "nonlinear", "seed": 42, "optimizer": "BFGS",
                             "max_iterations": 1000, "trainable": ["coefficients", "radial"],
                             "restarts": 2}  # E0 is pacemaker's fixed reference, not trained
    assert config["basis"]["functions"]["number_of_functions_per_element"] == FUNCTIONS
    assert "fit.optimizer" not in dict(notes)
    loaded = FitConfig.from_dict({**config, "data": {"train": "x.xyz"}})
    assert loaded.nonlinear.max_iterations == 1000 and loaded.nonlinear.restarts == 2


def test_pacemaker_kappa_and_shapes_errors():
    from ace.fitting.pacemaker import translate

    raw = yaml.safe_load(PACEMAKER_INPUT)
    raw["fit"]["loss"]["kappa"] = 1
    with pytest.raises(ConfigError, match=r"fit.loss.kappa: .*1, forces only"):
        translate(raw)
    raw["potential"] = "output_potential.yaml"
    with pytest.raises(ConfigError, match="pacemaker's upfit"):
        translate(raw)
    raw = yaml.safe_load(PACEMAKER_INPUT)
    del raw["potential"]["functions"]["number_of_functions_per_element"]
    config, _ = translate(raw)  # every function of the shape, as pacemaker
    assert config["basis"]["functions"]["number_of_functions_per_element"] is None
    assert not FitConfig.from_dict({**config, "data": {"train": "x.xyz"}}).wants_auto_size()


# ---------------------------------------------------------------------- pacemaker datasets

def test_pickle_is_read_only_with_explicit_trust(tmp_path):
    rows = emt_rows(5, 2)
    path = write_frame(tmp_path / "data.pckl.gzip", rows)
    with pytest.raises(DataError, match=r"can run any code.*--trust-pickle.*trust_pickle: true"
                                        r".*ace convert-data .*data.pckl.gzip -o data.xyz"):
        read_dataset(path)
    data = read_dataset(path, trust_pickle=True)
    assert len(data) == 5
    np.testing.assert_allclose(data.energy, [r["energy"] for r in rows])
    np.testing.assert_allclose(data.forces, np.concatenate([r["forces"] for r in rows]))
    corrected = read_dataset(path, trust_pickle=True, energy="energy_corrected")
    np.testing.assert_allclose(corrected.energy, [r["energy_corrected"] for r in rows])


def test_pickle_without_total_energies_uses_energy_corrected(tmp_path):
    rows = emt_rows(3, 3)
    path = write_frame(tmp_path / "fitting_data_info.pckl.gzip", rows, drop=["energy"])
    with pytest.warns(UserWarning, match="no total energies"):
        data = read_dataset(path, trust_pickle=True)
    np.testing.assert_allclose(data.energy, [r["energy_corrected"] for r in rows])


class _Payload:
    """Unpickling this creates a directory: proof of whether a pickle was loaded."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def test_untrusted_pickle_runs_nothing(tmp_path, capsys):
    marker = str(tmp_path / "payload-ran")
    path = tmp_path / "evil.pckl"
    path.write_bytes(pickle.dumps(_Payload(marker)))
    assert main(["convert-data", str(path), "-o", str(tmp_path / "x.xyz")]) == 1
    assert "--trust-pickle" in capsys.readouterr().err
    config = {"elements": ["Cu"], "cutoff": 4.5, "data": {"train": str(path)}, "output": "p.yaml"}
    with pytest.raises(ConfigError, match="loading a pickle can run any code"):
        FitConfig.from_dict(config)
    assert not os.path.exists(marker)


def test_convert_data_writes_extended_xyz(tmp_path, capsys):
    rows = emt_rows(4, 4)
    path = write_frame(tmp_path / "data.pckl.gzip", rows)
    assert main(["convert-data", str(path), "-o", str(tmp_path / "data.xyz"),
                 "--trust-pickle"]) == 0
    assert "4 structures" in capsys.readouterr().out
    images = ase.io.read(tmp_path / "data.xyz", ":")
    for atoms, row in zip(images, rows):
        assert atoms.get_potential_energy() == pytest.approx(row["energy"])
        np.testing.assert_allclose(atoms.get_forces(), row["forces"], atol=1e-6)
        assert atoms.info["energy_corrected"] == pytest.approx(row["energy_corrected"])
        assert atoms.info["name"] == row["name"]


def test_trust_pickle_in_the_config(tmp_path):
    write_frame(tmp_path / "d.pckl.gzip", emt_rows(2, 6))
    config = {"elements": ["Cu"], "cutoff": 4.5, "output": "p.yaml",
              "data": {"train": "d.pckl.gzip", "trust_pickle": True}}
    loaded = FitConfig.from_dict(config, base_dir=str(tmp_path))
    assert loaded.trust_pickle
    assert len(read_dataset(loaded.train, trust_pickle=loaded.trust_pickle)) == 2


def test_trust_pickle_through_the_library(pacemaker_dir, tmp_path):
    """ace.fit and ace.estimate_fit take the trust as a keyword, for a file, a dict and a
    FitConfig alike, and refuse an untrusted pickle before any work."""
    import ace

    config = {"elements": ["Cu"], "cutoff": CUTOFF, "output": str(tmp_path / "lib.yaml"),
              "data": {"train": str(pacemaker_dir / "train.pckl.gzip")},
              "basis": {"functions": {"number_of_functions_per_element": 8}},
              "fit": {"progress": False}}
    for form in (str(pacemaker_dir / "input.yaml"), config):
        with pytest.raises(ConfigError, match="loading a pickle can run any code"):
            ace.estimate_fit(form)
    notes = []
    estimate = ace.estimate_fit(pacemaker_dir / "input.yaml", trust_pickle=True,
                                log=notes.append)
    assert estimate.n_functions == FUNCTIONS and estimate.n_train == 16
    assert any("ignored backend" in line for line in notes)  # the translation's notes
    assert estimate.nonlinear_seconds is None  # a linear fit
    untrusted = FitConfig.from_dict(config, trust_pickle=True)
    untrusted.trust_pickle = False
    result = ace.fit(untrusted, trust_pickle=True, num_threads=1)
    assert result.potential.n_functions == 8
    assert result.tables["train"]["overall"]["n_structures"] == 16


def test_library_estimates_the_nonlinear_time(xyz_dir):
    import ace

    estimate = ace.estimate_fit(write_config(
        xyz_dir, "nl-estimate.config.yaml",
        fit={"method": "nonlinear", "max_iterations": 10, "restarts": 2, "num_threads": 1}))
    assert 0 < estimate.nonlinear_seconds_per_evaluation
    # 10 iterations x 2 restarts, about 1.2 evaluations each
    assert estimate.nonlinear_seconds == pytest.approx(
        24 * estimate.nonlinear_seconds_per_evaluation)


def test_library_load_names_a_fit_config(xyz_dir):
    import ace

    path = xyz_dir / "input-as-potential.yaml"
    path.write_text(PACEMAKER_INPUT)
    with pytest.raises(ValueError, match="this looks like pacemaker's fit input file, not a "
                                         "potential"):
        ace.load(path)


def test_missing_pandas_is_named(tmp_path, monkeypatch):
    from ace.pacemaker_data import read_dataframe

    path = tmp_path / "d.pckl.gzip"
    path.write_bytes(b"\x1f\x8b")
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ValueError, match=r"needs pandas: pip install 'ace\[pacemaker\]'"):
        read_dataframe(path, trust_pickle=True)


# ---------------------------------------------------------------------- the first hour

def emt_images(n, seed):
    from ase.calculators.singlepoint import SinglePointCalculator

    images = []
    for row in emt_rows(n, seed):
        atoms = row["ase_atoms"]
        atoms.calc = SinglePointCalculator(atoms, energy=row["energy"], forces=row["forces"])
        images.append(atoms)
    return images


SMALL_BASIS = {"functions": {"number_of_functions_per_element": 20,
                             "ALL": {"nradmax_by_orders": [6, 3, 2], "lmax_by_orders": [0, 2, 1]}}}


@pytest.fixture(scope="module")
def xyz_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("first-hour")
    ase.io.write(path / "train.xyz", emt_images(12, 7), format="extxyz")
    return path


def write_config(directory, name, **extra):
    config = {"elements": ["Cu"], "cutoff": 4.5, "data": {"train": "train.xyz"},
              "output": name.replace(".config", ""), "basis": SMALL_BASIS, **extra}
    (directory / name).write_text(yaml.safe_dump(config, sort_keys=False))
    return directory / name


def test_float_spellings_are_numbers(xyz_dir):
    path = xyz_dir / "floats.yaml"
    path.write_text("elements: [Cu]\ncutoff: 45e-1\ndata: {train: train.xyz}\noutput: f.yaml\n"
                    "regularisation: {l2: 1e-6}\nweights: {forces: 1E-2, stress: 2.5e+0}\n"
                    "core_repulsion: {r_in: 2e0, delta_in: 5e-1}\n")
    config = FitConfig.load(path)
    assert config.cutoff == 4.5 and config.loss.l2 == 1e-6
    assert config.loss.forces == 0.01 and config.loss.stress == 2.5
    assert config.core_repulsion == {"r_in": 2.0, "delta_in": 0.5}
    # a dict from another YAML reader with the number as a string is accepted too
    raw = yaml.safe_load(path.read_text())
    assert raw["regularisation"]["l2"] == "1e-6"
    assert FitConfig.from_dict(raw).loss.l2 == 1e-6


@pytest.mark.parametrize("wrong, right", [("cuttoff", "cutoff"),
                                          ("regularization", "regularisation")])
def test_unknown_keys_get_did_you_mean(xyz_dir, capsys, wrong, right):
    path = xyz_dir / f"{wrong}.yaml"
    text = "elements: [Cu]\ncutoff: 4.5\ndata: {train: train.xyz}\noutput: f.yaml\n"
    path.write_text(text.replace("cutoff", wrong) if wrong == "cuttoff"
                    else text + f"{wrong}: {{l2: 1e-6}}\n")
    assert main(["fit", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"unknown key(s) ['{wrong}']; '{wrong}' (did you mean '{right}'?)" in err


def test_nonlinear_fit_prints_progress_with_time_left(xyz_dir, capsys, monkeypatch):
    import ace.fitting.nonlinear.driver as driver
    from ace.fitting.nonlinear.heartbeat import Heartbeat

    # every evaluation beats (the real interval is 10 s)
    monkeypatch.setattr(driver, "Heartbeat", functools.partial(Heartbeat, interval=0.0))
    path = write_config(xyz_dir, "nl.config.yaml",
                        fit={"method": "nonlinear", "max_iterations": 4, "checkpoint_every": 4,
                             "num_threads": 1})
    assert main(["fit", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"nonlinear stage: \S+ s per loss and gradient evaluation on the 12 "
                     r"training structures; 4 iterations x 1 restart\(s\) take at most about "
                     r"\d+ s", out)
    assert main(["fit", str(path)]) == 0
    out = capsys.readouterr().out
    assert "nonlinear: neighbour lists of 11 fit and 1 validation structures" in out
    assert "nonlinear: restart 1/1, step 1/1: preconditioner, then varpro iterations" in out
    assert re.search(r"nonlinear: restart 1/1, step 1/1, iteration ~\d+, loss \S+, \d+ s, "
                     r"at most about \d+ s left", out)


def test_heartbeat_interval_and_estimate():
    from ace.fitting.nonlinear.heartbeat import Heartbeat

    now = [0.0]
    lines = []
    beat = Heartbeat(lines.append, total_iterations=100, interval=10.0, clock=lambda: now[0])
    beat.segment("", 0, 0, 50)
    for _ in range(12):  # 12 evaluations, ~10 iterations, over 24 s
        now[0] += 2.0
        beat.beat(1.0)
    assert len(lines) == 2  # at 10 s and 20 s, not at every evaluation
    assert lines[-1] == "nonlinear: iteration ~8, loss 1.0000e+00, 20 s, at most about 230 s left"


def test_convert_warns_when_reference_energy_is_dropped(tmp_path, capsys):
    from ace.pace import export_pace_yaml
    from conftest import random_potential

    potential = random_potential(("Cu",), seed=3)
    export_pace_yaml(potential, tmp_path / "pace.yaml", e0_to_metadata=True)
    assert main(["convert", str(tmp_path / "pace.yaml"), "-o", str(tmp_path / "back.yaml")]) == 0
    err = capsys.readouterr().err
    assert "has metadata reference_energy" in err
    assert "add --reference-energy to predict total energies" in err
    assert main(["convert", str(tmp_path / "pace.yaml"), "-o", str(tmp_path / "back.yaml"),
                 "--reference-energy"]) == 0
    assert "reference_energy" not in capsys.readouterr().err
    assert ACEPotential.load(tmp_path / "back.yaml").e0 == pytest.approx(potential.e0)


def test_export_error_names_the_flag(tmp_path, capsys):
    from conftest import random_potential

    random_potential(("Cu",), seed=4).save(tmp_path / "p.yaml")
    assert main(["export", str(tmp_path / "p.yaml"), "-o", str(tmp_path / "out.yaml")]) == 1
    err = capsys.readouterr().err
    assert "give --e0-to-metadata to store it as pacemaker's metadata reference_energy" in err
    assert "e0_to_metadata" not in err


def test_help_lines(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert ("info Describe a potential: elements, cutoffs, radial basis, functions per order, "
            "E0, core repulsion, provenance (how it was fitted) and its stored error metrics"
            in out)
    assert "fit Fit an ACE potential (linear, or nonlinear with fit.method: nonlinear)" in out
    for command in ("convert-config", "convert-data", "init"):
        assert f" {command} " in out
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert ("--config-type-key CONFIG_TYPE_KEY info key grouping the structures in the table "
            "(default: 'config_type'; structures without it are 'default')" in out)


def test_info_into_a_closed_pipe_is_quiet(tmp_path):
    from conftest import package_env, random_potential

    random_potential(("Cu",), seed=5).save(tmp_path / "p.yaml")
    process = subprocess.Popen([sys.executable, "-m", "ace.cli", "info", str(tmp_path / "p.yaml"),
                                "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               cwd=tmp_path, env=package_env())
    process.stdout.close()  # `| head -0`: the reader is gone before the first line
    err = process.stderr.read().decode()
    assert process.wait() == 1
    assert "Traceback" not in err and "BrokenPipeError" not in err


def test_provenance_paths_and_condition_format(xyz_dir, tmp_path, capsys):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    ase.io.write(outside / "test.xyz", emt_images(3, 8), format="extxyz")
    path = write_config(xyz_dir, "prov.config.yaml",
                        data={"train": "train.xyz", "test": str(outside / "test.xyz")},
                        fit={"num_threads": 1, "progress": False})
    config = FitConfig.load(path).to_dict()
    assert config["train"] == ["train.xyz"]  # below the config: relative
    assert config["test"] == [str(outside / "test.xyz")]  # elsewhere: absolute, no '../..'
    assert main(["fit", str(path)]) == 0
    capsys.readouterr()
    assert main(["info", str(xyz_dir / "prov.yaml")]) == 0
    out = capsys.readouterr().out
    condition = re.search(r"^  condition: (.*)$", out, re.M).group(1)
    assert re.fullmatch(r"\d(\.\d{1,3})?(e[+-]\d+)?|\d{1,4}(\.\d{1,3})?", condition), condition
    from ace.cli.info import readable
    assert readable(980267.8372971191) == "9.803e+05"


@pytest.mark.parametrize("name", ["ace", "pacemaker"])
def test_fit_config_given_as_potential(xyz_dir, capsys, name):
    if name == "ace":
        path = write_config(xyz_dir, "given.config.yaml")
        kind = "an ace fit config"
    else:
        path = xyz_dir / "input.yaml"
        path.write_text(PACEMAKER_INPUT)
        kind = "pacemaker's fit input file"
    assert main(["evaluate", str(path), str(xyz_dir / "train.xyz")]) == 1
    err = capsys.readouterr().err
    assert f"this looks like {kind}, not a potential; fit it with `ace fit {path}`" in err
    assert "missing key" not in err


def test_demo_reports_the_temperature_it_runs_at(tmp_path, capsys):
    assert main(["demo", "--quick", "--output-dir", str(tmp_path / "demo"),
                 "--num-threads", "1"]) == 0
    out = capsys.readouterr().out
    match = re.search(r"velocities drawn at 1200 K \(from the perfect lattice equipartition "
                      r"halves the kinetic temperature\): mean temperature over the second half "
                      r"(\d+) K \(aim 600 K\)", out)
    assert match, out
    assert 300 < int(match.group(1)) < 900
    assert "final temperature" not in out


def test_demo_directory_is_ignored_by_git():
    with open(os.path.join(ROOT, ".gitignore")) as fh:
        assert "ace-demo/" in fh.read().split()


def test_skipped_mlearn_tests_say_where_the_data_come_from():
    import test_potentials

    reason = test_potentials.MLEARN_MISSING
    assert "materialsvirtuallab/mlearn" in reason and "Zuo et al." in reason
    assert "<Mo|Si>/{train,test}.xyz" in reason and test_potentials.DATA in reason
    for readme in ("README.md", os.path.join("potentials", "README.md")):
        with open(os.path.join(ROOT, readme)) as fh:
            text = fh.read()
        assert "materialsvirtuallab/mlearn" in text and "shared/data/mlearn" in text


def test_init_writes_every_key_with_its_default(tmp_path, capsys):
    from ace.data import DataKeys
    from ace.fitting import config as config_module
    from ace.fitting.nonlinear import NonlinearSettings

    path = tmp_path / "fit.yaml"
    assert main(["init", str(path), "--elements", "Cu", "--cutoff", "4.5"]) == 0
    assert main(["init", str(path)]) == 1
    assert "exists; give --force" in capsys.readouterr().err
    text = path.read_text()
    keys = set(re.findall(r"^\s*#?\s*(\w+):", text, re.M))
    expected = (config_module.TOP_KEYS | config_module.DATA_KEYS | config_module.BASIS_KEYS
                | config_module.WEIGHT_KEYS | config_module.REGULARISATION_KEYS
                | config_module.FIT_KEYS | config_module.NONLINEAR_KEYS
                | set(DataKeys.__dataclass_fields__))
    assert expected <= keys, expected - keys
    written = FitConfig.load(path)
    minimal = FitConfig.from_dict({"elements": ["Cu"], "cutoff": 4.5, "output": "potential.yaml",
                                   "data": {"train": "train.xyz", "test": "test.xyz"}},
                                  base_dir=str(tmp_path))
    assert written.basis_dict(100) == minimal.basis_dict(100)
    for field in ("loss", "keys", "core_repulsion", "num_threads", "chunk_rows", "progress",
                  "trust_pickle", "nonlinear", "train", "test", "output"):
        assert getattr(written, field) == getattr(minimal, field), field
    # the commented nonlinear keys, switched on, are the nonlinear defaults
    nonlinear = re.sub(r"^  # (\w+:)", r"  \1", text.replace("method: linear", "method: nonlinear"),
                       flags=re.M)
    path.write_text(nonlinear)
    assert FitConfig.load(path).nonlinear == NonlinearSettings()
