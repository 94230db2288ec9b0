"""Fitting traditional potentials (ace.fitting.traditional, model: {kind: traditional}):
teacher-student recovery of known BOP and EAM parameters, `ace fit` end to end, config errors."""
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

import ace
from ace.calculator import ACECalculator
from ace.data import Dataset
from ace.fitting.config import ConfigError, FitConfig
from ace.fitting.linear import LossSettings
from ace.fitting.traditional import TraditionalLoss, TraditionalSettings, fit_traditional
from ace.physical import form_by_name
from ace.physical.potential import TraditionalPotential

CUTOFF, WIDTH = 4.2, 0.8
TEACHERS = {"bop": [8.8, 2.75, 4.4, 1.65, -0.33, 1.1, 0.22, 1.1],
            "eam": [8.0, 2.4, 3.5, 1.0, 2.0, 3.0, 0.5, 0.05]}


def labelled(teacher, n_bulk=7, n_clusters=3, seed=0):
    """Strained, rattled bcc cells at several densities and small clusters, labelled by
    ``teacher`` (energies, forces and, for the cells, stresses)."""
    rng = np.random.default_rng(seed)
    images = []
    for k in range(n_bulk + n_clusters):
        if k < n_bulk:
            atoms = bulk("Mo", "bcc", a=2.9 + 0.1 * k, cubic=True).repeat((2, 1, 1))
            atoms.set_cell(atoms.cell.array @ (np.eye(3) + 0.02 * rng.normal(size=(3, 3))),
                           scale_atoms=True)
        else:
            n = 3 + 2 * (k - n_bulk)
            atoms = Atoms("Mo" * n, positions=bulk("Mo", "bcc", a=3.1, cubic=True)
                          .repeat((2, 2, 1)).positions[:n])
        atoms.rattle(0.1, seed=k)
        atoms.calc = ACECalculator(teacher)
        extra = {"stress": atoms.get_stress(voigt=False)} if atoms.pbc.all() else {}
        atoms.calc = SinglePointCalculator(atoms, energy=atoms.get_potential_energy(),
                                           forces=atoms.get_forces(), **extra)
        atoms.info["config_type"] = "bulk" if atoms.pbc.all() else "cluster"
        images.append(atoms)
    return images


def teacher(name):
    return TraditionalPotential(["Mo"], form_by_name(name, CUTOFF, WIDTH),
                                {"Mo": TEACHERS[name]}, e0=[-2.0])


@pytest.mark.parametrize("name", ["bop", "eam"])
def test_teacher_student_recovers_parameters(name):
    data = Dataset.from_atoms(labelled(teacher(name)))
    names = form_by_name(name, CUTOFF, WIDTH).parameter_names
    # the student starts 10 % away from the teacher in every parameter
    start = {n: v * (0.9 if k % 2 else 1.1) for k, (n, v) in enumerate(zip(names, TEACHERS[name]))}
    settings = TraditionalSettings(form=name, cutoff=CUTOFF, cutoff_width=WIDTH, restarts=1,
                                   max_iterations=300, gtol=1e-10, parameters=start)
    potential, report = fit_traditional(data, settings,
                                        LossSettings(forces=1.0, stress=1.0, e0={"Mo": -2.0}),
                                        ["Mo"], num_threads=1)
    assert report["loss"] < 1e-12
    np.testing.assert_allclose(potential.parameters["Mo"], TEACHERS[name], rtol=1e-4, atol=1e-4)


def test_loss_gradient_is_exact():
    """The loss gradient (per_atom + adjoint) against finite differences of the loss."""
    data = Dataset.from_atoms(labelled(teacher("bop"), n_bulk=3, n_clusters=2))
    form = form_by_name("bop", CUTOFF, WIDTH)
    loss = TraditionalLoss(form, data, np.linspace(1, 2, len(data)), 0.7, 0.3, num_threads=1)
    p = np.array(TEACHERS["bop"]) * 0.95
    _, gradient, gradient_e0 = loss.terms_and_gradient(p, -1.9)
    h = 1e-6
    value = lambda q, e0: sum(loss.terms_and_gradient(q, e0)[0].values())
    for k in range(form.n_params):
        step = np.zeros(form.n_params)
        step[k] = h
        fd = (value(p + step, -1.9) - value(p - step, -1.9)) / (2 * h)
        assert gradient[k] == pytest.approx(fd, rel=1e-5, abs=1e-9)
    assert gradient_e0 == pytest.approx((value(p, -1.9 + h) - value(p, -1.9 - h)) / (2 * h),
                                        rel=1e-6)


def test_cutoff_below_the_nearest_distance_is_refused():
    data = Dataset.from_atoms(labelled(teacher("eam"), n_bulk=2, n_clusters=0))
    settings = TraditionalSettings(form="eam", cutoff=2.0, cutoff_width=WIDTH, restarts=1)
    with pytest.raises(ValueError, match="no two atoms are closer than the cutoff 2 Å"):
        fit_traditional(data, settings, LossSettings(), ["Mo"], num_threads=1)


def write_config(tmp_path, model, extra=""):
    write(tmp_path / "train.xyz", labelled(teacher("eam"), n_bulk=5, n_clusters=2))
    (tmp_path / "fit.yaml").write_text(
        f"elements: [Mo]\ncutoff: {CUTOFF}\ndata: {{train: train.xyz}}\noutput: Mo.yaml\n"
        f"e0: {{Mo: -2.0}}\nmodel: {model}\n{extra}")
    return tmp_path / "fit.yaml"


def test_ace_fit_writes_a_traditional_potential(tmp_path):
    config = write_config(tmp_path, "{kind: traditional, form: eam, cutoff_width: 0.8, "
                                    "restarts: 2, max_iterations: 60, "
                                    "bounds: {c2: [-0.5, 0.5]}}")
    result = ace.fit(str(config), validate=False, num_threads=1, progress=False)
    assert result.tables["train"]["overall"]["energy_mae"] < 50  # meV/atom, a short fit
    loaded = ace.load(tmp_path / "Mo.yaml")
    assert isinstance(loaded, TraditionalPotential) and loaded.form.name == "eam"
    np.testing.assert_array_equal(loaded.parameters["Mo"], result.potential.parameters["Mo"])
    assert loaded.metadata["fit"]["report"]["method"] == "traditional"
    assert ace.describe(loaded)["n_parameters"] == 8
    with pytest.raises(ValueError, match="no PACE format exists for it"):
        ace.export(loaded, tmp_path / "Mo.yace")


@pytest.mark.parametrize("model, extra, message", [
    ("{kind: traditional, form: tersoff}", "", "model.form: expected one of"),
    ("{kind: traditional}", "", "model.form: a traditional model needs its form"),
    ("{kind: classical, form: eam}", "", "model.kind: expected one of ace, traditional"),
    ("{kind: physically-informed, form: eam}", "", "model.traditional: a physically-informed"),
    ("{kind: traditional, form: eam, restart: 3}", "", "restart"),
    ("{kind: traditional, form: eam, parameters: {zeta: 1}}", "", "unknown parameter"),
    ("{kind: traditional, form: bop, bounds: {sigma: [-1, 2]}}", "",
     "model.bounds.sigma: the lower bound -1 is below 0"),
    ("{kind: traditional, form: bop, bounds: {a: [2, 1]}}", "", "lower < upper"),
    ("{kind: traditional, form: bop, parameters: {a: 9}}", "",
     "model.parameters.a: the start value 9 is outside its bounds"),
    ("{kind: traditional, form: eam, cutoff: 3.0}", "", "model.cutoff: 3.0 differs"),
    ("{kind: traditional, form: eam, cutoff_width: -1}", "", "cutoff_width of the eam form"),
    ("{kind: traditional, form: eam, restarts: 0}", "", "model.restarts: expected a whole"),
    ("{kind: traditional, form: eam}", "basis: {functions: {ALL: {}}}\n",
     "basis: applies to ACE fits only"),
    ("{kind: traditional, form: eam}", "fit: {method: nonlinear}\n",
     "fit.method: applies to ACE fits only"),
    ("{kind: ace, form: eam}", "", "form"),
])
def test_bad_model_sections_are_named(tmp_path, model, extra, message):
    with pytest.raises(ConfigError, match=message):
        FitConfig.load(write_config(tmp_path, model, extra))


def test_default_model_is_ace(tmp_path):
    config = FitConfig.load(write_config(tmp_path, "{kind: ace}"))
    assert config.model is None and "model" not in config.to_dict()


@pytest.mark.parametrize("name", ["bop", "eam"])
def test_calculator_evaluates_a_saved_traditional_potential(tmp_path, name):
    from ace.neighbours import build_neighbour_list
    from ace.physical import per_atom
    from ace.testing import check_forces, check_stress
    path = tmp_path / "pot.yaml"
    teacher(name).save(path)
    atoms = bulk("Mo", "bcc", a=3.1, cubic=True).repeat((2, 1, 1))
    atoms.rattle(0.1, seed=1)
    atoms.calc = ACECalculator(str(path), num_threads=1)
    nl = build_neighbour_list(atoms.positions, atoms.cell.array, True, CUTOFF)
    direct = per_atom(form_by_name(name, CUTOFF, WIDTH), nl, np.zeros(len(atoms)),
                      np.tile(TEACHERS[name], (len(atoms), 1)), 1)
    assert atoms.get_potential_energy() == pytest.approx(direct.energy - 2.0 * len(atoms),
                                                         rel=1e-12)
    np.testing.assert_allclose(atoms.get_forces(), direct.forces, atol=1e-12)
    check_forces(atoms)
    check_stress(atoms)
    with pytest.raises(ValueError, match="active sets and committees belong to ACE"):
        ACECalculator(str(path), committee=True)


def test_potential_files_are_checked(tmp_path):
    from ace.potential import PotentialFileError
    path = tmp_path / "pot.yaml"
    teacher("bop").save(path)
    text = path.read_text()
    path.write_text(text.replace("kind: traditional", "kind: mystery"))
    with pytest.raises(PotentialFileError, match="unknown potential kind 'mystery'"):
        ace.load(path)
    path.write_text(text.replace("form: bop", "form: eam"))
    with pytest.raises(PotentialFileError, match="checksum mismatch"):
        ace.load(path)
    teacher("bop").save(path)
    assert ace.load(path).to_dict() == teacher("bop").to_dict()
