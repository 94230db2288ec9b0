"""The library API (ace.fit, estimate_fit, evaluate, load, export, describe) on small EMT data:
the same results and files as the ``ace`` command, resume, every input form, the layering of
the modules behind it, and every Python example of README.md run as written."""
import ast
import json
import os
import re
import subprocess
import sys

import ase.io
import numpy as np
import pytest
import yaml
from ase.calculators.singlepoint import SinglePointCalculator

import ace
from ace.calculator import ACECalculator
from ace.cli import main
from ace.data import DataError, read_dataset
from ace.fitting.config import ConfigError, FitConfig
from ace.potential import ACEPotential
from test_cli import SMALL_BASIS, emt_images

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    path = tmp_path_factory.mktemp("api")
    ase.io.write(path / "train.xyz", emt_images(12, 0), format="extxyz")
    ase.io.write(path / "test.xyz", emt_images(4, 1), format="extxyz")
    return path


def linear_config(workdir, name="Cu"):
    """A small linear fit config (a dict; absolute paths)."""
    return {"elements": ["Cu"], "cutoff": 4.5,
            "data": {"train": str(workdir / "train.xyz"), "test": str(workdir / "test.xyz")},
            "output": str(workdir / f"{name}.yaml"), "basis": SMALL_BASIS,
            "fit": {"num_threads": 1, "progress": False}}


@pytest.fixture(scope="module")
def fitted(workdir):
    return ace.fit(linear_config(workdir))


def without_timings(report):
    """The fit report without its wall-clock times (which differ between two runs)."""
    return {k: v for k, v in report.items() if k not in ("timings", "seconds")}


def test_fit_equals_what_the_command_writes(workdir):
    path = workdir / "cli.config.yaml"
    path.write_text(yaml.safe_dump(linear_config(workdir, "same")))
    assert main(["fit", str(path), "--no-progress"]) == 0
    written = ACEPotential.load(workdir / "same.yaml")
    metrics = json.loads((workdir / "same.metrics.json").read_text())

    messages = []
    result = ace.fit(path, log=messages.append)
    np.testing.assert_array_equal(result.potential.coefficients, written.coefficients)
    np.testing.assert_array_equal(result.potential.e0, written.e0)
    assert result.tables == metrics
    assert without_timings(result.report) == without_timings(written.metadata["fit"]["report"])
    assert result.paths == [str(workdir / name) for name in (
        "same.yaml", "same.metrics.json", "same.active.yaml", "same.validation")]
    assert os.path.exists(result.active_set) and os.path.isdir(result.validation)
    # a linear fit carries its Bayesian committee (32 members by default) and the active set
    # of its extrapolation grade belongs to it
    assert result.potential.committee.coefficients.shape == (32, result.potential.n_functions)
    from ace.calculator import ACECalculator
    from ace.uncertainty import ActiveSet
    atoms = ace.api.dataset(str(workdir / "train.xyz")).atoms(0)
    atoms.calc = ACECalculator(result.potential, active_set=ActiveSet.load(result.active_set),
                               committee=True, num_threads=1)
    atoms.get_potential_energy()
    assert atoms.calc.results["max_gamma"] <= 1.001  # a training structure (MaxVol tolerance)
    assert atoms.calc.results["energy_std"] > 0
    assert result.checkpoint is None
    # the API wrote the same files again, with the tables it returned
    assert json.loads((workdir / "same.metrics.json").read_text()) == result.tables
    assert ACEPotential.load(workdir / "same.yaml").metadata["metrics"] == result.tables
    # its messages went to `log`, not to stdout
    assert any(m.startswith("basis: 30 functions") for m in messages)
    assert any("linear fit took" in m for m in messages)


def test_fit_config_forms_and_overrides(workdir, fitted):
    config = FitConfig.from_dict(linear_config(workdir, "object"))
    result = ace.fit(config, num_threads=2)
    assert config.num_threads == 1  # the caller's config is not changed by the override
    assert result.potential.metadata["fit"]["config"]["num_threads"] == 2
    # thread counts change the sums' order only: the same fit to round-off
    np.testing.assert_allclose(result.potential.coefficients, fitted.potential.coefficients,
                               rtol=1e-6, atol=1e-9)
    with pytest.raises(ConfigError, match="missing required key 'data'"):
        ace.fit({"elements": ["Cu"], "cutoff": 4.5, "output": "x.yaml"})
    with pytest.raises(TypeError, match="config"):
        ace.fit(42)
    with pytest.raises(ConfigError, match="nonlinear only"):
        ace.fit(linear_config(workdir, "linear"), resume=True)
    assert not (workdir / "linear.yaml").exists()  # refused before reading or fitting


def test_fit_result_holds_the_report_and_tables(fitted, workdir):
    assert fitted.potential.n_functions == 30
    assert set(fitted.tables) == {"train", "test"}
    assert fitted.tables["test"]["overall"]["n_structures"] == 4
    assert fitted.tables["train"]["overall"]["forces_rmse"] < 0.1  # eV/Å, EMT is smooth
    assert fitted.report["n_functions"] == 30 and "weights" in fitted.report
    assert "FitResult(" in repr(fitted) and "splits ['train', 'test']" in repr(fitted)


def test_estimate_fit(workdir):
    config = linear_config(workdir, "estimate")
    estimate = ace.estimate_fit(config)
    assert estimate.n_functions == 30 and estimate.n_train == 12 and estimate.n_test == 4
    assert sum(estimate.counts["Cu"].values()) == 30 and 1 in estimate.counts["Cu"]
    assert estimate.memory["total"] == sum(v for k, v in estimate.memory.items() if k != "total")
    assert not (workdir / "estimate.yaml").exists()


def test_evaluate_every_input_form(fitted, workdir):
    # the fit evaluated its tables on one thread; the same computation gives the same bits (the
    # force scatter sums per-thread buffers, so another thread count agrees to round-off)
    potential, stored = fitted.potential, fitted.tables["test"]
    by_path = ace.evaluate(fitted.output, workdir / "test.xyz", num_threads=1)
    assert by_path == stored
    images = ase.io.read(workdir / "test.xyz", ":")
    assert ace.evaluate(potential, images, num_threads=1) == stored
    assert ace.evaluate(potential, read_dataset(str(workdir / "test.xyz")), num_threads=1) == stored
    assert ace.evaluate(potential, [str(workdir / "test.xyz")], num_threads=2)["overall"] == \
        pytest.approx(stored["overall"], rel=1e-9)
    one = ace.evaluate(potential, images[0])
    assert one["overall"]["n_structures"] == 1
    both = ace.evaluate(potential, str(workdir / "*.xyz"))
    assert both["overall"]["n_structures"] == 16


def test_evaluate_measures_the_errors(fitted, workdir):
    """Labels made by the potential itself give zero error; labels shifted by a known amount
    give that amount."""
    images = ase.io.read(workdir / "test.xyz", ":")
    labelled = []
    for atoms, shift in zip(images, (0.01, -0.02, 0.03, -0.04)):
        atoms = atoms.copy()
        atoms.calc = ACECalculator(fitted.potential, num_threads=1)
        results = {"energy": atoms.get_potential_energy() + shift * len(atoms),
                   "forces": atoms.get_forces() + 0.5, "stress": atoms.get_stress()}
        atoms.calc = SinglePointCalculator(atoms, **results)
        labelled.append(atoms)
    row = ace.evaluate(fitted.potential, labelled)["overall"]
    assert row["energy_mae"] == pytest.approx(1000 * 0.025, rel=1e-9)  # meV/atom
    assert row["forces_mae"] == pytest.approx(0.5, rel=1e-9)
    assert row["stress_mae"] == pytest.approx(0.0, abs=1e-9)


def test_evaluate_errors_name_the_input(fitted, workdir, tmp_path):
    from ase.build import bulk
    from ase.calculators.emt import EMT

    nickel = bulk("Ni", "fcc", a=3.52, cubic=True)
    nickel.calc = EMT()
    nickel.get_forces()
    with pytest.raises(DataError, match=r"element\(s\) \['Ni'\] are not in the basis"):
        ace.evaluate(fitted.potential, [nickel])
    with pytest.raises(TypeError, match="data"):
        ace.evaluate(fitted.potential, 3.0)
    not_a_potential = tmp_path / "nothing.yaml"
    not_a_potential.write_text("a: 1\n")
    with pytest.raises(ValueError, match="nothing.yaml"):
        ace.evaluate(not_a_potential, workdir / "test.xyz")


def test_load_save_export_round_trips(fitted, workdir, tmp_path):
    """Every format written loads back to a potential with the same energies and forces."""
    potential = ace.load(fitted.output)
    np.testing.assert_array_equal(potential.coefficients, fitted.potential.coefficients)
    assert ace.load(potential) is potential
    atoms = ase.io.read(workdir / "test.xyz", "0")
    atoms.calc = ACECalculator(potential, num_threads=1)
    energy, forces = atoms.get_potential_energy(), atoms.get_forces()

    potential.save(tmp_path / "copy.yaml")
    assert ace.export(potential, tmp_path / "p.yace") == "yace"
    with pytest.raises(ValueError, match="E0"):  # pace-yaml cannot add E0 to energies
        ace.export(potential, tmp_path / "p.yaml")
    assert ace.export(fitted.output, tmp_path / "p.yaml", e0_to_metadata=True) == "pace-yaml"
    assert ace.export(potential, tmp_path / "ours.txt", format="ace") == "ace"
    with pytest.raises(ValueError, match="cannot tell the format"):
        ace.export(potential, tmp_path / "p.txt")
    with pytest.raises(ValueError, match="unknown format"):
        ace.export(potential, tmp_path / "p.yace", format="lammps")

    for name, kwargs, tolerance in (("copy.yaml", {}, 0.0), ("ours.txt", {}, 0.0),
                                    ("p.yace", {}, 1e-6),
                                    ("p.yaml", {"reference_energy": True}, 1e-6)):
        other = atoms.copy()
        other.calc = ACECalculator(ace.load(tmp_path / name, **kwargs), num_threads=1)
        assert other.get_potential_energy() == pytest.approx(energy, abs=tolerance * len(atoms))
        np.testing.assert_allclose(other.get_forces(), forces, atol=max(tolerance, 1e-12))
    with pytest.raises(ValueError, match="reference_energy"):
        ace.load(tmp_path / "copy.yaml", reference_energy=True)


def test_describe(fitted, workdir):
    summary = ace.describe(fitted.output)
    assert summary == ace.describe(fitted.potential)
    assert summary["n_functions"] == 30 and summary["elements"] == ["Cu"]
    assert summary["provenance"]["train"] == [str(workdir / "train.xyz")]
    assert summary["metrics"] == fitted.tables
    json.dumps(summary)  # JSON-friendly as promised


def nonlinear_config(workdir, name, max_iterations):
    config = linear_config(workdir, name)
    config["fit"].update(method="nonlinear", max_iterations=max_iterations, checkpoint_every=3)
    return config


def test_resume_through_the_api_ends_where_the_uninterrupted_fit_does(workdir):
    """A fit stopped after 3 iterations and resumed to 6 gives, bit for bit, the fit that ran
    6 iterations at once: the checkpoint keeps the optimiser's state and the linear fit."""
    straight = ace.fit(nonlinear_config(workdir, "straight", 6))
    stopped = ace.fit(nonlinear_config(workdir, "resumed", 3))
    assert stopped.checkpoint == str(workdir / "resumed.checkpoint.json")
    assert os.path.exists(stopped.checkpoint) and stopped.checkpoint in stopped.paths
    messages = []
    resumed = ace.fit(nonlinear_config(workdir, "resumed", 6), resume=True,
                      log=messages.append)
    assert any("the linear fit is the checkpoint's" in m for m in messages)
    assert [h["iteration"] for h in resumed.report["history"]] == [3, 6]
    np.testing.assert_array_equal(resumed.potential.coefficients, straight.potential.coefficients)
    for pair, bond in straight.potential.bonds.items():
        np.testing.assert_array_equal(resumed.potential.bonds[pair].crad, bond.crad)
    assert resumed.tables == straight.tables
    # the best potential so far, written as the fit went, is the result
    np.testing.assert_array_equal(ACEPotential.load(resumed.output).coefficients,
                                  resumed.potential.coefficients)
    changed = nonlinear_config(workdir, "resumed", 6)
    changed["regularisation"] = {"l2": 1e-3}
    with pytest.raises(ConfigError, match="config has changed"):
        ace.fit(changed, resume=True)


def test_import_ace_is_cheap_and_the_api_is_lazy(tmp_path):
    code = ("import sys, ace; heavy = [m for m in ('numpy', 'ace.api', 'ace.cli') "
            "if m in sys.modules]; import ace.api; "
            "print(heavy, ace.fit is ace.api.fit, ace.load is ace.api.load, "
            "sorted(set(ace.__all__) <= set(dir(ace)) for _ in [0]))")
    from conftest import package_env
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=package_env(), cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[]", "True", "True", "[True]"]
    with pytest.raises(AttributeError, match="no attribute 'fitt'"):
        ace.fitt


# ------------------------------------------------------------------ layering

LAYERS = {"ace.io": 7, "ace.fitting.workflow": 10, "ace.api": 12}
ABOVE = {7: ("ace.calculator", "ace.data", "ace.fitting", "ace.validation", "ace.api", "ace.cli"),
         10: ("ace.validation", "ace.api", "ace.cli"), 12: ("ace.cli",)}


def imported_modules(path):
    """Absolute module names imported anywhere in the file (top level or in functions)."""
    tree = ast.parse(open(path).read())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_nothing_outside_the_cli_imports_it():
    sources = [os.path.join(d, f) for top in ("ace", "potentials", "benchmarks")
               for d, _, files in os.walk(os.path.join(ROOT, top)) for f in files
               if f.endswith(".py")]
    offenders = [os.path.relpath(p, ROOT) for p in sources
                 if os.sep + "cli" + os.sep not in p
                 and any(n == "ace.cli" or n.startswith("ace.cli.") for n in imported_modules(p))]
    assert offenders == []


@pytest.mark.parametrize("module", sorted(LAYERS))
def test_api_modules_import_only_from_below(module):
    path = os.path.join(ROOT, *module.split(".")) + ".py"
    above = ABOVE[LAYERS[module]]
    bad = sorted(n for n in imported_modules(path)
                 if any(n == a or n.startswith(a + ".") for a in above))
    assert bad == []


# ------------------------------------------------------------------ README

def readme_python_blocks():
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    blocks = []
    for match in re.finditer(r"^```python\n(.*?)^```", text, flags=re.S | re.M):
        line = text.count("\n", 0, match.start()) + 2
        blocks.append((line, match.group(1)))
    return blocks


@pytest.fixture(scope="module")
def readme_dir(tmp_path_factory):
    """A directory with what the README's examples start from: the shipped potentials and the
    files `ace demo` writes (its data and config; the examples fit the potential)."""
    from ace.cli.demo import SIZES, write_data

    path = tmp_path_factory.mktemp("readme")
    os.symlink(os.path.join(ROOT, "potentials"), path / "potentials")
    os.makedirs(path / "ace-demo")
    write_data(str(path / "ace-demo"), SIZES["quick"], seed=0)
    return path


def test_readme_has_an_example_of_every_api_function():
    code = "\n".join(block for _, block in readme_python_blocks())
    for name in ("fit", "estimate_fit", "evaluate", "load", "export", "describe"):
        assert f"ace.{name}(" in code, name
    assert ".save(" in code


def test_readme_python_examples_run(readme_dir, monkeypatch, capsys):
    """Every ```python block of README.md, in order, each in a fresh namespace, in a directory
    holding the files the README says it starts from."""
    monkeypatch.chdir(readme_dir)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    blocks = readme_python_blocks()
    assert len(blocks) >= 4
    for line, code in blocks:
        try:
            exec(compile(code, f"README.md:{line}", "exec"), {"__name__": "__readme__"})
        except Exception as exc:  # name the block that failed
            raise AssertionError(f"README.md python block at line {line} failed: "
                                 f"{type(exc).__name__}: {exc}") from exc
    out = capsys.readouterr().out
    assert "functions," in out and "MiB" in out  # estimate_fit's example printed
    for name in ("ace-demo/Cu.yaml", "Cu-nonlinear.yaml", "Cu.yace", "Cu-pace.yaml",
                 "Cu-copy.yaml", "potential.yaml"):
        assert (readme_dir / name).exists(), name
