"""Bad inputs, as an attacker or a careless user gives them (issue 18): each is refused quickly
with an error of the right type whose message names the problem (file, field, structure).

One test per defect of the issue, plus the bad inputs that were already handled, so they stay
handled. The fuzz test of the loaders is in test_fuzz_loaders.py.
"""
import json
import os
import re
import time

import ase.io
import numpy as np
import pytest
import yaml
from ase.build import bulk
from ase.calculators.emt import EMT
from ase.calculators.singlepoint import SinglePointCalculator
from conftest import random_potential

from ace.calculator import ACECalculator, load_potential
from ace.cli import main
from ace.evaluator import Evaluator, Structure
from ace.fitting import sanity
from ace.fitting.config import ConfigError, FitConfig, apply_core_repulsion
from ace.fitting.metrics import to_json
from ace.limits import MAX_CUTOFF, MAX_LMAX
from ace.neighbours import build_neighbour_list
from ace.pace import PaceFormatError, export_yace, load_pace
from ace.potential import CHECKSUM_PREFIX, ACEPotential, PotentialFileError, _sha256

FAST = 1.0  # s: every refusal here must come well within this


@pytest.fixture(scope="module")
def potential():
    return random_potential(["Cu"], orders=2, seed=1)


def write_ace(path, data):
    """An ace potential file of ``data`` with a valid checksum (as an attacker would write)."""
    body = yaml.safe_dump(data, sort_keys=False)
    path.write_text(f"{CHECKSUM_PREFIX}{_sha256(body)}\n{body}")
    return path


def refused(error, match, call, *args, **kwargs):
    """Assert ``call`` raises ``error`` matching ``match`` within FAST seconds."""
    start = time.perf_counter()
    with pytest.raises(error, match=match) as info:
        call(*args, **kwargs)
    assert time.perf_counter() - start < FAST
    return info.value


# ------------------------------------------------------------------ 4. resource bombs in files

@pytest.mark.parametrize("field, value, words", [
    ("lmax", 3000, "lmax = 3000 is beyond the limit"),
    ("nradbase", 10 ** 12, "nradbase = 1000000000000 is beyond the limit"),
    ("nradmax", 10 ** 9, "nradmax = 1000000000 is beyond the limit"),
])
def test_bond_sizes_beyond_the_limits_are_refused(potential, tmp_path, field, value, words):
    data = potential.to_dict()
    data["bonds"][0][field] = value
    path = write_ace(tmp_path / "bomb.yaml", data)
    error = refused(PotentialFileError, words, ACEPotential.load, path)
    assert str(path) in str(error) and "Cu" in str(error)


def test_save_refuses_to_build_a_potential_beyond_the_limits(potential):
    bond = potential.bonds[(0, 0)]
    import dataclasses
    big = dataclasses.replace(bond, lmax=MAX_LMAX + 1,
                              crad=np.zeros((bond.nradmax, MAX_LMAX + 2, bond.nradbase)))
    with pytest.raises(PotentialFileError, match="lmax = 21 is beyond the limit 20"):
        ACEPotential(potential.elements, {(0, 0): big}, potential.embeddings,
                     potential.functions, potential.coefficients)


@pytest.mark.parametrize("rcut, words", [(1e6, "rcut = 1e\\+06 Å is beyond the limit 25 Å"),
                                         (1e308, "rcut = 1e\\+308 Å is beyond the limit"),
                                         (-4.5, "rcut must be positive")])
def test_huge_cutoff_in_a_file_is_refused(potential, tmp_path, rcut, words):
    data = potential.to_dict()
    data["bonds"][0]["rcut"] = rcut
    refused(PotentialFileError, words, ACEPotential.load, write_ace(tmp_path / "p.yaml", data))


def billion_laughs(levels=9, width=10):
    """YAML whose last anchor expands to width**levels numbers."""
    lines = ["a0: &a0 [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]"]
    for k in range(1, levels):
        lines.append(f"a{k}: &a{k} [" + ", ".join([f"*a{k - 1}"] * width) + "]")
    return "\n".join(lines) + "\n", f"*a{levels - 1}"


def test_alias_bomb_in_an_ace_file_fails_fast(potential, tmp_path):
    text = yaml.safe_dump(potential.to_dict(), sort_keys=False)
    bomb, alias = billion_laughs()
    body = bomb + text.replace("crad:", f"crad: {alias}\n  old_crad:", 1)
    path = tmp_path / "laughs.yaml"
    path.write_text(f"{CHECKSUM_PREFIX}{_sha256(body)}\n{body}")
    refused(PotentialFileError, f"{path}: YAML aliases expand the document", ACEPotential.load,
            path)


def edited_yace(potential, tmp_path, pattern, replacement, prefix=""):
    """A .yace of ``potential`` with the first match of ``pattern`` replaced."""
    export_yace(potential, tmp_path / "p.yace")
    text, n = re.subn(pattern, replacement, (tmp_path / "p.yace").read_text(), count=1)
    assert n == 1
    path = tmp_path / "edited.yace"
    path.write_text(prefix + text)
    return path


def test_alias_bomb_in_a_yace_fails_fast_without_checksum(potential, tmp_path):
    bomb, alias = billion_laughs()
    path = edited_yace(potential, tmp_path, r"radcoefficients: \[\[\[.*?\]\]\]",
                       f"radcoefficients: {alias}", prefix=bomb)
    refused(PaceFormatError, f"{path}: YAML aliases expand the document", load_pace, path)


def test_recursive_alias_is_refused(tmp_path):
    path = tmp_path / "loop.yace"
    path.write_text("elements: &a [Cu, *a]\n")
    refused(PaceFormatError, "refers to the node that contains it", load_pace, path)


def test_device_path_is_refused(tmp_path):
    refused(PotentialFileError, "/dev/zero: not a regular file", load_potential, "/dev/zero")
    refused(PotentialFileError, "is a directory|not a regular file", load_potential, tmp_path)


def test_yace_bond_sizes_are_bounded(potential, tmp_path):
    path = edited_yace(potential, tmp_path, r"nradbasemax: \d+", "nradbasemax: 100000")
    refused(PaceFormatError, r"bonds\[0, 0\]: nradbase = 100000 is beyond the limit 100",
            load_pace, path)
    path = edited_yace(potential, tmp_path, r"nradbasemax: \d+", "nradbasemax: 1000000000000")
    refused(PaceFormatError, r"bonds\[0, 0\]: nradbasemax: integer 1000000000000 is out of "
                             "range", load_pace, path)


def test_fit_config_cutoff_beyond_the_limit_is_refused(tmp_path):
    raw = {"elements": ["Cu"], "cutoff": 1000, "data": {"train": "x.xyz"}, "output": "o.yaml"}
    refused(ConfigError, f"cutoff = 1000 Å is beyond the limit {MAX_CUTOFF:g} Å",
            FitConfig.from_dict, raw)


def test_fit_config_basis_sizes_are_bounded():
    raw = {"elements": ["Cu"], "cutoff": 5, "data": {"train": "x.xyz"}, "output": "o.yaml",
           "basis": {"functions": {"ALL": {"nradmax_by_orders": [10 ** 9, 2],
                                           "lmax_by_orders": [0, 2]}}}}
    refused(ConfigError, r"nradmax_by_orders\[0\] = 1000000000 is beyond the limit",
            FitConfig.from_dict, raw)


# ------------------------------------------------------------------ 5. nearly singular cells

@pytest.mark.parametrize("shear", [1e-3, 1e-6])
def test_nearly_singular_cell_is_refused_naming_the_height(shear):
    cell = [[3.16, 0, 0], [3.16, shear, 0], [0, 0, 3.16]]
    positions = [[0, 0, 0], [1.58, shear / 2, 1.58]]
    refused(ValueError, "the cell is too thin for the cutoff 5 Å: its shortest height is",
            build_neighbour_list, positions, cell, True, 5.0)


def test_ordinary_small_cell_still_works():
    atoms = bulk("Cu", "fcc", a=3.6)  # primitive cell, heights 2.1 Å, cutoff 8 Å
    nl = build_neighbour_list(atoms.positions, atoms.cell.array, True, 8.0)
    assert len(nl) > 100


# ------------------------------------------------------------------ 6. calculator parameters

def cu_atoms():
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat(2)
    atoms.rattle(0.05, seed=0)
    return atoms


@pytest.mark.parametrize("skin", [-1, float("nan"), float("inf"), "wide"])
def test_bad_skin_is_refused(potential, skin):
    refused(ValueError, "skin must be a", ACECalculator, potential, skin=skin)


def test_bad_skin_set_later_is_refused(potential):
    atoms = cu_atoms()
    atoms.calc = ACECalculator(potential, num_threads=1)
    atoms.calc.set(skin=-1.0)
    refused(ValueError, "skin must be a finite number >= 0", atoms.get_potential_energy)


def test_zero_skin_gives_the_energy_of_the_default_skin(potential):
    atoms = cu_atoms()
    energies = []
    for skin in (0.0, 0.5):
        atoms.calc = ACECalculator(potential, num_threads=1, skin=skin)
        energies.append(atoms.get_potential_energy())
    assert energies[0] == pytest.approx(energies[1], rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("threads, words", [(2 ** 31, "more than 8 per core"),
                                            (10 ** 6, "more than 8 per core"),
                                            (0, "must not be 0"), (1.5, "whole number")])
def test_bad_thread_counts_are_refused(potential, threads, words):
    refused(ValueError, words, ACECalculator, potential, num_threads=threads)


def test_nan_position_after_a_first_call_is_refused(potential):
    atoms = cu_atoms()
    atoms.calc = ACECalculator(potential, num_threads=1)
    atoms.get_potential_energy()
    positions = atoms.positions.copy()
    positions[3, 1] = np.nan
    atoms.positions = positions
    refused(ValueError, r"positions of atoms \[3\] are not finite", atoms.get_potential_energy)


def test_changing_the_potential_after_building_a_calculator_changes_nothing(potential):
    pot = potential.copy()
    atoms = cu_atoms()
    atoms.calc = ACECalculator(pot, num_threads=1)
    before = atoms.get_potential_energy()
    pot.e0[:] += 1.0
    pot.coefficients *= 2.0
    atoms.calc.reset()
    assert atoms.get_potential_energy() == before
    fresh = cu_atoms()
    fresh.calc = ACECalculator(pot, num_threads=1)  # a new calculator sees the change
    assert fresh.get_potential_energy() != pytest.approx(before)


def test_unknown_element_is_refused(potential):
    atoms = cu_atoms()
    atoms[0].symbol = "Mo"
    atoms.calc = ACECalculator(potential, num_threads=1)
    refused(ValueError, r"element\(s\) \['Mo'\] not in the potential", atoms.get_potential_energy)


def test_coincident_atoms_are_refused(potential):
    atoms = cu_atoms()
    atoms.positions[1] = atoms.positions[0]
    atoms.calc = ACECalculator(potential, num_threads=1)
    refused(ValueError, "are at the same position", atoms.get_potential_energy)


# ------------------------------------------------------------------ 7. unclean exceptions

def test_non_utf8_bytes_name_the_file(potential, tmp_path):
    path = tmp_path / "p.yaml"
    potential.save(path)
    raw = bytearray(path.read_bytes())
    raw[200] = 0xFF
    path.write_bytes(bytes(raw))
    error = refused(PotentialFileError, "not UTF-8 text", load_potential, path)
    assert str(path) in str(error) and "byte 200" in str(error)
    yace = tmp_path / "p.yace"
    export_yace(potential, yace)
    yace.write_bytes(yace.read_bytes()[:50] + b"\xfe\xff" + yace.read_bytes()[50:])
    refused(PaceFormatError, f"{yace}: not UTF-8 text", load_potential, yace)


@pytest.mark.parametrize("pattern, value, field", [
    (r"\bnradmax: \d+", "nradmax: 1" + "0" * 400, "nradmax"),
    (r"ms_combs: \[0, 0, 1, -1\]", "ms_combs: [0, 0, 1" + "0" * 400 + ", -1]", "ms_combs"),
    (r"\blmax: \d+", "lmax: 1e400", "lmax"),
    (r"ctildes: \[", "ctildes: [1e400, ", "ctildes")])
def test_huge_numbers_in_a_yace_name_the_field(potential, tmp_path, pattern, value, field):
    path = edited_yace(potential, tmp_path, pattern, value)
    refused(PaceFormatError, f"{path}: .*{field}", load_pace, path)


def test_ace_file_without_checksum_and_format_lines_says_so(potential, tmp_path):
    data = potential.to_dict()
    data.pop("format")
    path = tmp_path / "stripped.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    refused(PotentialFileError, f"{path}: an ace potential file without its first line",
            load_potential, path)


def test_truncated_and_tampered_files_are_still_caught(potential, tmp_path):
    path = tmp_path / "p.yaml"
    potential.save(path)
    text = path.read_text()
    path.write_text(text[:len(text) // 2])
    refused(PotentialFileError, "checksum mismatch", load_potential, path)
    path.write_text(text.replace("lmax: ", "lmax: 1", 1))
    refused(PotentialFileError, "checksum mismatch", load_potential, path)


def test_missing_file_names_it(tmp_path):
    refused((PotentialFileError, OSError), "no_such.yaml", load_potential,
            tmp_path / "no_such.yaml")


# ------------------------------------------------------------------ 8. non-finite sums

def test_total_energy_overflow_is_refused(potential, tmp_path):
    data = potential.to_dict()
    data["e0"] = {"Cu": 1e99}
    pot = ACEPotential.from_dict(data)
    pot.e0[:] = 1e308  # past the file limit: the guard of the sum is what is tested
    structure = Structure.from_atoms(pot, cu_atoms())
    refused(FloatingPointError, "the total energy or the stress is not finite",
            Evaluator(pot).compute, structure, 1)


@pytest.mark.parametrize("key, words", [("e0", "e0: |value| = 1e\\+308 is beyond the limit"),
                                        ("coefficients", "coefficients: |value| = 1e\\+308")])
def test_absurd_parameters_in_a_file_are_refused(potential, tmp_path, key, words):
    data = potential.to_dict()
    if key == "e0":
        data["e0"] = {"Cu": 1e308}
    else:
        data["functions"][0][5] = [1e308]
    refused(PotentialFileError, words, ACEPotential.load, write_ace(tmp_path / "p.yaml", data))


@pytest.mark.parametrize("raw, words", [
    ({"e0": {"Cu": float("nan")}}, "e0: the values must be finite"),
    ({"cutoff": float("inf")}, "cutoff must be a positive finite number"),
    ({"cutoff": float("nan")}, "cutoff: expected a positive number"),
    ({"core_repulsion": {"r_in": 100, "delta_in": 0.5}},
     "core_repulsion: r_in = 100 Å is not inside the cutoff 5 Å"),
    ({"fit": {"num_threads": "many"}}, "fit.num_threads: expected an integer"),
])
def test_fit_config_values_are_checked_when_read(raw, words):
    config = {"elements": ["Cu"], "cutoff": 5, "data": {"train": "x.xyz"}, "output": "o.yaml"}
    refused(ConfigError, words, FitConfig.from_dict, {**config, **raw})


# ------------------------------------------------------------------ 9. metrics JSON

def test_metrics_json_is_written_atomically(tmp_path, monkeypatch):
    path = tmp_path / "m.metrics.json"
    to_json({"train": {"a": 1}}, path)
    import ace.potential

    def killed(fh, *args):
        raise KeyboardInterrupt  # as a kill between writing and renaming

    monkeypatch.setattr(ace.potential.os, "fsync", killed)
    with pytest.raises(KeyboardInterrupt):
        to_json({"train": {"a": 2}}, path)
    assert json.loads(path.read_text()) == {"train": {"a": 1}}  # the old file, whole
    assert os.listdir(tmp_path) == ["m.metrics.json"]  # no temporary file left


# ------------------------------------------------------------------ 1-3. the fit (CLI)

def emt_images(n, seed, a=3.61):
    rng = np.random.default_rng(seed)
    images = []
    for k in range(n):
        atoms = bulk("Cu", "fcc", a=a * (1 + 0.02 * rng.normal()), cubic=True)
        atoms.rattle(0.05, seed=seed * 100 + k)
        atoms.calc = EMT()
        atoms.calc = SinglePointCalculator(atoms, energy=atoms.get_potential_energy(),
                                           forces=atoms.get_forces())
        images.append(atoms)
    return images


@pytest.fixture(scope="module")
def fitdir(tmp_path_factory):
    path = tmp_path_factory.mktemp("fit")
    ase.io.write(path / "train.xyz", emt_images(8, 0), format="extxyz")
    return path


def fit_config(fitdir, name, images=None, **changes):
    """A config (file) on ``images`` (default: the shared training set)."""
    train = "train.xyz"
    if images is not None:
        train = f"{name}.xyz"
        ase.io.write(fitdir / train, images, format="extxyz")
    config = {"elements": ["Cu"], "cutoff": 4.5, "data": {"train": train},
              "output": f"{name}.yaml", "fit": {"num_threads": 1, "progress": False},
              "basis": {"functions": {"number_of_functions_per_element": 16,
                                      "ALL": {"nradmax_by_orders": [4, 2],
                                              "lmax_by_orders": [0, 1]}}}}
    config.update(changes)
    path = fitdir / f"{name}.config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_fit(config, capsys, *options):
    """(exit status, everything printed, seconds) of ``ace fit``."""
    start = time.perf_counter()
    status = main(["fit", str(config), *options])
    seconds = time.perf_counter() - start
    printed = capsys.readouterr()
    return status, printed.out + printed.err, seconds


@pytest.mark.parametrize("output, words", [
    ("no_such_dir/pot.yaml", "does not exist"),
    (".", "is a directory"),
    ("train.xyz/pot.yaml", "is not a directory"),
])
def test_unwritable_output_fails_before_the_data_is_read(fitdir, capsys, output, words):
    config = fit_config(fitdir, "out", output=output, data={"train": "absent.xyz"})
    status, err, seconds = run_fit(config, capsys)
    assert status == 1 and "ace fit: error: output" in err and words in err
    assert "checked before fitting" in err and "absent.xyz" not in err and seconds < FAST


def test_output_that_is_the_config_or_the_data_is_refused_before_work(fitdir, capsys):
    config = fit_config(fitdir, "self", output="self.config.yaml")
    before = config.read_text()
    status, err, seconds = run_fit(config, capsys)
    assert status == 1 and "is the fit's own config file" in err and seconds < FAST
    assert config.read_text() == before  # nothing was overwritten
    config = fit_config(fitdir, "data", output="train.xyz")
    status, err, _ = run_fit(config, capsys)
    assert status == 1 and "is the fit's own data file" in err


def test_unwritable_metrics_path_fails_before_work(fitdir, capsys):
    os.makedirs(fitdir / "m.metrics.json", exist_ok=True)
    status, err, _ = run_fit(fit_config(fitdir, "m", data={"train": "absent.xyz"}), capsys)
    assert status == 1 and "metrics" in err and "is a directory" in err


def test_single_structure_is_refused(fitdir, capsys):
    status, err, seconds = run_fit(fit_config(fitdir, "one", emt_images(1, 3)), capsys)
    assert status == 1 and "1 structure(s)" in err and "cannot be fitted" in err
    assert "one.xyz:0" in err and seconds < FAST
    assert not (fitdir / "one.yaml").exists()


def test_cutoff_without_pairs_is_refused(fitdir, capsys):
    status, err, _ = run_fit(fit_config(fitdir, "short", cutoff=0.5), capsys)
    assert status == 1 and "no two atoms of any training structure are closer than the " \
                           "cutoff 0.5 Å" in err


def test_energy_outlier_is_flagged_by_file_and_index_and_strict_stops(fitdir, capsys):
    images = emt_images(8, 4)
    images[5].calc.results["energy"] += 1e6
    config = fit_config(fitdir, "outlier", images)
    status, err, seconds = run_fit(config, capsys, "--strict")
    assert status == 1 and "warning: 1 training structure(s) with per-atom energies far" in err
    assert "outlier.xyz:5" in err and "strict: 1 problem(s)" in err and seconds < FAST
    assert not (fitdir / "outlier.yaml").exists()


def test_conflicting_duplicates_are_flagged(fitdir, capsys):
    images = emt_images(6, 5)
    twin = images[2].copy()
    twin.calc = SinglePointCalculator(twin, energy=images[2].get_potential_energy() + 1.0,
                                      forces=images[2].get_forces())
    images.append(twin)
    with pytest.warns(UserWarning, match="1 duplicate structure"):
        status, err, _ = run_fit(fit_config(fitdir, "twins", images), capsys, "--strict")
    assert status == 1 and "duplicated structure(s) whose energies disagree" in err
    assert re.search(r"twins.xyz:6 vs \S*twins.xyz:2 \(0.25 eV/atom\)", err)


def test_absurd_training_error_is_flagged():
    train = type("T", (), {})()  # only what check_fit_errors reads
    tables = {"train": {"overall": {"energy_rmse": 2.9e6, "forces_rmse": 0.1}}}
    from ace.data import Dataset
    images = emt_images(3, 6)
    train = Dataset.from_atoms(images)
    findings = sanity.check_fit_errors(tables, train)
    assert len(findings) == 1 and "training energy RMSE is 2.9e+06 meV/atom" in str(findings[0])
    tables["train"]["overall"].update(energy_rmse=1.0, forces_rmse=50.0)
    assert "force RMSE is 50 eV/Å" in str(sanity.check_fit_errors(tables, train)[0])


def test_clean_data_raise_no_finding(fitdir):
    from ace.data import read_dataset
    config = FitConfig.load(fit_config(fitdir, "clean"))
    train = read_dataset(config.train)
    assert sanity.check_training_set(config, train, 1) == []


# ------------------------------------------------------------------ 3. automatic ZBL r_in

def test_one_bad_structure_does_not_move_the_zbl_inner_cutoff(fitdir):
    from ace.data import Dataset
    images = emt_images(6, 7)
    clean = Dataset.from_atoms(images, source="clean.xyz")
    bad = images[3].copy()
    bad.positions[1] = bad.positions[0] + [0.2, 0, 0]
    bad.calc = SinglePointCalculator(bad, energy=0.0)
    images[3] = bad
    broken = Dataset.from_atoms(images, source="broken.xyz")
    config = FitConfig.load(fit_config(fitdir, "zbl"))
    basis = config.basis_dict(16)
    _, core_clean = apply_core_repulsion(basis, "auto", clean, 4.5, 1)
    with pytest.warns(UserWarning, match=r"broken.xyz:3 \(0.200 Å < 1.320 Å\)"):
        _, core_broken = apply_core_repulsion(basis, "auto", broken, 4.5, 1)
    assert core_broken["r_in"] >= core_clean["r_in"] - 0.05  # the others' shortest distance
    assert core_broken["outliers"][0]["structure"] == "broken.xyz:3"


def test_zbl_inner_cutoff_never_falls_below_the_covalent_floor(fitdir):
    from ace.data import Dataset
    from ace.fitting.config import covalent_floor
    images = emt_images(3, 8)
    for atoms in images:  # every structure compressed: nothing is left but the floor
        atoms.positions[1] = atoms.positions[0] + [0.3, 0, 0]
    data = Dataset.from_atoms(images)
    config = FitConfig.load(fit_config(fitdir, "floor"))
    with pytest.warns(UserWarning, match="3 training structure"):
        _, core = apply_core_repulsion(config.basis_dict(16), "auto", data, 4.5, 1)
    assert core["r_in"] == pytest.approx(covalent_floor(29, 29))


def test_strict_exit_status_after_an_absurd_fit(fitdir, capsys, monkeypatch):
    import ace.fitting.workflow as workflow
    from ace.cli.fit import STRICT_EXIT_STATUS

    def absurd_fit(config, train, test, potential, info, resume=False, log=None, engine=None):
        row = {"n_structures": len(train), "n_atoms": train.total_atoms,
               "energy_rmse": 2.9e6, "energy_mae": 2.9e6, "forces_rmse": 0.5, "forces_mae": 0.4}
        tables = {"train": {"overall": row, "by_config_type": {}}}
        return workflow.FitResult(potential, tables, {}, config.output, config.metrics_path)

    monkeypatch.setattr(workflow, "fit_config", absurd_fit)
    config = fit_config(fitdir, "absurd")
    status, err, _ = run_fit(config, capsys)
    assert status == 0 and "warning: the training energy RMSE is 2.9e+06 meV/atom" in err
    status, err, _ = run_fit(config, capsys, "--strict")
    assert status == STRICT_EXIT_STATUS and "--strict: the fit was flagged" in err


def test_fit_config_file_bombs_are_refused(tmp_path):
    refused(ConfigError, "/dev/zero: not a regular file", FitConfig.load, "/dev/zero")
    bomb, alias = billion_laughs()
    path = tmp_path / "fit.yaml"
    path.write_text(bomb + f"elements: {alias}\n")
    refused(ConfigError, f"{path}: YAML aliases expand the document", FitConfig.load, path)


def test_a_failed_atomic_write_names_the_file_not_the_temporary_one(tmp_path, monkeypatch):
    import ace.potential

    def full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ace.potential.os, "fsync", full)
    path = tmp_path / "pot.yaml"
    with pytest.raises(OSError, match=f"cannot write {path}: No space left on device"):
        ace.potential.write_atomic(path, "text")
    assert os.listdir(tmp_path) == []


def test_control_characters_are_refused_by_every_yaml_reader(tmp_path):
    path = tmp_path / "ctrl.yaml"
    path.write_text("elements: [Cu]\ncutoff: \x05 5\n")
    refused(PotentialFileError, f"{path}: ", load_potential, path)
    refused(ConfigError, f"{path}: invalid YAML", FitConfig.load, path)
