"""The shipped potentials (potentials/<element>.yaml, linear, and <element>-nonlinear.yaml, the
nonlinear fit): valid files, physics, recorded metrics.

Each potential is checked for: a file that loads and whose checksum guards it, a bulk crystal
(bcc Mo / diamond Si) with finite energies and forces that equal -dE/dr by finite differences,
a sensible equilibrium (the energy rises when the crystal is compressed or expanded by 3%, and
a pushed-together pair repels), and metrics consistent with the files beside it. When the mlearn
data are present (../shared/data/mlearn next to the repository), the test-set errors are
recomputed and compared with the recorded ones.
"""
import json
import os

import numpy as np
import pytest
import yaml
from ase import Atoms
from ase.build import bulk

from ace.calculator import ACECalculator
from ace.potential import ACEPotential, PotentialFileError
from ace.testing import check_forces

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POTENTIALS = os.path.join(ROOT, "potentials")
DATA = os.path.join(os.path.dirname(ROOT), "shared", "data", "mlearn")
CRYSTALS = {"Mo": ("bcc", 3.16), "Si": ("diamond", 5.47)}  # DFT (PBE) lattice constants, Å
# regression guards on the recorded test MAE (energy meV/atom, forces eV/Å): Si meets issue 3's
# target (2.2, 0.058); Mo (2.30, 0.090) misses its target (2.2, 0.085), see potentials/README.md
# The nonlinear fits (varpro, 1000 functions, 2 densities) beat the linear fit of the same
# basis but not issue 6's targets, see potentials/README.md
TEST_MAE_BOUNDS = {"Mo": (2.35, 0.092), "Si": (2.2, 0.058),
                   "Mo-nonlinear": (2.3, 0.087), "Si-nonlinear": (2.3, 0.051)}
VARIANTS = ("", "-nonlinear")


def path_of(name, suffix=".yaml"):
    return os.path.join(POTENTIALS, name + suffix)


@pytest.fixture(scope="module", params=[(e, v) for e in sorted(CRYSTALS) for v in VARIANTS],
                ids=lambda p: p[0] + p[1])
def shipped(request):
    element, variant = request.param
    return element, ACEPotential.load(path_of(element + variant)), element + variant


def crystal(element, scale=1.0, repeat=2, rattle=0.0):
    structure, a = CRYSTALS[element]
    atoms = bulk(element, structure, a=a * scale, cubic=True).repeat(repeat)
    if rattle:
        atoms.rattle(rattle, seed=1)
    return atoms


def test_files_are_shipped_together():
    for element in CRYSTALS:
        for variant in VARIANTS:
            for suffix in (".yaml", ".config.yaml", ".metrics.json"):
                path = path_of(element + variant, suffix)
                assert os.path.isfile(path), path


def test_file_is_valid_and_checksummed(shipped, tmp_path):
    element, potential, name = shipped
    assert potential.elements == [element]
    assert potential.n_functions > 100
    assert np.isfinite(potential.coefficients).all() and np.isfinite(potential.e0).all()
    fit = potential.metadata["fit"]
    linear = fit["report"].get("linear", fit["report"])  # a nonlinear fit starts from one
    assert linear["e0_fitted"] and fit["core_repulsion"]["type"] == "zbl"
    if name.endswith("-nonlinear"):
        assert fit["report"]["method"] == "nonlinear" and potential.ndensity_max == 2
        assert np.any(potential.coefficients[:, 1] != 0)
    # one changed digit in a coefficient is caught by the checksum
    with open(path_of(name)) as fh:
        lines = fh.read().splitlines(keepends=True)
    # a function entry is [mu0, mus, ns, ls, LS, coefficients]: its 6th line holds the latter
    k = lines.index("functions:\n") + 6
    assert lines[k].lstrip().startswith("- [")
    digit = next(i for i, ch in enumerate(lines[k]) if ch in "123456789")
    lines[k] = lines[k][:digit] + str(int(lines[k][digit]) % 9 + 1) + lines[k][digit + 1:]
    tampered = tmp_path / "tampered.yaml"
    tampered.write_text("".join(lines))
    with pytest.raises(PotentialFileError, match="checksum"):
        ACEPotential.load(tampered)


def test_crystal_forces_are_minus_gradient(shipped):
    element, potential, name = shipped
    atoms = crystal(element, rattle=0.05)
    atoms.calc = ACECalculator(potential)
    energy, forces = atoms.get_potential_energy(), atoms.get_forces()
    assert np.isfinite(energy) and np.isfinite(forces).all()
    assert 0.01 < np.abs(forces).max() < 5.0  # a rattled crystal: small, non-zero forces
    check_forces(atoms, tolerance=1e-6)


def test_crystal_is_a_minimum_and_close_atoms_repel(shipped):
    element, potential, name = shipped
    calc = ACECalculator(potential)
    per_atom = {}
    for scale in (0.97, 1.0, 1.03):
        atoms = crystal(element, scale)
        atoms.calc = calc
        per_atom[scale] = atoms.get_potential_energy() / len(atoms)
        assert np.abs(atoms.get_forces()).max() < 1e-8  # forces vanish by symmetry
    assert per_atom[1.0] < per_atom[0.97] and per_atom[1.0] < per_atom[1.03]
    # below the shortest training distance the ZBL core takes over: a dimer repels strongly
    r_in = potential.metadata["fit"]["core_repulsion"]["r_in"]
    energies = []
    for r in (0.6 * r_in, 0.8 * r_in):
        dimer = Atoms(element * 2, positions=[[0, 0, 0], [r, 0, 0]])
        dimer.calc = calc
        energies.append(dimer.get_potential_energy())
    assert energies[0] > energies[1] + 1.0


def test_recorded_metrics_match_the_files(shipped):
    element, potential, name = shipped
    with open(path_of(name, ".metrics.json")) as fh:
        metrics = json.load(fh)
    assert metrics == potential.metadata["metrics"]
    with open(path_of(name, ".config.yaml")) as fh:
        config = yaml.safe_load(fh)
    assert config["elements"] == [element] and config["output"] == f"{name}.yaml"
    test = metrics["test"]["overall"]
    energy_target, force_target = TEST_MAE_BOUNDS[name]
    assert test["energy_mae"] <= energy_target and test["forces_mae"] <= force_target


MLEARN_MISSING = (f"mlearn data not found at {DATA}: the public mlearn benchmark (Zuo et al., "
                  "J. Phys. Chem. A 124, 731 (2020); repository materialsvirtuallab/mlearn on "
                  "GitHub) converted to extended XYZ as <that directory>/<Mo|Si>/{train,test}.xyz"
                  "; potentials/README.md says how")


@pytest.mark.skipif(not os.path.isdir(DATA), reason=MLEARN_MISSING)
def test_test_set_errors_are_reproduced(shipped):
    from ace.data import read_dataset
    from ace.fitting.metrics import evaluate

    element, potential, name = shipped
    table = evaluate(potential, read_dataset(os.path.join(DATA, element, "test.xyz")))
    recorded = potential.metadata["metrics"]["test"]
    for key in ("energy_mae", "energy_rmse", "forces_mae", "forces_rmse"):
        assert table["overall"][key] == pytest.approx(recorded["overall"][key], rel=1e-6)
        for ctype, row in table["by_config_type"].items():
            assert row[key] == pytest.approx(recorded["by_config_type"][ctype][key], rel=1e-6)


PHYSICAL = [f"{e}-{f}" for e in sorted(CRYSTALS) for f in ("eam", "bop")] + [
    f"{e}_pinn" for e in sorted(CRYSTALS)]


@pytest.mark.parametrize("name", PHYSICAL)
def test_shipped_physical_potentials(name):
    """The traditional fits (potentials/<element>-<eam|bop>.yaml) and the physically-informed
    ones (<element>_pinn.yaml): they load as their kind, forces are -dE/dr, the crystal's
    energy minimum lies within 2.5 % of the PBE lattice constant (Si EAM's is 1.7 % short) and
    below the free atoms, and the metrics file is the one stored in the potential. The
    physically-informed ones are bounded: a compressed equilateral trimer (1 Å), far from their
    data, keeps every local parameter within max_shift of p0 and evaluates. Every one repels in
    that trimer: its energy falls from 1 to 1.6 Å (no spurious minimum at short range)."""
    import ace
    from ace.physical.potential import TraditionalPotential
    from ace.physically_informed import PhysicallyInformedEvaluator, PhysicallyInformedPotential
    from ace.evaluator import Structure
    for suffix in (".yaml", ".config.yaml", ".metrics.json"):
        assert os.path.exists(path_of(name, suffix)), path_of(name, suffix)
    potential = ace.load(path_of(name))
    informed = name.endswith("_pinn")
    kind = PhysicallyInformedPotential if informed else TraditionalPotential
    assert isinstance(potential, kind)
    element = name.split("-")[0].split("_")[0]
    energies = []
    for scale in (0.95, 1.0, 1.05):
        atoms = crystal(element, scale)
        atoms.calc = ACECalculator(potential, num_threads=1)
        energies.append(atoms.get_potential_energy() / len(atoms))
    assert energies[1] < min(energies[0], energies[2])
    assert energies[1] < potential.e0[0]  # bound relative to the free atom
    atoms = crystal(element, rattle=0.05)
    atoms.calc = ACECalculator(potential, num_threads=1)
    check_forces(atoms)
    with open(path_of(name, ".metrics.json")) as fh:
        assert json.load(fh) == potential.metadata["metrics"]
    trimer_energies = []
    for d in np.arange(1.0, 1.61, 0.1):
        trimer = Atoms(element * 3, positions=[[0, 0, 0], [d, 0, 0], [d / 2, d * 0.75 ** 0.5, 0]])
        trimer.calc = ACECalculator(potential, num_threads=1)
        trimer_energies.append(trimer.get_potential_energy())
    assert (np.diff(trimer_energies) < 0).all(), trimer_energies
    if informed:
        assert np.isfinite(potential.max_shift).all()
        trimer = Atoms(element * 3, positions=[[0, 0, 0], [1.0, 0, 0], [0.5, 0.75 ** 0.5, 0]])
        result = PhysicallyInformedEvaluator(potential).compute(
            Structure.from_atoms(potential.descriptor, trimer), 1)
        assert np.isfinite(result.energy)
        # far out, tanh saturates: parameters reach the bound (in floating point) but not past
        shift = np.abs(result.parameters - potential.base_parameters[0])
        assert (shift <= potential.max_shift[0] * (1 + 1e-12)).all()
        sigma = list(potential.form.parameter_names).index("sigma")
        assert (result.parameters[:, sigma] > 0).all()
