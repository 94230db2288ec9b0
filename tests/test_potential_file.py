"""The potential file: exact round trips, strict validation, atomic writes, never executed.

Tampered files are written two ways: as text edits under the original checksum (the checksum
must catch them), and as edits of the YAML data re-signed with a valid checksum (validation must
catch them, with a message naming the problem).
"""
import hashlib
import os

import numpy as np
import pytest
import yaml

from ace.calculator import ACECalculator
from ace.potential import CHECKSUM_PREFIX, FORMAT_VERSION, ACEPotential, PotentialFileError
from conftest import make_structure, random_potential, shift_densities_positive

pytestmark = pytest.mark.usefixtures("single_threaded_blas")

CUNI = ("Cu", "Ni")
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def signed(body):
    """File text with a valid checksum line for ``body``."""
    return f"{CHECKSUM_PREFIX}{hashlib.sha256(body.encode()).hexdigest()}\n{body}"


def body_of(path):
    return path.read_text().partition("\n")[2]


def write_data(path, data):
    path.write_text(signed(yaml.dump(data, Dumper=DUMPER, sort_keys=False)))


@pytest.fixture(scope="module")
def potential():
    atoms = make_structure("bulk", CUNI, seed=21)
    pot = random_potential(CUNI, "SBessel", "FinnisSinclair", ndensity=2,
                           orders=([3, 2, 2, 1], [0, 2, 1, 1]), inner="zbl",
                           seed=21, min_distance=1.5)
    pot = shift_densities_positive(pot, [atoms])
    pot.metadata = {"fit": {"tau1": 0.99, "solver": "ridge"}, "metrics": {"rmse_e": 1.5e-3}}
    return pot


@pytest.fixture
def saved(tmp_path, potential):
    path = tmp_path / "potential.yaml"
    potential.save(path)
    return path


def evaluate(calc, atoms):
    atoms = atoms.copy()
    atoms.calc = calc
    return (atoms.get_potential_energies(), atoms.get_forces(),
            atoms.get_stress() if atoms.pbc.all() else None)


def assert_same_results(pot_a, pot_b, kinds=("bulk", "cluster")):
    for kind in kinds:
        atoms = make_structure(kind, pot_a.elements, seed=3)
        for a, b in zip(evaluate(ACECalculator(pot_a, num_threads=1), atoms),
                        evaluate(ACECalculator(pot_b, num_threads=1), atoms)):
            if a is not None:
                np.testing.assert_array_equal(a, b)  # bit for bit


ROUND_TRIP_CASES = [
    dict(elements=("Cu",), radbase="ChebExpCos", npot="FinnisSinclairShiftedScaled", ndensity=3,
         orders=5, inner="density"),
    dict(elements=CUNI, radbase="ChebPow", npot="FinnisSinclair", ndensity=1, orders=3,
         inner="distance"),
    dict(elements=("Al", "Cu", "Ni"), radbase="SBessel", npot="FinnisSinclairShiftedScaled",
         ndensity=2, orders=2, inner=None),
    dict(elements=CUNI, radbase="ChebExpCos", npot="FinnisSinclair", ndensity=1, orders=1,
         inner=None),  # rank 1 only: bonds with nradmax = 0 and an empty crad
]


@pytest.mark.parametrize("settings", ROUND_TRIP_CASES,
                         ids=lambda s: f"{''.join(s['elements'])}-{s['radbase']}-rank{s['orders']}")
def test_round_trip_is_exact(tmp_path, settings):
    pot = random_potential(seed=5, **settings)
    pot.save(tmp_path / "a.yaml")
    loaded = ACEPotential.load(tmp_path / "a.yaml")
    assert loaded.to_dict() == pot.to_dict()
    np.testing.assert_array_equal(loaded.coefficients, pot.coefficients)
    for pair, bond in pot.bonds.items():
        np.testing.assert_array_equal(loaded.bonds[pair].crad, bond.crad)
    assert_same_results(pot, loaded)
    loaded.save(tmp_path / "b.yaml")
    assert (tmp_path / "a.yaml").read_bytes() == (tmp_path / "b.yaml").read_bytes()


def test_round_trip_keeps_everything(saved, potential):
    loaded = ACEPotential.load(saved)
    assert loaded.metadata == potential.metadata
    assert loaded.min_distance == 1.5
    assert loaded.basis_spec == potential.basis_spec
    assert loaded.elements == potential.elements
    np.testing.assert_array_equal(loaded.e0, potential.e0)
    assert loaded.inner_cutoff_type == "zbl"
    assert_same_results(potential, loaded)


def test_calculator_reads_a_file(saved, potential):
    atoms = make_structure("triclinic", CUNI, seed=4)
    for source in (saved, str(saved)):
        for a, b in zip(evaluate(ACECalculator(source, num_threads=1), atoms),
                        evaluate(ACECalculator(potential, num_threads=1), atoms)):
            np.testing.assert_array_equal(a, b)


def test_file_is_yaml_with_a_checksum(saved):
    first, _, body = saved.read_text().partition("\n")
    assert first == CHECKSUM_PREFIX + hashlib.sha256(body.encode()).hexdigest()
    data = yaml.load(body, Loader=LOADER)
    assert data["format"] == "ace-potential"
    assert data["format_version"] == FORMAT_VERSION
    assert data["units"] == {"energy": "eV", "length": "Angstrom"}


# ----------------------------------------------------------------------------- text tampering

def truncate_half(text):
    return text[:len(text) // 2]


def truncate_last_line(text):
    return text.rstrip("\n").rpartition("\n")[0] + "\n"


def flip_a_digit(text):
    k = text.index("e0:")
    k = next(i for i in range(k, len(text)) if text[i].isdigit() and text[i] not in "0")
    return text[:k] + str((int(text[k]) + 1) % 10) + text[k + 1:]


def change_metadata(text):
    return text.replace("ridge", "lasso")


TEXT_TAMPERING = {
    "truncated": (truncate_half, "checksum mismatch: the file is truncated or was modified"),
    "last_line_cut": (truncate_last_line, "checksum mismatch"),
    "digit_flipped": (flip_a_digit, "checksum mismatch"),
    "metadata_edited": (change_metadata, "checksum mismatch"),
    "bad_checksum": (lambda text: text.replace("sha256=", "sha256=0", 1), "checksum mismatch"),
    "no_checksum_line": (lambda text: text.partition("\n")[2], "not an ace potential file"),
}


@pytest.mark.parametrize("tamper, message", TEXT_TAMPERING.values(), ids=TEXT_TAMPERING)
def test_tampered_text_is_refused(saved, tamper, message):
    saved.write_text(tamper(saved.read_text()))
    with pytest.raises(PotentialFileError, match=message):
        ACEPotential.load(saved)
    with pytest.raises(PotentialFileError, match=message):
        ACECalculator(saved)


def test_empty_file_is_refused(saved):
    saved.write_text("")
    with pytest.raises(PotentialFileError, match="not an ace potential file"):
        ACEPotential.load(saved)
    with pytest.raises(PotentialFileError):  # the calculator also tries the PACE reader
        ACECalculator(saved)


# ----------------------------------------------------------------------------- invalid YAML

def test_broken_yaml_is_refused(saved):
    body = body_of(saved).replace("functions:", "functions: [[", 1)
    saved.write_text(signed(body))
    with pytest.raises(PotentialFileError, match="invalid YAML"):
        ACEPotential.load(saved)


@pytest.mark.parametrize("body", ["- 1\n- 2\n", "just a string\n", "42\n", ""],
                         ids=["list", "string", "number", "empty"])
def test_yaml_that_is_not_a_mapping_is_refused(tmp_path, body):
    path = tmp_path / "p.yaml"
    path.write_text(signed(body))
    with pytest.raises(PotentialFileError, match="does not hold a mapping"):
        ACEPotential.load(path)


def test_python_tags_are_never_executed(tmp_path, saved):
    marker = tmp_path / "executed"
    for tag in (f"!!python/object/apply:os.system ['touch {marker}']",
                f"!!python/object/apply:pathlib.Path.touch ['{marker}']",
                "!!python/object:ace.potential.ACEPotential {elements: [Cu]}",
                "!!python/name:os.system"):
        body = body_of(saved).replace("metadata:", f"metadata: {tag}\nignored:", 1)
        saved.write_text(signed(body))
        with pytest.raises(PotentialFileError, match="invalid YAML"):
            ACEPotential.load(saved)
        saved.write_text(signed(f"{tag}\n"))
        with pytest.raises(PotentialFileError, match="invalid YAML"):
            ACEPotential.load(saved)
    assert not marker.exists()


# ----------------------------------------------------------------------------- invalid content

def drop(key):
    def edit(data):
        del data[key]
    return edit


def set_key(key, value):
    def edit(data):
        data[key] = value
    return edit


def edit_bond(key, value):
    def edit(data):
        data["bonds"][1][key] = value
    return edit


def drop_crad_row(data):
    data["bonds"][0]["crad"] = data["bonds"][0]["crad"][:-1]


def ragged_crad(data):
    data["bonds"][0]["crad"][0] = data["bonds"][0]["crad"][0][:-1]


def transpose_crad(data):
    data["bonds"][0]["crad"] = np.swapaxes(np.array(data["bonds"][0]["crad"]), 0, 2).tolist()


def drop_bond(data):
    del data["bonds"][-1]


def unknown_bond_element(data):
    data["bonds"][0]["pair"] = ["Cu", "Xx"]


def extra_coefficient(data):
    data["functions"][0][5].append(0.5)


def nan_coefficient(data):
    data["functions"][3][5][0] = float("nan")


def l_out_of_range(data):
    row = next(r for r in data["functions"] if len(r[1]) == 2)
    row[3] = [7, 7]


def odd_l_sum(data):
    row = next(r for r in data["functions"] if len(r[1]) == 3 and r[3][0] > 0)
    row[3] = [row[3][0], row[3][1], row[3][2] + 1]


def unsorted_functions(data):
    data["functions"].reverse()


def short_function_row(data):
    data["functions"][0] = data["functions"][0][:4]


def unknown_embedding(data):
    data["embeddings"]["Cu"]["npot"] = "Quadratic"


def wrong_fs_parameters(data):
    data["embeddings"]["Ni"]["fs_parameters"] = [1.0, 1.0, 1.0]


def mixed_inner_types(data):
    data["bonds"][0]["inner_cutoff_type"] = "distance"


def missing_bond_key(data):
    del data["bonds"][0]["rcut"]


def e0_missing_element(data):
    del data["e0"]["Ni"]


def unsorted_elements(data):
    data["elements"] = ["Ni", "Cu"]


CONTENT_TAMPERING = {
    "format_version_newer": (set_key("format_version", FORMAT_VERSION + 98),
                             f"format_version {FORMAT_VERSION + 98} is newer than this ace"),
    "format_version_text": (set_key("format_version", "one"), "'format_version' must be int"),
    "format_name": (set_key("format", "pace"), "'format' must be 'ace-potential'"),
    "units": (set_key("units", {"energy": "kcal/mol", "length": "Angstrom"}), "units"),
    "missing_functions": (drop("functions"), "missing key 'functions'"),
    "missing_elements": (drop("elements"), "missing key 'elements'"),
    "missing_bonds": (drop("bonds"), "missing key 'bonds'"),
    "missing_e0": (drop("e0"), "missing key 'e0'"),
    "missing_format_version": (drop("format_version"), "missing key 'format_version'"),
    "missing_bond_key": (missing_bond_key, r"malformed potential data: KeyError: 'rcut'"),
    "functions_not_a_list": (set_key("functions", {"a": 1}), "'functions' must be list"),
    "crad_row_dropped": (drop_crad_row, r"crad has shape \(\d+, \d+, \d+\), expected"),
    "crad_transposed": (transpose_crad, r"crad has shape .*, expected"),
    "crad_ragged": (ragged_crad, "malformed potential data"),
    "unknown_radial_family": (edit_bond("radbase", "Bessel"), "unknown radial basis 'Bessel'"),
    "unknown_inner_type": (edit_bond("inner_cutoff_type", "soft"), "inner_cutoff_type"),
    "mixed_inner_types": (mixed_inner_types, "all bonds must share one inner_cutoff_type"),
    "negative_rcut": (edit_bond("rcut", -4.5), "rcut must be positive"),
    "bond_missing": (drop_bond, r"bonds missing for element pairs"),
    "unknown_bond_element": (unknown_bond_element, "bond names unknown element 'Xx'"),
    "unknown_element": (unsorted_elements, "elements must be unique and sorted"),
    "e0_missing_element": (e0_missing_element, "'e0' must name exactly the elements"),
    "extra_coefficient": (extra_coefficient, "has 3 coefficients, its element has ndensity 2"),
    "nan_coefficient": (nan_coefficient, "coefficients contain NaN or inf"),
    "l_out_of_range": (l_out_of_range, "outside the bond's"),
    "odd_l_sum": (odd_l_sum, "sum of l must be even"),
    "unsorted_functions": (unsorted_functions, "sorted by central element"),
    "short_function_row": (short_function_row, "malformed potential data"),
    "unknown_embedding": (unknown_embedding, "unknown embedding 'Quadratic'"),
    "fs_parameters": (wrong_fs_parameters, "fs_parameters must have"),
}


@pytest.mark.parametrize("edit, message", CONTENT_TAMPERING.values(), ids=CONTENT_TAMPERING)
def test_invalid_content_is_refused(saved, edit, message):
    data = yaml.load(body_of(saved), Loader=LOADER)
    edit(data)
    write_data(saved, data)
    with pytest.raises(PotentialFileError, match=message):
        ACEPotential.load(saved)


def set_embedding(key, value):
    def edit(data):
        data["embeddings"]["Cu"][key] = value
    return edit


def invalid_coupling(data):
    row = next(r for r in data["functions"] if len(r[1]) == 4)
    row[4] = [99, 99]


def duplicate_bond(data):
    data["bonds"].append(dict(data["bonds"][0], rcut=3.0))


def fractional_index(data):
    data["functions"][0][0] = 0.5


NAN = float("nan")

# Fields whose damage would otherwise only show in the evaluator (NaN, an error that is not a
# PotentialFileError) or give a silently different potential.
VALIDATION_GAPS = {
    "format_version_zero": (set_key("format_version", 0), "format_version"),
    "format_version_bool": (set_key("format_version", True), "format_version"),
    "nan_fs_parameter": (set_embedding("fs_parameters", [1.0, NAN, 1.0, 0.5]), "fs_parameters"),
    "nan_radparameter": (edit_bond("radparameters", [NAN]), "radparameters"),
    "empty_radparameters": (edit_bond("radparameters", []), "radparameters"),
    "nan_r_in": (edit_bond("r_in", NAN), "r_in"),
    "negative_dcut": (edit_bond("dcut", -0.5), "dcut"),
    "core_repulsion_three_values": (edit_bond("core_repulsion", [1.0, 1.0, 1.0]),
                                    "core_repulsion"),
    "nan_min_distance": (set_key("min_distance", NAN), "min_distance"),
    "invalid_intermediate_coupling": (invalid_coupling, "LS|coupling"),
    "duplicate_bond": (duplicate_bond, "twice|duplicate|more than once"),
    "fractional_species_index": (fractional_index, "integer"),
}


@pytest.mark.parametrize("edit, message", VALIDATION_GAPS.values(), ids=VALIDATION_GAPS)
def test_invalid_content_is_refused_on_load(saved, edit, message):
    data = yaml.load(body_of(saved), Loader=LOADER)
    edit(data)
    write_data(saved, data)
    with pytest.raises(PotentialFileError, match=message):
        ACEPotential.load(saved)


def test_resigned_unchanged_data_loads(saved, potential):
    """Control for the test above: re-signing the unedited data gives a valid file."""
    write_data(saved, yaml.load(body_of(saved), Loader=LOADER))
    assert_same_results(potential, ACEPotential.load(saved), kinds=("bulk",))


# ----------------------------------------------------------------------------- atomic writes

def other_potential():
    return random_potential(CUNI, ndensity=1, orders=2, seed=99)


@pytest.mark.parametrize("target, error", [("yaml.dump", RuntimeError), ("os.fsync", OSError),
                                           ("os.replace", OSError)])
def test_failed_write_leaves_the_old_file(monkeypatch, saved, potential, target, error):
    before = saved.read_bytes()

    def fail(*args, **kwargs):
        raise error(f"simulated failure of {target}")

    monkeypatch.setattr(target, fail)
    with pytest.raises(error, match="simulated failure"):
        other_potential().save(saved)
    monkeypatch.undo()
    assert saved.read_bytes() == before
    assert os.listdir(saved.parent) == [saved.name], "no temporary file may be left behind"
    assert_same_results(potential, ACEPotential.load(saved), kinds=("bulk",))


def test_failed_first_write_leaves_no_file(monkeypatch, tmp_path):
    monkeypatch.setattr("os.replace", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError, match="disk full"):
        other_potential().save(tmp_path / "new.yaml")
    assert os.listdir(tmp_path) == []


def test_save_replaces_an_existing_file(saved):
    pot = other_potential()
    pot.save(saved)
    assert_same_results(pot, ACEPotential.load(saved), kinds=("cluster",))
    assert os.listdir(saved.parent) == [saved.name]
