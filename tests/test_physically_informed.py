"""Physically-informed ACE (ace.physically_informed, ace.fitting.physically_informed): with C = 0
it is its traditional potential exactly; forces, stress and the loss gradient in C, p0, E0
against finite differences; invariance; 1 vs 2 threads; teacher-student recovery of known
coefficients; the file round trip and clear errors for bad files."""
import numpy as np
import pytest
from ase.calculators.singlepoint import SinglePointCalculator
from ase.stress import full_3x3_to_voigt_6_stress

from ace.data import Dataset
from ace.evaluator import Structure
from ace.fitting.physically_informed import (PhysicallyInformedLoss, fit_physically_informed,
                                             make_samples)
from ace.neighbours import build_neighbour_list
from ace.physical import SPECS, form_by_name, per_atom
from ace.physically_informed import (PhysicallyInformedEvaluator, PhysicallyInformedPotential,
                                     potential_from_dict)
from ace.potential import PotentialFileError

from conftest import make_structure, random_potential, requires_openmp

FORMS = ("bop", "eam")
KINDS = ("bulk", "slab", "cluster")
CUTOFF, WIDTH = 4.5, 1.0


def start_parameters(name):
    return np.array([[SPECS[name].start[k] for k in SPECS[name].parameter_names]])


BOUND = 0.04  # a half-width of the bounded map comparable to the shifts of pinn(amplitude=0.1)


def pinn(name, seed=0, amplitude=0.0, orders=2, bounded=False, clipped=False):
    """A Cu PINN potential on a small random descriptor; C random with |Delta p| ~ amplitude
    on the test structures (0: C = 0); ``bounded``: every parameter within BOUND of p0 (the
    tanh map, in its curved part at these shifts); ``clipped``: B soft-clipped to a range
    (mean +- 0.3 std of the bulk structure's atoms) that most atoms of every structure leave."""
    descriptor = random_potential(("Cu",), ndensity=1, orders=orders, seed=3, rcut=CUTOFF)
    form = form_by_name(name, cutoff=CUTOFF, cutoff_width=WIDTH)
    pot = PhysicallyInformedPotential(form, descriptor, start_parameters(name), e0=[0.3],
                                      max_shift=np.full((1, 8), BOUND) if bounded else None)
    if clipped:
        b = PhysicallyInformedEvaluator(pot).descriptor.basis_values(
            Structure.from_atoms(descriptor, make_structure("bulk")), 1)
        spread = 0.3 * b.std(axis=0)
        pot.descriptor_range = np.stack([b.mean(axis=0) - spread, b.mean(axis=0) + spread])[None]
    if amplitude:
        b = PhysicallyInformedEvaluator(pot).descriptor.basis_values(
            Structure.from_atoms(descriptor, make_structure("bulk")), 1)
        scale = np.abs(b).max(axis=0) * b.shape[1]
        rng = np.random.default_rng(seed)
        pot.coefficients = amplitude * rng.standard_normal(pot.coefficients.shape) / scale
    return pot


VARIANTS = [dict(name=n) for n in FORMS] + [dict(name="bop", bounded=True),
                                             dict(name="bop", clipped=True),
                                             dict(name="eam", bounded=True, clipped=True)]
VARIANT_IDS = ["bop", "eam", "bop-bounded", "bop-clipped", "eam-bounded-clipped"]


def compute(pot, atoms, num_threads=1):
    return PhysicallyInformedEvaluator(pot).compute(
        Structure.from_atoms(pot.descriptor, atoms), num_threads)


@pytest.mark.parametrize("name", FORMS)
@pytest.mark.parametrize("kind", KINDS)
def test_zero_coefficients_give_the_traditional_potential_exactly(name, kind):
    pot = pinn(name)
    atoms = make_structure(kind, seed=1)
    result = compute(pot, atoms)
    nl = build_neighbour_list(atoms.positions, atoms.cell.array, atoms.pbc, CUTOFF)
    params = np.repeat(start_parameters(name), len(atoms), axis=0)
    traditional = per_atom(pot.form, nl, np.zeros(len(atoms), np.int32), params, num_threads=1)
    np.testing.assert_array_equal(result.energies, traditional.energies + 0.3)
    np.testing.assert_array_equal(result.forces, traditional.forces)
    np.testing.assert_array_equal(result.strain_derivative, traditional.virial)
    np.testing.assert_array_equal(result.parameters, params)


def deformed(atoms, displacement, strain, t):
    work = atoms.copy()
    deformation = np.eye(3) + t * strain
    work.positions = atoms.positions @ deformation.T + t * displacement
    work.cell = atoms.cell.array @ deformation.T
    return work


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("kind", KINDS)
def test_forces_and_strain_derivative_by_finite_differences(variant, kind):
    """-sum F . g and sum S : D against central differences of E along g and along D."""
    name = variant["name"]
    pot = pinn(amplitude=0.1, **variant)
    atoms = make_structure(kind, seed=3)
    result = compute(pot, atoms)
    assert np.abs(result.parameters - start_parameters(name)).max() > 0.01
    if variant.get("clipped"):
        assert (result.descriptor_slope < 0.999).mean() > 0.1  # atoms beyond the range
    rng = np.random.default_rng(4)
    g = rng.standard_normal((len(atoms), 3))
    strain = rng.standard_normal((3, 3))
    for displacement, d, expected in ((g, 0 * strain, -(result.forces * g).sum()),
                                      (0 * g, strain, (result.strain_derivative * strain).sum())):
        errors = []
        for h in (1e-3, 1e-4, 1e-5, 2e-6):
            plus = compute(pot, deformed(atoms, displacement, d, h)).energy
            minus = compute(pot, deformed(atoms, displacement, d, -h)).energy
            errors.append(abs((plus - minus) / (2 * h) - expected))
        assert min(errors) < 3e-7 * max(1.0, abs(expected)), (errors, expected)
        assert errors[0] > 10 * min(errors)  # falls with the step: no kink on the path


def test_invariance():
    pot = pinn("bop", amplitude=0.1)
    atoms = make_structure("cluster", seed=3)
    reference = compute(pot, atoms)
    rng = np.random.default_rng(2)
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q *= np.sign(np.diag(r))
    moved = atoms.copy()
    moved.positions = atoms.positions @ q.T + rng.standard_normal(3)
    rotated = compute(pot, moved)
    assert abs(rotated.energy - reference.energy) < 1e-10 * abs(reference.energy)
    np.testing.assert_allclose(rotated.forces, reference.forces @ q.T, rtol=0,
                               atol=1e-10 * np.abs(reference.forces).max())
    order = rng.permutation(len(atoms))
    permuted = compute(pot, atoms[order])
    assert abs(permuted.energy - reference.energy) < 1e-10 * abs(reference.energy)
    np.testing.assert_allclose(permuted.forces, reference.forces[order], rtol=0,
                               atol=1e-10 * np.abs(reference.forces).max())


@requires_openmp
@pytest.mark.parametrize("kind", ("bulk", "cluster"))
def test_one_and_two_threads_agree(kind):
    pot = pinn("bop", amplitude=0.1)
    atoms = make_structure(kind, seed=5)
    one, two = compute(pot, atoms, 1), compute(pot, atoms, 2)
    np.testing.assert_array_equal(one.parameters, two.parameters)
    np.testing.assert_allclose(two.energies, one.energies, rtol=1e-12)
    np.testing.assert_allclose(two.forces, one.forces, rtol=0,
                               atol=1e-12 * np.abs(one.forces).max())
    np.testing.assert_allclose(two.strain_derivative, one.strain_derivative, rtol=0,
                               atol=1e-12 * np.abs(one.strain_derivative).max())


def labelled(teacher, kinds, seed=0, noise=0.0):
    """Structures labelled by ``teacher`` (energies, forces, stresses, plus noise)."""
    rng = np.random.default_rng(seed)
    images = []
    for k, kind in enumerate(kinds):
        atoms = make_structure(kind, seed=seed + k)
        r = compute(teacher, atoms)
        labels = dict(energy=r.energy + noise * rng.standard_normal(),
                      forces=r.forces + noise * rng.standard_normal(r.forces.shape))
        if atoms.pbc.all():
            stress = 0.5 * (r.strain_derivative + r.strain_derivative.T) / atoms.get_volume()
            labels["stress"] = (full_3x3_to_voigt_6_stress(stress)
                                + 0.01 * noise * rng.standard_normal(6))
        atoms.calc = SinglePointCalculator(atoms, **labels)
        images.append(atoms)
    return Dataset.from_atoms(images)


@pytest.mark.parametrize("variant", VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("train_base", (False, True))
def test_loss_gradient_by_finite_differences(variant, train_base):
    """Every term (energy, forces, stress, penalty) in C, p0 and E0, at a point off the data."""
    name, bounded = variant["name"], variant.get("bounded", False)
    teacher = pinn(name, seed=1, amplitude=0.1)
    data = labelled(teacher, ("bulk", "triclinic", "small_cell"), noise=1.0)
    start = pinn(seed=2, amplitude=0.1 if bounded else 0.05, **variant)
    if bounded:  # the map's curvature matters: shifts reach into the tanh's bend
        ratio = np.abs(compute(start, make_structure("bulk")).parameters
                       - start.base_parameters).max() / BOUND
        assert 0.3 < ratio < 1, ratio
    samples = make_samples(start, data, np.array([1.0, 0.5, 2.0]), num_threads=1)
    loss = PhysicallyInformedLoss(start, samples, {"forces": 0.5, "stress": 0.3}, penalty=0.1,
                                  train_base=train_base, num_threads=1)
    theta = loss.pack()
    terms = loss.terms(theta)
    assert all(v > 0 for v in terms.values()), terms
    _, gradient = loss.value_and_gradient(theta)
    rng = np.random.default_rng(0)
    nc, nb, ne = loss.sizes
    chosen = np.concatenate([rng.choice(nc, 10, replace=False), np.arange(nc, nc + nb + ne)])
    for k in chosen:
        h = 1e-6 * max(1.0, abs(theta[k]))
        plus, minus = theta.copy(), theta.copy()
        plus[k] += h
        minus[k] -= h
        numerical = (loss.value(plus) - loss.value(minus)) / (2 * h)
        assert abs(numerical - gradient[k]) < 1e-6 * max(1.0, abs(numerical)), (
            k, numerical, gradient[k])


def test_teacher_student_recovers_known_coefficients():
    """Noise-free labels of a teacher with known C on A and sigma (a two-function descriptor):
    the fit from C = 0 and tau = 0 finds C again. (Varying every parameter, the data fix the
    predictions but not C: exp(A - alpha r) and exp(B - beta r) at nearly equal r leave
    directions of C free.)"""
    varied = ("A", "sigma")
    teacher = pinn("eam", seed=7, amplitude=0.1, orders=([2], [0]))
    rows = np.isin(teacher.form.parameter_names, varied)
    teacher.coefficients[:, ~rows] = 0.0
    data = labelled(teacher, ("bulk", "triclinic", "small_cell", "slab", "bulk", "triclinic"),
                    seed=10)
    student = pinn("eam", orders=([2], [0]))
    samples = make_samples(student, data, np.ones(len(data)), num_threads=1)
    fitted, info = fit_physically_informed(student, samples, {"forces": 1.0, "stress": 0.0},
                                           penalty=0.0, n_iter=200, gtol=1e-12, num_threads=1,
                                           varied=varied)
    assert sum(info["loss"].values()) < 1e-20 * info["initial_loss"], info
    np.testing.assert_allclose(fitted.coefficients, teacher.coefficients, rtol=0,
                               atol=1e-8 * np.abs(teacher.coefficients).max())


def test_steps_outside_the_domain_are_refused_by_the_loss():
    """Local parameters with sigma < 0 give the loss +inf (the line search backs off)."""
    pot = pinn("eam")
    data = labelled(pinn("eam", amplitude=0.1), ("bulk",))
    loss = PhysicallyInformedLoss(pot, make_samples(pot, data, np.ones(1), num_threads=1),
                                  {"forces": 1.0, "stress": 0.0}, penalty=0.0, train_base=True,
                                  num_threads=1)
    theta = loss.pack()
    nc = loss.sizes[0]
    theta[nc + list(pot.form.parameter_names).index("sigma")] = -1.0
    assert loss.value(theta) == np.inf
    with pytest.raises(ValueError, match="varied parameters"):
        PhysicallyInformedLoss(pot, loss.samples, {"forces": 1.0}, 0.0, varied=("Z",))


def test_bounded_shifts_stay_within_their_half_widths_far_from_the_data():
    """Compressed to half its volume, the unbounded potential's local parameters move far; the
    bounded one's stay within max_shift of p0 however far C moves them, and agree to first order
    near p0."""
    free = pinn("bop", amplitude=0.1)
    bounded = pinn("bop", amplitude=0.1)
    bounded.max_shift = np.full((1, 8), 0.05)
    atoms = make_structure("bulk", seed=1)
    atoms.set_cell(atoms.cell * 0.8, scale_atoms=True)
    far = compute(free, atoms).parameters - free.base_parameters
    kept = compute(bounded, atoms).parameters - bounded.base_parameters
    assert np.abs(far).max() > 0.1 and np.abs(kept).max() < 0.05
    np.testing.assert_allclose(np.abs(kept), 0.05 * np.tanh(np.abs(far) / 0.05), rtol=1e-12)
    free.coefficients *= 1e-4
    bounded.coefficients *= 1e-4
    small = compute(free, atoms).parameters - free.base_parameters
    np.testing.assert_allclose(compute(bounded, atoms).parameters - bounded.base_parameters,
                               small, rtol=1e-6)


@pytest.mark.parametrize("bounded", (False, True))
def test_file_round_trip(tmp_path, bounded):
    pot = pinn("bop", amplitude=0.1, clipped=bounded)
    pot.tau = 0.25
    if bounded:
        pot.max_shift[0, [0, 5]] = [0.3, 0.2]  # A and sigma bounded, the others not
        pot.clip_margin = 0.2
    path = tmp_path / "pinn.yaml"
    pot.save(path)
    loaded = PhysicallyInformedPotential.load(path)
    assert loaded.form.name == "bop" and loaded.tau == 0.25
    np.testing.assert_array_equal(loaded.coefficients, pot.coefficients)
    np.testing.assert_array_equal(loaded.base_parameters, pot.base_parameters)
    np.testing.assert_array_equal(loaded.max_shift, pot.max_shift)
    assert ("max_shift" in pot.to_dict()) == bounded
    assert ("descriptor_range" in pot.to_dict()) == bounded
    if bounded:
        np.testing.assert_array_equal(loaded.descriptor_range, pot.descriptor_range)
        assert loaded.clip_margin == 0.2
    atoms = make_structure("bulk", seed=1)
    assert compute(loaded, atoms).energy == compute(pot, atoms).energy


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(extra=1), "unknown keys"),
    (lambda d: d.pop("tau"), "missing keys"),
    (lambda d: d.update(form="tersoff"), "unknown physical form"),
    (lambda d: d.update(parameter_names=list(reversed(d["parameter_names"]))),
     "parameter_names"),
    (lambda d: d["coefficients"].update(Cu=[[0.0]]), "coefficients of Cu"),
    (lambda d: d.update(tau=-1.0), "tau"),
    (lambda d: d["base_parameters"].update(Cu=[-1.0] * 8), ">= 0"),
    (lambda d: d["descriptor"].pop("bonds"), "descriptor"),
    (lambda d: d.update(max_shift={"Cu": {"sigma": -1.0}}), "max_shift of Cu, sigma"),
    (lambda d: d.update(max_shift={"Cu": {"Z": 1.0}}), "max_shift of Cu"),
    (lambda d: d.update(max_shift={"Fe": {"A": 1.0}}), "max_shift must map"),
    (lambda d: d.update(descriptor_range={"margin": 0.1, "ranges": {"Cu": {"low": [0.0]}}}),
     "descriptor_range of Cu"),
    (lambda d: d.update(descriptor_range={"margin": 0.1, "ranges": {"Fe": {}}}),
     "descriptor_range must be"),
    (lambda d: d.update(descriptor_range={
        "margin": -1, "ranges": {"Cu": {"low": [0.0] * 29, "high": [1.0] * 29}}}), "margin"),
])
def test_bad_files_give_clear_errors(change, message):
    data = pinn("bop").to_dict()
    data["base_parameters"]["Cu"] = list(data["base_parameters"]["Cu"])
    change(data)
    with pytest.raises((ValueError, PotentialFileError), match=message):
        potential_from_dict(data)


def test_bad_shapes_and_parameters_are_refused():
    form = form_by_name("bop", cutoff=CUTOFF, cutoff_width=WIDTH)
    descriptor = random_potential(("Cu",), ndensity=1, orders=1, seed=3, rcut=CUTOFF)
    bad = start_parameters("bop")
    bad[0, 5] = -1.0  # sigma < 0: a square root of the form needs it positive
    with pytest.raises(ValueError, match="sigma"):
        PhysicallyInformedPotential(form, descriptor, bad)
    with pytest.raises(ValueError, match="coefficients must have shape"):
        PhysicallyInformedPotential(form, descriptor, start_parameters("bop"),
                                    coefficients=np.zeros((1, 8, 99)))


def test_calculator_io_export_and_info(tmp_path):
    """Loaded by ace.io, evaluated by ACECalculator (forces and stress against finite
    differences), described by ``ace info``, refused by ``ace export`` with the reason."""
    import ace
    from ace.calculator import ACECalculator
    from ace.io import load_potential
    from ace.testing import check_forces, check_stress

    path = tmp_path / "pinn.yaml"
    pinn("bop", amplitude=0.1).save(path)
    assert isinstance(load_potential(path), PhysicallyInformedPotential)
    atoms = make_structure("bulk", seed=1)
    atoms.calc = ACECalculator(str(path), num_threads=1)
    check_forces(atoms)
    check_stress(atoms)
    from ace.api import describe
    assert describe(path)["kind"] == "physically-informed"
    with pytest.raises(ValueError, match="no PACE format exists"):
        ace.export(path, tmp_path / "out.yace")


def test_ace_fit_writes_a_physically_informed_potential(tmp_path):
    """`ace fit` end to end: the traditional fit inline, tau chosen from two on a split of the
    training set, C fitted; the file loads, evaluates and records its fit."""
    import ace
    from test_traditional_fit import write_config

    config = write_config(
        tmp_path, "{kind: physically-informed, form: eam, tau: [0.0, 1.0], max_iterations: 15, "
                  "traditional: {cutoff_width: 0.8, restarts: 1, max_iterations: 40}, "
                  "basis: {functions: {number_of_functions_per_element: 8, "
                  "ALL: {nradmax_by_orders: [4, 2], lmax_by_orders: [0, 1]}}}}")
    result = ace.fit(str(config), validate=False, num_threads=1, progress=False)
    report = result.report
    assert report["method"] == "physically-informed"
    assert [row["tau"] for row in report["tau_selection"]] == [0.0, 1.0]
    assert sum(report["fit"]["loss"].values()) < report["fit"]["initial_loss"]
    loaded = ace.load(tmp_path / "Mo.yaml")
    assert isinstance(loaded, PhysicallyInformedPotential)
    assert loaded.descriptor.n_functions == 8
    np.testing.assert_array_equal(loaded.coefficients, result.potential.coefficients)
    assert (tmp_path / "Mo.metrics.json").exists()


def test_traditional_potential_from_a_file(tmp_path):
    """traditional: a path: p0 and E0 are the file's, nothing else is fitted before C."""
    import ace
    from test_traditional_fit import teacher, write_config

    teacher("eam").save(tmp_path / "eam.yaml")
    config = write_config(tmp_path, "{kind: physically-informed, form: eam, tau: 0.1, "
                                    "max_iterations: 3, traditional: eam.yaml, basis: "
                                    "{functions: {ALL: {nradmax_by_orders: [3], "
                                    "lmax_by_orders: [0]}}}}")
    result = ace.fit(str(config), validate=False, num_threads=1, progress=False)
    np.testing.assert_array_equal(result.potential.base_parameters[0],
                                  teacher("eam").parameters["Mo"])
    assert result.report["traditional"] == "eam.yaml" and result.report["tau"] == 0.1
    assert not result.potential.bounded
    # max_shift: a fraction of |p0| for every parameter, or half-widths by name
    p0 = result.potential.base_parameters[0]
    for shift, expected in ((0.5, 0.5 * np.abs(p0)),
                            ("{A: 0.2, sigma: 0.1}", [0.2, np.inf, np.inf, np.inf, np.inf,
                                                      0.1, np.inf, np.inf])):
        text = (tmp_path / "fit.yaml").read_text()
        (tmp_path / "fit.yaml").write_text(text.replace(
            "form: eam, tau", f"form: eam, max_shift: {shift}, tau"))
        bounded = ace.fit(str(config), validate=False, num_threads=1, progress=False)
        np.testing.assert_array_equal(bounded.potential.max_shift[0], expected)
        assert ace.load(tmp_path / "Mo.yaml").bounded
        (tmp_path / "fit.yaml").write_text(text)
    # clip_descriptor: the range of B over the training atoms; inside it nothing changes
    text = (tmp_path / "fit.yaml").read_text()
    (tmp_path / "fit.yaml").write_text(text.replace("form: eam, tau",
                                                    "form: eam, clip_descriptor: true, tau"))
    clipped = ace.fit(str(config), validate=False, num_threads=1, progress=False)
    pot = ace.load(tmp_path / "Mo.yaml")
    np.testing.assert_array_equal(pot.descriptor_range, clipped.potential.descriptor_range)
    train = clipped.train
    samples = make_samples(pot, train, np.ones(len(train)), num_threads=1)
    b = np.concatenate([s.basis_values for s in samples])
    np.testing.assert_array_equal(pot.descriptor_range[0], [b.min(axis=0), b.max(axis=0)])
    values, slope = pot.clipped_descriptor(np.zeros(len(b), int), b)
    np.testing.assert_array_equal(values, b)
    assert (slope == 1).all()
    (tmp_path / "fit.yaml").write_text(text)
    (tmp_path / "fit.yaml").write_text((tmp_path / "fit.yaml").read_text().replace(
        "form: eam, tau", "form: bop, tau"))
    with pytest.raises(ValueError, match="is a eam potential"):
        ace.fit(str(tmp_path / "fit.yaml"), validate=False, num_threads=1, progress=False)


@pytest.mark.parametrize("model, message", [
    ("{kind: physically-informed, form: eam}", "model.traditional: a physically-informed"),
    ("{kind: physically-informed, form: eam, traditional: {restart: 1}}",
     r"model.traditional: unknown key\(s\) \['restart'\]"),
    ("{kind: physically-informed, form: eam, traditional: 3}", "model.traditional: the path"),
    ("{kind: physically-informed, form: eam, traditional: {}, tau: -1}", "model.tau"),
    ("{kind: physically-informed, form: eam, traditional: {}, varied: [zeta]}",
     "model.varied: unknown parameter"),
    ("{kind: physically-informed, form: eam, traditional: {}, basis: {embeddings: {}}}",
     "model.basis"),
    ("{kind: physically-informed, form: eam, traditional: {}, taus: 1}", "taus"),
    ("{kind: physically-informed, form: eam, traditional: {}, validation_fraction: 1}",
     "model.validation_fraction"),
    ("{kind: physically-informed, form: eam, traditional: {}, max_shift: -0.5}",
     "model.max_shift: a positive number"),
    ("{kind: physically-informed, form: eam, traditional: {}, max_shift: {zeta: 1}}",
     "model.max_shift: unknown parameter"),
    ("{kind: physically-informed, form: eam, traditional: {}, clip_descriptor: 1}",
     "model.clip_descriptor: true or false"),
])
def test_bad_physically_informed_sections_are_named(tmp_path, model, message):
    from ace.fitting.config import ConfigError, FitConfig
    from test_traditional_fit import write_config

    with pytest.raises(ConfigError, match=message):
        FitConfig.load(write_config(tmp_path, model))


def test_bop_energy_is_continuous_when_a_neighbour_enters_the_cutoff():
    """Three atoms in a row: k crosses i's cutoff while close to j (r_jk = 2 Å), so that
    r_ik + r_jk - r_ij = 4 Å < r_c."""
    from ase import Atoms

    form = form_by_name("bop", cutoff=CUTOFF, cutoff_width=WIDTH)
    params = np.repeat(start_parameters("bop"), 3, axis=0)

    def energy(x_k):
        atoms = Atoms("Cu3", positions=[[0, 0, 0], [2.5, 0, 0], [x_k, 0, 0]], pbc=False)
        nl = build_neighbour_list(atoms.positions, atoms.cell.array, atoms.pbc, CUTOFF)
        return per_atom(form, nl, np.zeros(3, np.int32), params, num_threads=1).energy

    def jump(eps):
        return abs(energy(CUTOFF - eps) - energy(CUTOFF + eps))

    # continuous: the change shrinks with the step (k also moves relative to j, so it has a
    # slope); the screening before f_c(r_ik) faded it jumped by ~1.6 meV however small the step
    assert jump(1e-9) < 2e-3 * jump(1e-6) + 1e-12
