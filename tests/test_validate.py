"""ace validate: every property routine against an independent computation with ASE's EMT
(Cu and Al), the strain fit of the data-derived references, the report end to end on a small
fitted potential (JSON schema, figures, CLI), and the missing-matplotlib message."""
import json
import sys

import numpy as np
import pytest
import yaml
from ase import Atoms, units
from ase.build import bulk, fcc100, fcc111
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT
from ase.eos import EquationOfState
from ase.optimize import BFGS

from ace.data import Dataset
from ace.validation import properties as props
from ace.validation.references import (ReferenceError, load_reference, strain_fit_data,
                                     strained_crystals)

pytestmark = pytest.mark.usefixtures("single_threaded_blas")

REQUIRED = ("lattice_constant", "bulk_modulus", "C11", "C12", "C44", "vacancy_formation_energy",
            "surface_energy_100", "surface_energy_110", "surface_energy_111",
            "min_phonon_frequency", "nve_drift")


@pytest.fixture(scope="module", params=["Cu", "Al"])
def emt_crystal(request):
    element = request.param
    relaxed = props.relax_crystal(props.prototype(element, "fcc"), EMT())
    return element, relaxed


@pytest.fixture(scope="module")
def copper():
    return props.relax_crystal(props.prototype("Cu", "fcc"), EMT())


def test_lattice_constant_and_eos_match_ase_eos(emt_crystal):
    element, relaxed = emt_crystal
    a = props.lattice_constants(relaxed, "fcc")["a"]
    eos = props.equation_of_state(relaxed, EMT())
    # independent: ASE's EOS on hand-scaled primitive cells, over the same ±8% in volume
    # around a from the cell relaxation (B0' depends on the range for EMT Al)
    volumes, energies = [], []
    for scale in np.linspace(0.92, 1.08, 9) ** (1 / 3):
        atoms = bulk(element, "fcc", a=a * scale)
        atoms.calc = EMT()
        volumes.append(atoms.get_volume())
        energies.append(atoms.get_potential_energy())
    fit = EquationOfState(volumes, energies, eos="birchmurnaghan")
    v0, e0, b0 = fit.fit()
    assert a == pytest.approx((4 * v0) ** (1 / 3), abs=2e-3)
    assert eos["V0"] == pytest.approx(v0, rel=2e-3)
    assert eos["E0"] == pytest.approx(e0, abs=1e-4)
    assert eos["B0"] == pytest.approx(b0 / units.GPa, rel=0.02)
    assert eos["B0_prime"] == pytest.approx(fit.eos_parameters[2], rel=0.05)


def _stress_difference_constants(relaxed, step=0.002):
    """C11, C12, C44 of an fcc cell (no internal coordinates) by hand: central differences."""
    def stress(strain):
        atoms = relaxed.copy()
        atoms.set_cell(relaxed.cell.array @ (np.eye(3) + strain), scale_atoms=True)
        atoms.calc = EMT()
        return atoms.get_stress(voigt=True) / units.GPa

    normal = np.zeros((3, 3))
    normal[0, 0] = step
    shear = np.zeros((3, 3))
    shear[1, 2] = shear[2, 1] = step / 2
    d_normal = (stress(normal) - stress(-normal)) / (2 * step)
    d_shear = (stress(shear) - stress(-shear)) / (2 * step)
    return d_normal[0], d_normal[1], d_shear[3]


def test_elastic_constants_match_finite_stress_differences(emt_crystal):
    element, relaxed = emt_crystal
    result = props.elastic_constants(relaxed, EMT(), "fcc")
    c11, c12, c44 = _stress_difference_constants(relaxed)
    assert result["C11"] == pytest.approx(c11, rel=5e-3)
    assert result["C12"] == pytest.approx(c12, rel=5e-3)
    assert result["C44"] == pytest.approx(c44, rel=5e-3)
    assert result["converged"] and result["step_convergence"] < 0.01
    tensor = np.array(result["tensor"])
    assert abs(tensor[0, 3]) < 1e-2 and abs(tensor[3, 4]) < 1e-2  # cubic: no coupling
    # the EOS and the elastic constants agree on B = (C11 + 2 C12) / 3
    eos = props.equation_of_state(relaxed, EMT())
    assert result["bulk_modulus"] == pytest.approx(eos["B0"], rel=0.02)


def test_elastic_constants_relax_internal_coordinates():
    # hcp has an internal coordinate under shear: relaxed C44 < the unrelaxed (homogeneous) one
    hcp = props.relax_crystal(props.prototype("Cu", "hcp", 2.55), EMT())
    relaxed = props.elastic_tensor(hcp, EMT(), 0.005)
    unrelaxed = props.elastic_tensor(hcp, EMT(), 0.005, fmax=1e9)  # no relaxation steps
    assert relaxed[5, 5] < unrelaxed[5, 5] - 1.0  # C66 (xy in the orthorhombic cell)
    assert np.allclose(relaxed, relaxed.T)


def test_vacancy_formation_energy_matches_relaxed_supercell(copper):
    result = props.vacancy_formation_energy(copper, EMT())
    n = result["supercell"][0]
    assert result["n_atoms"] == 4 * n ** 3 and n * copper.cell[0, 0] >= 10.0
    perfect = copper.repeat(n)
    perfect.calc = EMT()
    e_bulk = perfect.get_potential_energy()
    defect = perfect.copy()
    del defect[len(defect) // 2]
    defect.calc = EMT()
    BFGS(defect, logfile=None).run(fmax=1e-3)
    expected = defect.get_potential_energy() - (len(defect)) / len(perfect) * e_bulk
    assert result["value"] == pytest.approx(expected, abs=3e-3)
    assert 1.0 < result["value"] < 1.4  # EMT Cu's vacancy: about 1.2 eV


@pytest.mark.parametrize("miller, builder", [((1, 0, 0), fcc100), ((1, 1, 1), fcc111)])
def test_surface_energy_matches_ase_slab(copper, miller, builder):
    result = props.surface_energy(copper, EMT(), miller)
    a = copper.cell[0, 0]
    slab = builder("Cu", size=(1, 1, 12), a=a, vacuum=8.0, periodic=False)
    slab.pbc = True
    slab.calc = EMT()
    BFGS(slab, logfile=None).run(fmax=1e-3)
    e_bulk = EMT().get_potential_energy(copper) / len(copper)
    area = np.linalg.norm(np.cross(slab.cell[0], slab.cell[1]))
    expected = (slab.get_potential_energy() - len(slab) * e_bulk) / (2 * area)
    assert result["value"] == pytest.approx(expected * props.EV_PER_A2_TO_J_PER_M2, rel=0.01)
    assert result["thickness"] >= 12.0 and result["converged"]


def test_surface_energy_picks_the_lowest_energy_cut():
    # diamond (111): the cut through single bonds, not through the bilayer's triple bonds
    from ase.calculators.lj import LennardJones
    crystal = bulk("C", "diamond", a=5.43, cubic=True)
    lj = LennardJones(sigma=2.1, epsilon=0.1, rc=4.5, smooth=True)
    result = props.surface_energy(crystal, lj, (1, 1, 1))
    assert result["terminations_tried"] == 2
    energies = []
    for start in (0, 1):
        slab = crystal.repeat(1)
        from ase.build import surface
        slab = surface(crystal, (1, 1, 1), result["layers"] + 1, periodic=True)
        normal = slab.positions[:, 2] - slab.positions[:, 2].min()
        planes = np.unique(np.round(normal, 3))
        keep = (normal >= planes[start] - 1e-3) & (normal < planes[start] + result["thickness"]
                                                   - 1e-3)
        cut = slab[keep]
        cut.cell[2] = [0, 0, result["thickness"]]
        cut.center(vacuum=8.0, axis=2)
        cut.pbc = True
        cut.calc = lj
        energies.append(cut.get_potential_energy())
    e_bulk = lj.get_potential_energy(crystal) / len(crystal)
    area = np.linalg.norm(np.cross(slab.cell[0], slab.cell[1]))
    lowest = (min(energies) - len(cut) * e_bulk) / (2 * area) * props.EV_PER_A2_TO_J_PER_M2
    assert result["unrelaxed"] == pytest.approx(lowest, rel=1e-6)


def test_phonons_acoustic_slope_is_the_sound_velocity(copper):
    result = props.phonon_dispersion(props.primitive_cell(copper, "fcc", "Cu"), EMT(),
                                     cutoff=5.0, npoints=200)
    assert not result["imaginary_modes"] and result["min_frequency"] > -1e-3
    assert result["labels"][:2] == ["G", "X"]
    freq = np.array(result["frequencies"])
    assert np.abs(freq[0]).max() < 1e-3  # acoustic modes vanish at Gamma
    # independent: along Gamma-X the longitudinal branch starts at sqrt(C11 / rho) and the
    # transverse ones at sqrt(C44 / rho) (f = v k / 2 pi with k in rad/Å, v in Å/ps)
    c11, _, c44 = _stress_difference_constants(copper)
    rho = copper.get_masses().sum() * units._amu / (copper.get_volume() * 1e-30)
    k = result["distances"][2] / (2 * np.pi)
    v_l = np.sqrt(c11 * 1e9 / rho) * 1e-2
    v_t = np.sqrt(c44 * 1e9 / rho) * 1e-2
    assert freq[2].max() == pytest.approx(v_l * k, rel=0.03)
    assert freq[2].min() == pytest.approx(v_t * k, rel=0.03)


class SpuriousWell(Calculator):
    """A pair energy with a spurious attractive well at 1 Å below a normal minimum at 2.5 Å."""

    implemented_properties = ["energy", "forces"]

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        Calculator.calculate(self, atoms, properties, system_changes)
        r = atoms.get_distance(0, 1)
        energy = 5 * np.exp(-2 * (r - 1.6)) - 20 * np.exp(-(r - 1.0) ** 2 / 0.01) \
            - np.exp(-(r - 2.5) ** 2)
        self.results = {"energy": float(energy), "forces": np.zeros((2, 3))}


def test_dimer_curve_checks():
    good = props.dimer_curve("Cu", EMT(), cutoff=5.0, shortest_data_distance=1.6)
    pair = Atoms("Cu2", positions=[[0, 0, 0], [0, 0, 1.5]])
    pair.calc = EMT()
    far = Atoms("Cu2", positions=[[0, 0, 0], [0, 0, 7.0]])
    far.calc = EMT()
    r = np.array(good["distances"])
    k = int(np.argmin(np.abs(r - 1.5)))
    assert good["energies"][k] == pytest.approx(pair.get_potential_energy()
                                                - far.get_potential_energy())
    assert r[0] == pytest.approx(0.5) and good["repulsive"] and good["monotonic"]
    bad = props.dimer_curve("Cu", SpuriousWell(), cutoff=3.0, shortest_data_distance=2.0)
    assert not bad["monotonic"] and 0.9 < bad["first_non_monotonic"] < 1.05
    assert not bad["repulsive"]


def test_nve_drift_small_with_a_short_timestep(copper):
    fine = props.nve_drift(copper, EMT(), temperature=300, steps=100, timestep=1.0,
                           min_atoms=30, min_width=None)
    coarse = props.nve_drift(copper, EMT(), temperature=300, steps=25, timestep=12.0,
                             min_atoms=30, min_width=None)
    assert fine["n_atoms"] == 32 and abs(fine["value"]) < 1.0
    assert fine["max_deviation"] < 0.5  # meV/atom
    assert coarse["max_deviation"] > 10 * fine["max_deviation"]
    assert 150 < fine["mean_temperature"] < 450


def test_nvt_stability_detects_close_approach(copper):
    stable = props.nvt_stability(copper, EMT(), 1358, shortest_allowed=1.6, steps=60,
                                 min_atoms=30, min_width=None)
    assert stable["stable"] and stable["steps_done"] == 60
    assert stable["shortest_distance"] > 1.6
    crowded = props.nvt_stability(copper, EMT(), 1358, shortest_allowed=2.45, steps=200,
                                  min_atoms=30, min_width=None)
    assert not crowded["stable"] and "apart" in crowded["failure"]
    assert crowded["steps_done"] < 200


def test_strain_fit_of_data_crystals(copper):
    # EMT-labelled uniaxial strains and shears of a 2x2x2 cell: the fit gives C11 and C44,
    # and says that C12 is not determined
    images = []
    for k, eps in enumerate([-0.01, -0.005, 0.005, 0.01, 0.015]):
        for kind in ("normal", "shear"):
            strain = np.eye(3)
            if kind == "normal":
                strain[k % 3, k % 3] += eps
            else:
                strain[0, 1] += eps
            atoms = copper.repeat(2)
            atoms.set_cell(atoms.cell.array @ strain.T, scale_atoms=True)
            atoms.calc = EMT()
            atoms.get_potential_energy()
            atoms.info["config_type"] = "Elastic"
            images.append(atoms)
    dataset = Dataset.from_atoms(images)
    guess = props.prototype("Cu", "fcc", copper.cell[0, 0] * 1.01)  # not the data's cell
    crystals = strained_crystals(dataset, guess)
    assert len(crystals) == len(images)
    fit = strain_fit_data(dataset, dataset.energy, crystals, guess, copper.cell[0, 0])["fit"]
    c11, _, c44 = _stress_difference_constants(copper)
    assert fit["C11"] == pytest.approx(c11, rel=0.03)
    assert fit["C44"] == pytest.approx(c44, rel=0.03)
    assert fit["C12"] is None


def test_reference_file_errors(tmp_path):
    path = tmp_path / "ref.yaml"
    path.write_text(yaml.safe_dump({"element": "Cu", "properties": {
        "C11": {"value": 170, "unit": "eV"}}}))
    with pytest.raises(ReferenceError, match=r"ref.yaml: properties.C11: unit 'eV'.*GPa"):
        load_reference(path)
    path.write_text(yaml.safe_dump({"properties": {"C11": {"value": "x", "unit": "GPa"}}}))
    with pytest.raises(ReferenceError, match="properties.C11: value 'x' is not a number"):
        load_reference(path)
    for element in ("Mo", "Si"):
        shipped = load_reference(f"potentials/references/{element}.yaml")
        assert shipped["element"] == element
        assert all(p["source"] for p in shipped["properties"].values())


# ----------------------------------------------------------------------------- end to end

@pytest.fixture(scope="module")
def fitted_cu(tmp_path_factory):
    """A 30-function Cu potential fitted with `ace fit` to EMT data, and the data."""
    import ase.io
    from test_cli import SMALL_BASIS, emt_images

    from ace.cli import main
    path = tmp_path_factory.mktemp("validate")
    images = emt_images(12, 0)
    for k, atoms in enumerate(emt_images(6, 5)):
        if k % 4 != 3:  # strained crystals, labelled as the data's elastic set
            atoms.positions = atoms.positions.round(8)
        images.append(atoms)
    ase.io.write(path / "train.xyz", images, format="extxyz")
    config = {"elements": ["Cu"], "cutoff": 4.5, "data": {"train": "train.xyz"},
              "output": "Cu.yaml", "basis": SMALL_BASIS, "fit": {"num_threads": 1}}
    (path / "fit.yaml").write_text(yaml.safe_dump(config))
    assert main(["fit", str(path / "fit.yaml")]) == 0
    reference = {"element": "Cu", "structure": "fcc",
                 "sources": {"emt": "ASE's EMT, computed in this test"},
                 "properties": {"lattice_constant": {"value": 3.5898, "unit": "Å",
                                                     "source": "emt"},
                                "C11": {"value": 172.6, "unit": "GPa", "source": "emt"},
                                "melting_point": {"value": 1358, "unit": "K"}}}
    (path / "Cu-ref.yaml").write_text(yaml.safe_dump(reference, allow_unicode=True))
    return path


def test_report_end_to_end(fitted_cu):
    from ace.validation import validate
    out = fitted_cu / "report"
    report = validate([fitted_cu / "Cu.yaml"], data=str(fitted_cu / "train.xyz"),
                      reference=fitted_cu / "Cu-ref.yaml", output_dir=out, num_threads=1,
                      md_steps=(40, 30), log=lambda message: None)
    stored = json.loads((out / "report.json").read_text())
    assert stored["schema_version"] == 1
    properties = stored["potentials"]["Cu"]["properties"]
    for name in REQUIRED:
        entry = properties[name]
        assert set(entry) >= {"value", "unit", "reference", "relative_error"}
        assert isinstance(entry["value"], float)
    lattice = properties["lattice_constant"]
    assert lattice["reference"] == 3.5898 and lattice["unit"] == "Å"
    assert lattice["relative_error"] == pytest.approx((lattice["value"] - 3.5898) / 3.5898)
    assert abs(lattice["relative_error"]) < 0.02  # the fit is close to EMT
    assert properties["C11"]["reference"] == 172.6
    assert properties["vacancy_formation_energy"]["reference"] is None
    assert properties["surface_energy_111"]["unit"] == "J/m^2"
    assert stored["potentials"]["Cu"]["data_errors"]["overall"]["n_structures"] == 18
    nvt = stored["potentials"]["Cu"]["details"]["nvt"]
    assert [run["temperature"] for run in nvt] == [1358, 1358 * 1.5]
    for figure in ("eos.png", "elastic.png", "phonons.png", "dimer.png", "md.png",
                   "parity.png", "errors.png", "force_vs_distance.png"):
        assert figure in report["figures"]
        assert (out / figure).read_bytes()[:4] == b"\x89PNG"
    text = (out / "report.md").read_text()
    assert "| lattice constant a | Å | 3.5898 |" in text and "![parity.png](parity.png)" in text
    assert "ASE's EMT, computed in this test" in text


def test_cli_quick_and_missing_matplotlib(fitted_cu, monkeypatch, capsys):
    from ace.cli import main
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib fails
    out = fitted_cu / "quick"
    assert main(["validate", str(fitted_cu / "Cu.yaml"), "--quick", "--structure", "fcc",
                 "--data", str(fitted_cu / "train.xyz"), "-o", str(out),
                 "--num-threads", "1"]) == 0
    captured = capsys.readouterr().out
    assert "install ace[plot]" in captured
    stored = json.loads((out / "report.json").read_text())
    assert stored["figures"] == [] and any("install ace[plot]" in n for n in stored["notes"])
    properties = stored["potentials"]["Cu"]["properties"]
    assert {"lattice_constant", "bulk_modulus", "C11", "C12", "C44"} <= set(properties)
    assert "vacancy_formation_energy" not in properties and "nve_drift" not in properties
    # without a reference file: the data's strained crystals give the lattice constant
    assert properties["lattice_constant"]["reference"] is not None
    assert not list(out.glob("*.png"))


def test_cli_errors_are_one_line(fitted_cu, tmp_path, capsys):
    from ace.cli import main
    assert main(["validate", str(fitted_cu / "Cu.yaml"), "--structure", "bct",
                 "-o", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ace validate: error: bct: not a structure name") and \
        err.count("\n") == 1
    bad = tmp_path / "ref.yaml"
    bad.write_text(yaml.safe_dump({"element": "Mo", "properties": {
        "C11": {"value": 1, "unit": "GPa"}}}))
    assert main(["validate", str(fitted_cu / "Cu.yaml"), "--reference", str(bad),
                 "-o", str(tmp_path)]) == 1
    assert "reference for Mo, but the potential is for Cu" in capsys.readouterr().err


def test_quick_validate_writes_beside_the_potential(fitted_cu):
    # what `ace fit` runs after a fit
    from ace.validation import quick_validate
    report = quick_validate(str(fitted_cu / "Cu.yaml"), data=str(fitted_cu / "train.xyz"),
                            num_threads=1, log=lambda message: None)
    out = fitted_cu / "Cu.validation"
    assert report["settings"]["quick"] and (out / "report.json").exists()
    assert {"eos.png", "elastic.png", "parity.png"} <= set(report["figures"])
    assert "phonons.png" not in report["figures"]
    properties = report["potentials"]["Cu"]["properties"]
    assert properties["C11"]["value"] == pytest.approx(172.6, rel=0.15)  # near EMT's


def test_fit_runs_the_quick_validation_unless_told_not_to(fitted_cu, tmp_path):
    """`ace fit` leaves <output>.validation/ with the quick report (EOS and elastic constants
    of the fitted potential); --no-validate and ace.fit(validate=False) skip it."""
    import shutil

    import ace
    from ace.cli import main

    path = fitted_cu
    report = json.loads((path / "Cu.validation" / "report.json").read_text())
    properties = report["potentials"]["Cu"]["properties"]
    assert {"lattice_constant", "bulk_modulus", "C11", "C12", "C44"} <= set(properties)
    assert 3.3 < properties["lattice_constant"]["value"] < 3.9
    for name in ("fit.yaml", "train.xyz"):
        shutil.copy(path / name, tmp_path / name)
    assert main(["fit", str(tmp_path / "fit.yaml"), "--no-validate"]) == 0
    assert not (tmp_path / "Cu.validation").exists()
    result = ace.fit(str(tmp_path / "fit.yaml"), validate=False)
    assert result.validation is None and not (tmp_path / "Cu.validation").exists()
