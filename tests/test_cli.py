"""The ``ace`` command line on tiny generated data: fit (and --dry-run), evaluate, info, demo."""
import json

import ase.io
import numpy as np
import pytest
import yaml
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator

from ace.cli import main
from ace.potential import ACEPotential

SMALL_BASIS = {"functions": {"number_of_functions_per_element": 30,
                             "ALL": {"nradmax_by_orders": [6, 3, 2], "lmax_by_orders": [0, 2, 1]}}}


def emt_images(n, seed):
    rng = np.random.default_rng(seed)
    images = []
    for k in range(n):
        atoms = bulk("Cu", "fcc", a=3.61 * (1 + 0.02 * rng.normal()), cubic=True)
        atoms.rattle(0.1, seed=seed * 100 + k)
        if k % 4 == 3:
            del atoms[0]
        atoms.calc = EMT()
        results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces(),
                   "stress": atoms.get_stress()}
        atoms.calc = SinglePointCalculator(atoms, **results)
        atoms.info["config_type"] = "vacancy" if k % 4 == 3 else "bulk"
        images.append(atoms)
    return images


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli")
    ase.io.write(path / "train.xyz", emt_images(12, 0), format="extxyz")
    ase.io.write(path / "test.xyz", emt_images(4, 1), format="extxyz")
    config = {"elements": ["Cu"], "cutoff": 4.5, "data": {"train": "train.xyz", "test": "test.xyz"},
              "output": "Cu.yaml", "basis": SMALL_BASIS, "fit": {"num_threads": 1}}
    (path / "fit.yaml").write_text(yaml.safe_dump(config))
    return path


def test_fit_dry_run(workdir, capsys):
    assert main(["fit", str(workdir / "fit.yaml"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "basis size: 30 functions" in out and "memory needed by the fit" in out
    assert "order 1" in out and "MiB" in out
    assert not (workdir / "Cu.yaml").exists()


@pytest.fixture(scope="module")
def fitted(workdir):
    assert main(["fit", str(workdir / "fit.yaml")]) == 0
    return workdir / "Cu.yaml"


def test_fit_writes_potential_with_provenance_and_metrics(fitted, workdir):
    potential = ACEPotential.load(fitted)
    assert potential.n_functions == 30
    meta = potential.metadata
    assert meta["fit"]["report"]["n_functions"] == 30
    assert meta["fit"]["config"]["cutoff"] == 4.5
    # file names are recorded relative to the config, not as this machine's absolute paths
    assert meta["fit"]["config"]["train"] == ["train.xyz"]
    assert meta["fit"]["config"]["output"] == "Cu.yaml"
    assert set(meta["metrics"]) == {"train", "test"}
    metrics = json.loads((workdir / "Cu.metrics.json").read_text())
    assert metrics["test"]["overall"]["n_structures"] == 4
    assert metrics["train"]["overall"]["forces_rmse"] < 0.1  # eV/Å, EMT is smooth
    assert set(metrics["train"]["by_config_type"]) == {"bulk", "vacancy"}


def test_fit_prints_tables(workdir, capsys, fitted):
    # fitting again prints both tables (the fixture's output was captured elsewhere)
    assert main(["fit", str(workdir / "fit.yaml")]) == 0
    out = capsys.readouterr().out
    assert "train errors" in out and "test errors" in out and "meV/atom" in out
    assert "rank" in out and "condition number" in out


def test_evaluate_json_and_table(fitted, workdir, capsys):
    assert main(["evaluate", str(fitted), str(workdir / "test.xyz"), "--json",
                 "--num-threads", "1"]) == 0
    table = json.loads(capsys.readouterr().out)
    stored = json.loads((workdir / "Cu.metrics.json").read_text())["test"]
    assert table["overall"]["energy_mae"] == pytest.approx(stored["overall"]["energy_mae"])
    assert main(["evaluate", str(fitted), str(workdir / "*.xyz")]) == 0
    out = capsys.readouterr().out
    assert "16 structures" in out and "overall" in out


def test_info(fitted, capsys):
    assert main(["info", str(fitted)]) == 0
    out = capsys.readouterr().out
    assert "30 functions" in out and "Cu" in out and "order 1" in out
    assert "provenance" in out and "test errors (stored)" in out
    assert main(["info", str(fitted), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_functions"] == 30 and summary["elements"] == ["Cu"]


def test_errors_are_one_line(workdir, tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"elements": ["Cu"], "cutoff": 4.5, "output": "x.yaml"}))
    assert main(["fit", str(bad)]) == 1
    assert "missing required key 'data'" in capsys.readouterr().err
    bad.write_text(yaml.safe_dump({"elements": ["Cu"], "cutoff": 4.5, "output": "x.yaml",
                                   "data": {"train": str(workdir / "train.xyz")},
                                   "weigths": {}}))
    assert main(["fit", str(bad)]) == 1
    assert "unknown key(s) ['weigths']" in capsys.readouterr().err
    bad.write_text(yaml.safe_dump({"elements": ["Ni"], "cutoff": 4.5, "output": "x.yaml",
                                   "data": {"train": str(workdir / "train.xyz")}}))
    assert main(["fit", str(bad)]) == 1
    assert "train.xyz:0: element(s) ['Cu'] are not in the basis" in capsys.readouterr().err
    assert main(["evaluate", str(workdir / "fit.yaml"), str(workdir / "test.xyz")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ace evaluate: error: ") and "fit.yaml" in err and err.count("\n") == 1


@pytest.mark.parametrize("command", ["fit", "evaluate", "info", "demo"])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert "usage: ace " + command in capsys.readouterr().out


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "fit" in capsys.readouterr().out


def test_demo_quick(tmp_path, capsys):
    assert main(["demo", "--quick", "--output-dir", str(tmp_path / "demo"), "--num-threads", "2"]) == 0
    out = capsys.readouterr().out
    assert "train errors" in out and "test errors" in out
    assert "total energy drift" in out and "against EMT" in out
    assert (tmp_path / "demo" / "Cu.yaml").exists() and (tmp_path / "demo" / "fit.yaml").exists()
    config = yaml.safe_load((tmp_path / "demo" / "fit.yaml").read_text())
    assert set(config) == {"elements", "cutoff", "data", "output"}  # the defaults do the rest


def nonlinear_config(workdir, name, **fit):
    config = {"elements": ["Cu"], "cutoff": 4.5,
              "data": {"train": "train.xyz", "test": "test.xyz"}, "output": f"{name}.yaml",
              "basis": SMALL_BASIS,
              "fit": {"num_threads": 1, "method": "nonlinear", "max_iterations": 6,
                      "checkpoint_every": 3, **fit}}
    path = workdir / f"{name}.config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_fit_nonlinear_writes_a_two_density_potential_and_resumes(workdir, capsys):
    config = nonlinear_config(workdir, "CuNL")
    assert main(["fit", str(config)]) == 0
    out = capsys.readouterr().out
    assert "linear fit took" in out and "nonlinear fit took" in out and "test errors" in out
    potential = ACEPotential.load(workdir / "CuNL.yaml")
    assert potential.embeddings[0].ndensity == 2
    assert np.any(potential.coefficients[:, 1] != 0)  # the second density was fitted
    report = potential.metadata["fit"]["report"]
    assert report["method"] == "nonlinear" and report["linear"]["method"]
    assert (workdir / "CuNL.checkpoint.json").exists()
    # resuming a finished fit reproduces it, from the linear fit kept in the checkpoint (not
    # a new one, which another thread count need not reproduce bit for bit)
    assert main(["fit", str(config), "--resume", "--num-threads", "2"]) == 0
    out = capsys.readouterr().out
    assert "the linear fit is the checkpoint's" in out
    assert not any(line.startswith("linear fit took") for line in out.splitlines())
    again = ACEPotential.load(workdir / "CuNL.yaml")
    np.testing.assert_array_equal(again.coefficients, potential.coefficients)
    # a larger max_iterations continues the finished fit from where it stopped
    longer = yaml.safe_load(config.read_text())
    longer["fit"]["max_iterations"] = 9
    config.write_text(yaml.safe_dump(longer))
    assert main(["fit", str(config), "--resume"]) == 0
    history = ACEPotential.load(workdir / "CuNL.yaml").metadata["fit"]["report"]["history"]
    assert [h["iteration"] for h in history] == [3, 6, 9]
    # a changed config is not resumed from the old checkpoint
    changed = yaml.safe_load(config.read_text())
    changed["regularisation"] = {"l2": 1e-3}
    config.write_text(yaml.safe_dump(changed))
    assert main(["fit", str(config), "--resume"]) != 0
    assert "config has changed" in capsys.readouterr().err


def test_fit_nonlinear_config_errors(workdir, capsys):
    assert main(["fit", str(nonlinear_config(workdir, "bad", optimizer="adam"))]) != 0
    assert "optimizer" in capsys.readouterr().err
    assert main(["fit", str(nonlinear_config(workdir, "bad2", max_iteration=3))]) != 0
    assert "max_iteration" in capsys.readouterr().err
    assert main(["fit", str(workdir / "fit.yaml"), "--resume"]) != 0
    assert "--resume" in capsys.readouterr().err
    assert main(["fit", str(nonlinear_config(workdir, "fresh")), "--resume"]) != 0
    assert "no checkpoint" in capsys.readouterr().err


def test_python_dash_m_runs_the_cli(tmp_path):
    import subprocess
    import sys

    from conftest import package_env

    done = subprocess.run([sys.executable, "-m", "ace.cli", "--version"], capture_output=True,
                          text=True, env=package_env(), cwd=tmp_path, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("ace ")
