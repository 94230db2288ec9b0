"""The nonlinear fit: kernel values, exact loss gradients for every parameter kind and loss
term, the least-squares Jacobian, teacher-student recovery, checkpoint/resume, and settings."""
import json
from dataclasses import replace

import numpy as np
import pytest
from ase.calculators.singlepoint import SinglePointCalculator

from ace._core._gradient import model_values
from ace.calculator import ACECalculator
from ace.data import Dataset
from ace.evaluator import Evaluator, Structure, compile_model
from ace.fitting.nonlinear import (CheckpointError, LinearProjection, NonlinearLoss,
                               NonlinearSettings, ParameterLayout, fit_nonlinear, ladder_masks,
                               make_batches, resolve_optimizer)

from conftest import (make_structure, mixed_potential, potential_dict, random_cu_ni,
                      random_potential, requires_openmp, shift_densities_positive)

KINDS = ("bulk", "small_cell", "triclinic")


def teacher_data(potential, n, seed=0):
    """Structures labelled by ``potential`` (energies, forces, stresses)."""
    images = []
    for k in range(n):
        atoms = make_structure(KINDS[k % len(KINDS)], elements=tuple(potential.elements),
                               seed=seed + k)
        atoms.calc = ACECalculator(potential)
        labels = dict(energy=atoms.get_potential_energy(), forces=atoms.get_forces(),
                      stress=atoms.get_stress())
        atoms.calc = SinglePointCalculator(atoms, **labels)
        images.append(atoms)
    return Dataset.from_atoms(images)


def positive(potential):
    structures = [make_structure(k, elements=tuple(potential.elements), seed=i)
                  for i, k in enumerate(KINDS)]
    return shift_densities_positive(potential, structures)


def uneven_bonds_potential(seed=0):
    """Cu-Ni whose bonds differ in nradbase, nradmax and lmax (the kernels' per-bond ranges)."""
    d = potential_dict(("Cu", "Ni"), "ChebExpCos", "FinnisSinclairShiftedScaled", 2, 3, "zbl")
    d["bonds"]["CuNi"] = {"rcut": 4.0, "radbase": "SBessel", "radparameters": [1.0], "dcut": 0.2,
                          "nradbase": 6}
    d["functions"] = {"Cu": {"nradmax_by_orders": [5, 3, 2], "lmax_by_orders": [0, 2, 1]},
                      "Ni": {"nradmax_by_orders": [3, 1], "lmax_by_orders": [0, 1]},
                      "CuNi": {"nradmax_by_orders": [2, 2, 1], "lmax_by_orders": [0, 3, 1]}}
    potential = random_cu_ni(d, seed)
    sizes = {(b.nradbase, b.nradmax, b.lmax) for b in potential.bonds.values()}
    assert len(sizes) == 3, sizes
    return potential


POTENTIALS = {
    "fs-chebexpcos": lambda: positive(random_potential(ndensity=2, orders=4)),
    "fs-sbessel-distance": lambda: positive(random_potential(ndensity=2, inner="distance",
                                                             radbase="SBessel")),
    "fs-density-core": lambda: positive(random_potential(ndensity=2, inner="density")),
    "alloy-zbl": lambda: positive(mixed_potential(inner="zbl")),
    "alloy-uneven-bonds": lambda: positive(uneven_bonds_potential()),
}


@pytest.fixture(scope="module", params=sorted(POTENTIALS))
def problem(request):
    potential = POTENTIALS[request.param]()
    data = teacher_data(potential, 4)
    return potential, data


def loss_for(potential, data, tau, penalty_scale=1e-3, radial_l2=1e-3, num_threads=1,
             trainable=("coefficients", "radial", "e0")):
    rng = np.random.default_rng(7)
    layout = ParameterLayout(potential, trainable)
    batches = make_batches(potential, data, 0.5 + rng.random(len(data)))
    return NonlinearLoss(layout, compile_model(potential, design=True), batches, tau,
                         penalty_scale * rng.random(potential.n_functions), radial_l2,
                         num_threads)


def test_kernel_values_match_the_evaluator(problem):
    potential, data = problem
    evaluator = Evaluator(potential)
    layout = ParameterLayout(potential)
    coefs, crad, _ = layout.unpack(layout.pack())
    design = compile_model(potential, design=True)
    for s in range(len(data)):
        structure = Structure.from_atoms(potential, data.atoms(s))
        nl = evaluator.neighbours(structure)
        energies, pair_gradient = model_values(design, coefs, crad, structure.species, nl.first,
                                               nl.j, np.ascontiguousarray(nl.vectors), 1)
        reference = evaluator.compute(structure, neighbour_list=nl)
        forces = np.stack([np.bincount(nl.i, pair_gradient[:, a], len(structure.species))
                           - np.bincount(nl.j, pair_gradient[:, a], len(structure.species))
                           for a in range(3)], axis=1)
        e0 = potential.e0[structure.species]
        np.testing.assert_allclose(energies + e0, reference.energies, rtol=0, atol=1e-10)
        np.testing.assert_allclose(forces, reference.forces, rtol=0, atol=1e-10)


@pytest.mark.parametrize("tau", [{"forces": 0.0, "stress": 0.0}, {"forces": 1.0, "stress": 0.0},
                                 {"forces": 0.0, "stress": 1.0}],
                         ids=["energy", "forces", "stress"])
def test_loss_gradient_matches_finite_differences(problem, tau):
    potential, data = problem
    loss = loss_for(potential, data, tau)
    rng = np.random.default_rng(1)
    theta = loss.layout.pack()
    theta = theta * (1 + 0.02 * rng.standard_normal(theta.size))  # off the teacher's optimum
    value, gradient = loss.value_and_gradient(theta)
    assert value == pytest.approx(loss.value(theta), rel=1e-12)
    nc, nr, ne = loss.layout.sizes
    picks = np.concatenate([rng.choice(nc, 5, replace=False), nc + rng.choice(nr, 5, replace=False),
                            nc + nr + np.arange(ne)])
    h = 1e-6
    for k in picks:
        up, down = theta.copy(), theta.copy()
        up[k] += h
        down[k] -= h
        numeric = (loss.value(up) - loss.value(down)) / (2 * h)
        assert numeric == pytest.approx(gradient[k], rel=1e-5,
                                        abs=1e-7 * np.abs(gradient).max()), k


@requires_openmp
def test_gradient_is_independent_of_the_thread_count(problem):
    potential, data = problem
    tau = {"forces": 1.0, "stress": 0.5}
    theta = ParameterLayout(potential).pack() * 1.01
    one = loss_for(potential, data, tau, num_threads=1).value_and_gradient(theta)
    two = loss_for(potential, data, tau, num_threads=2).value_and_gradient(theta)
    assert one[0] == two[0]
    np.testing.assert_array_equal(one[1], two[1])


def test_least_squares_jacobian_is_the_gradient(problem):
    potential, data = problem
    loss = loss_for(potential, data, {"forces": 0.8, "stress": 0.3})
    theta = loss.layout.pack() * 1.02
    value, gradient = loss.value_and_gradient(theta)
    residuals, jacobian = loss.residuals_and_jacobian(theta)
    assert np.sum(residuals ** 2) == pytest.approx(value, rel=1e-12)
    np.testing.assert_allclose(2 * jacobian.T @ residuals, gradient, rtol=0,
                               atol=1e-10 * np.abs(gradient).max())


def test_gauss_newton_diagonal_estimate(problem):
    potential, data = problem
    loss = loss_for(potential, data, {"forces": 1.0, "stress": 0.2})
    theta = loss.layout.pack()
    _, jacobian = loss.residuals_and_jacobian(theta)
    exact = np.sum(jacobian ** 2, axis=0)
    estimate = loss.gauss_newton_diagonal(theta, n_probes=64)
    ratio = estimate[exact > 1e-8 * exact.max()] / exact[exact > 1e-8 * exact.max()]
    assert np.median(np.abs(np.log(ratio))) < 0.2


# ------------------------------------------------------------------------------- fitting

@pytest.fixture(scope="module")
def teacher():
    potential = positive(random_potential(ndensity=2, orders=2, seed=3))
    return potential, teacher_data(potential, 12), teacher_data(potential, 3, seed=40)


def perturbed_start(potential, size=0.05, seed=0):
    layout = ParameterLayout(potential, ("coefficients", "radial"))
    theta = layout.pack()
    theta *= 1 + size * np.random.default_rng(seed).standard_normal(theta.size)
    return layout.potential_for(theta)


def max_errors(fitted, reference, data):
    a, b = Evaluator(fitted), Evaluator(reference)
    de = df = 0.0
    for s in range(len(data)):
        atoms = data.atoms(s)
        ra = a.compute(Structure.from_atoms(fitted, atoms))
        rb = b.compute(Structure.from_atoms(reference, atoms))
        de = max(de, abs(ra.energy - rb.energy) / len(atoms))
        df = max(df, np.abs(ra.forces - rb.forces).max())
    return de, df


def test_teacher_student_recovers_the_teacher(teacher):
    potential, train, test = teacher
    start = perturbed_start(potential, size=0.01)
    before = max_errors(start, potential, test)
    settings = NonlinearSettings(optimizer="least_squares", max_iterations=40,
                                 checkpoint_every=40, radial_l2=0.0, validation_fraction=0,
                                 trainable=("coefficients", "radial"))
    fit = fit_nonlinear(start, train, settings, tau={"forces": 1.0, "stress": 0.1})
    energy_error, force_error = max_errors(fit.potential, potential, test)
    assert before[0] > 1e-2 and before[1] > 1e-2  # the start is far off (eV/atom, eV/Å)
    # on unseen structures; the data leave a near-null space (the scale shared between the
    # radial functions and the coefficients), so not to round-off
    assert energy_error < before[0] / 100 and force_error < before[1] / 30
    assert fit.report["history"][-1]["train"]["forces"] < 1e-7


def test_lbfgs_reduces_the_loss_and_keeps_the_best(teacher):
    potential, train, _ = teacher
    start = perturbed_start(potential, size=0.01, seed=1)
    settings = NonlinearSettings(optimizer="L-BFGS", max_iterations=60, checkpoint_every=20,
                                 validation_fraction=0)
    fit = fit_nonlinear(start, train, settings, tau={"forces": 1.0})
    initial = loss_for(start, train, {"forces": 1.0, "stress": 0.0}).terms(
        ParameterLayout(start).pack())
    history = fit.report["history"]
    scores = [sum(h["train"].values()) for h in history]
    assert scores[-1] < 1e-3 * (initial["energy"] + initial["forces"])
    assert fit.report["best_score"] == pytest.approx(min(scores))


@pytest.mark.parametrize("optimizer", ["L-BFGS", "varpro"])
def test_resume_after_interruption_matches_an_uninterrupted_fit(teacher, tmp_path, optimizer):
    potential, train, _ = teacher
    start = perturbed_start(potential, seed=2)
    settings = NonlinearSettings(optimizer=optimizer, max_iterations=30, checkpoint_every=10,
                                 validation_fraction=0)
    whole = fit_nonlinear(start, train, settings, tau={"forces": 1.0},
                          checkpoint=tmp_path / "whole.json")
    saved = []
    resumed = fit_interrupted_and_resumed(start, train, settings, tmp_path / "cut.json",
                                          saved.append)
    assert saved, "the best potential so far was handed out before the interruption"
    assert_same_fit(resumed, whole)


def fit_interrupted_and_resumed(start, train, settings, checkpoint, save_best=None):
    """The fit interrupted (Ctrl-C) after its first segment, then resumed from the checkpoint."""
    calls = []

    def interrupt_on_second_segment(message):
        calls.append(message)
        if len(calls) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit_nonlinear(start, train, settings, tau={"forces": 1.0}, checkpoint=checkpoint,
                      save_best=save_best, log=interrupt_on_second_segment)
    state = json.loads(checkpoint.read_text())["state"]
    assert (state["segment"], state["iteration"]) == (1, settings.checkpoint_every)
    return fit_nonlinear(start, train, settings, tau={"forces": 1.0}, checkpoint=checkpoint,
                         resume=True)


def assert_same_parameters(potential, other):
    np.testing.assert_array_equal(potential.coefficients, other.coefficients)
    for pair, bond in other.bonds.items():
        np.testing.assert_array_equal(potential.bonds[pair].crad, bond.crad)


def assert_same_fit(fit, other):
    assert_same_parameters(fit.potential, other.potential)
    assert fit.report["best_score"] == other.report["best_score"]
    assert fit.report["history"] == other.report["history"]


@pytest.mark.parametrize("optimizer", ["L-BFGS", "varpro"])
def test_checkpoint_segments_do_not_change_the_path(teacher, optimizer):
    """The optimiser's memory carries over the checkpoints: one segment of 30 iterations and
    three of 10 end at the same parameters."""
    potential, train, _ = teacher
    start = perturbed_start(potential, seed=5)
    fits = [fit_nonlinear(start, train, NonlinearSettings(
        optimizer=optimizer, max_iterations=30, checkpoint_every=every, validation_fraction=0),
        tau={"forces": 1.0}) for every in (30, 10)]
    assert [h["iteration"] for h in fits[1].report["history"]] == [10, 20, 30]
    assert_same_parameters(fits[1].potential, fits[0].potential)


@pytest.mark.parametrize("optimizer, batch_size", [("BFGS", None), ("L-BFGS", 6)],
                         ids=["BFGS", "mini-batch"])
def test_resume_repeats_fits_whose_memory_restarts_at_checkpoints(teacher, tmp_path,
                                                                  optimizer, batch_size):
    """scipy's BFGS, and any optimiser on mini-batches (a new batch each segment), start their
    memory afresh at every checkpoint. A resumed fit still repeats the
    uninterrupted one bit for bit (every segment starts from the checkpointed state, the
    batches are drawn from the segment's seed); what differs from L-BFGS is that the path
    depends on checkpoint_every."""
    potential, train, _ = teacher
    start = perturbed_start(potential, seed=2)
    settings = NonlinearSettings(optimizer=optimizer, batch_size=batch_size, max_iterations=24,
                                 checkpoint_every=8, validation_fraction=0)
    whole = fit_nonlinear(start, train, settings, tau={"forces": 1.0})
    assert whole.report["checkpoint_memory"] == "restarted"
    assert [h["iteration"] for h in whole.report["history"]] == [8, 16, 24]
    resumed = fit_interrupted_and_resumed(start, train, settings, tmp_path / "state.json")
    assert_same_fit(resumed, whole)
    one_segment = fit_nonlinear(start, train, replace(settings, checkpoint_every=24),
                                tau={"forces": 1.0})
    assert not np.array_equal(one_segment.potential.coefficients, whole.potential.coefficients)


def test_lbfgs_carries_its_memory_and_says_so(teacher):
    potential, train, _ = teacher
    settings = NonlinearSettings(optimizer="L-BFGS", max_iterations=4, checkpoint_every=2,
                                 validation_fraction=0)
    fit = fit_nonlinear(perturbed_start(potential, seed=2), train, settings)
    assert fit.report["checkpoint_memory"] == "carried"
    assert fit.report["runs"] == [{"restart": 0, "step": 0, "iterations": 4,
                                   "end": "max_iterations"}]
    assert fit.report["converged"] is False


def test_a_failed_line_search_ends_the_run_as_not_converged(teacher, monkeypatch):
    """A line search that finds no lower point ends the run (more iterations would repeat it),
    and the log and the report say the fit did not converge."""
    import ace.fitting.lbfgs as lbfgs

    potential, train, _ = teacher
    monkeypatch.setattr(lbfgs, "_line_search", lambda *args: None)
    messages = []
    settings = NonlinearSettings(optimizer="L-BFGS", max_iterations=20, checkpoint_every=5,
                                 restarts=2, validation_fraction=0)
    fit = fit_nonlinear(perturbed_start(potential, seed=2), train, settings, log=messages.append)
    assert fit.report["converged"] is False
    assert [run["end"] for run in fit.report["runs"]] == ["line search failed"] * 2
    assert [run["iterations"] for run in fit.report["runs"]] == [1, 1]  # one segment each
    ended = [m for m in messages if "ended" in m]
    assert len(ended) == 2 and all("not converged" in m and "line search" in m for m in ended)


def test_a_finished_fit_continues_with_more_iterations(teacher, tmp_path):
    """Raising max_iterations on resume continues the finished run: the same result as a fit
    given the larger max_iterations from the start."""
    potential, train, _ = teacher
    start = perturbed_start(potential, seed=2)
    settings = NonlinearSettings(max_iterations=30, checkpoint_every=10, validation_fraction=0)
    whole = fit_nonlinear(start, train, settings, tau={"forces": 1.0})
    checkpoint = tmp_path / "state.json"
    short = replace(settings, max_iterations=20)
    first = fit_nonlinear(start, train, short, tau={"forces": 1.0}, checkpoint=checkpoint)
    assert first.report["history"][-1]["iteration"] == 20
    assert whole.report["best_score"] < first.report["best_score"]
    continued = fit_nonlinear(start, train, settings, tau={"forces": 1.0},
                              checkpoint=checkpoint, resume=True)
    assert_same_fit(continued, whole)
    # resuming a finished fit with its own settings changes nothing
    again = fit_nonlinear(start, train, settings, tau={"forces": 1.0}, checkpoint=checkpoint,
                          resume=True)
    assert_same_fit(again, whole)


def test_resume_refuses_another_fits_checkpoint(teacher, tmp_path):
    potential, train, _ = teacher
    start = perturbed_start(potential, seed=2)
    checkpoint = tmp_path / "state.json"
    settings = NonlinearSettings(max_iterations=2, checkpoint_every=2, validation_fraction=0)
    fit_nonlinear(start, train, settings, checkpoint=checkpoint)
    other = NonlinearSettings(max_iterations=2, checkpoint_every=1, validation_fraction=0)
    with pytest.raises(CheckpointError, match="different fit"):
        fit_nonlinear(start, train, other, checkpoint=checkpoint, resume=True)
    # the data are recognised by content: the same structures read from elsewhere resume,
    # one changed force does not
    moved = replace(train, names=[f"/elsewhere/{name}" for name in train.names])
    fit_nonlinear(start, moved, settings, checkpoint=checkpoint, resume=True)
    forces = train.forces.copy()
    forces[0, 0] += 1e-3
    with pytest.raises(CheckpointError, match="different fit"):
        fit_nonlinear(start, replace(train, forces=forces), settings, checkpoint=checkpoint,
                      resume=True)
    checkpoint.write_text("{not json")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        fit_nonlinear(start, train, settings, checkpoint=checkpoint, resume=True)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        fit_nonlinear(start, train, settings, checkpoint=tmp_path / "absent.json", resume=True)


def test_restarts_ladder_and_minibatches_run_and_report(teacher):
    potential, train, _ = teacher
    start = perturbed_start(potential, seed=3)
    settings = NonlinearSettings(max_iterations=6, checkpoint_every=3, restarts=2, ladder=[4],
                                 batch_size=3, validation_fraction=0)
    fit = fit_nonlinear(start, train, settings, tau={"forces": 1.0})
    runs = {(h["restart"], h["step"]) for h in fit.report["history"]}
    assert runs == {(0, 0), (0, 1), (1, 0), (1, 1)}
    masks = ladder_masks(potential, [4])
    assert [int(m.sum()) for m in masks] == [4 * len(potential.elements), potential.n_functions]
    # the functions of the first step are the lowest in degree
    first = [f for f, on in zip(potential.functions, masks[0]) if on]
    assert max(f.rank for f in first) <= min(f.rank for f, on in
                                             zip(potential.functions, masks[0]) if not on)


def test_frozen_parameters_do_not_move(teacher):
    potential, train, _ = teacher
    start = perturbed_start(potential, seed=4)
    settings = NonlinearSettings(max_iterations=5, checkpoint_every=5, validation_fraction=0,
                                 trainable=("coefficients",))
    fit = fit_nonlinear(start, train, settings, tau={"forces": 1.0})
    for pair, bond in start.bonds.items():
        np.testing.assert_array_equal(fit.potential.bonds[pair].crad, bond.crad)
    np.testing.assert_array_equal(fit.potential.e0, start.e0)
    assert not np.array_equal(fit.potential.coefficients, start.coefficients)


@pytest.mark.parametrize("kwargs, message", [
    ({"optimizer": "adam"}, "optimizer"),
    ({"trainable": ["coefficients", "fs"]}, "trainable"),
    ({"trainable": []}, "trainable"),
    ({"max_iterations": 0}, "max_iterations"),
    ({"ladder": [10, 5]}, "ladder"),
    ({"batch_size": 0}, "batch_size"),
    ({"validation_fraction": 1.0}, "validation_fraction"),
])
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        NonlinearSettings(**kwargs)


def test_least_squares_refuses_a_huge_jacobian(teacher, monkeypatch):
    import ace.fitting.nonlinear.driver as nonlinear
    potential, train, _ = teacher
    monkeypatch.setattr(nonlinear, "MAX_JACOBIAN_ENTRIES", 10)
    settings = NonlinearSettings(optimizer="least_squares", max_iterations=1,
                                 validation_fraction=0)
    with pytest.raises(ValueError, match="Jacobian"):
        fit_nonlinear(potential, train, settings)


def test_start_from_linear_seeds_the_extra_densities(teacher):
    from ace.fitting.nonlinear import start_from_linear
    potential, _, _ = teacher
    linear = potential.copy()
    linear.coefficients[:, 1] = 0.0
    start = start_from_linear(potential, linear, seed=5)
    np.testing.assert_array_equal(start.coefficients[:, 0], linear.coefficients[:, 0])
    np.testing.assert_array_equal(start.e0, linear.e0)
    extra = start.coefficients[:, 1]
    assert np.all(extra[linear.coefficients[:, 0] != 0] != 0)  # no saddle at rho_2 = 0
    assert np.all(np.abs(extra) <= 1e-3 * np.abs(linear.coefficients[:, 0]))  # small
    np.testing.assert_array_equal(start_from_linear(potential, linear, seed=5).coefficients,
                                  start.coefficients)


# ------------------------------------------------------------------ variable projection

def projection_for(loss, data):
    weights = np.concatenate([b.weight for b in loss.batches])
    return LinearProjection(loss.layout, data, weights, loss.tau, loss.penalty)


def test_variable_projection_solves_the_linear_part_exactly(problem):
    potential, data = problem
    if resolve_optimizer(potential, NonlinearSettings()) != "varpro":
        with pytest.raises(ValueError, match="first density of"):
            resolve_optimizer(potential, NonlinearSettings(optimizer="varpro"))
        return
    loss = loss_for(potential, data, {"forces": 1.0, "stress": 0.1})
    projection = projection_for(loss, data)
    theta = loss.layout.pack()
    theta *= 1 + 0.02 * np.random.default_rng(1).standard_normal(theta.size)
    solved = projection.solve(theta)
    value, grad = loss.value_and_gradient(solved)
    linear = np.setdiff1d(np.arange(theta.size), projection.outer)
    # the solved part is at the loss's minimum for the rest: its gradient vanishes, while
    # the rest keeps a gradient (the loss and the normal equations are the same function)
    assert np.abs(grad[linear]).max() < 1e-7 * np.abs(grad[projection.outer]).max()
    assert value < loss.value(theta)
    np.testing.assert_array_equal(solved[projection.outer], theta[projection.outer])


def test_projected_loss_gradient_matches_finite_differences():
    potential = POTENTIALS["alloy-zbl"]()
    data = teacher_data(potential, 4)
    loss = loss_for(potential, data, {"forces": 1.0, "stress": 0.1})
    projection = projection_for(loss, data)
    outer = projection.outer
    theta = loss.layout.pack()
    theta[outer] *= 1 + 0.02 * np.random.default_rng(2).standard_normal(len(outer))

    def projected(z):
        full = theta.copy()
        full[outer] = z
        return loss.value(projection.solve(full))

    _, grad = loss.value_and_gradient(projection.solve(theta))
    direction = np.random.default_rng(3).standard_normal(len(outer)) * np.abs(theta[outer])
    h = 1e-4
    fd = (projected(theta[outer] + h * direction) - projected(theta[outer] - h * direction)) / (2 * h)
    assert grad[outer] @ direction == pytest.approx(fd, rel=1e-5)


def test_varpro_recovers_the_teacher(teacher):
    potential, train, test = teacher
    start = perturbed_start(potential, size=0.01)
    before = max_errors(start, potential, test)
    settings = NonlinearSettings(optimizer="varpro", max_iterations=60, checkpoint_every=60,
                                 radial_l2=0.0, validation_fraction=0,
                                 trainable=("coefficients", "radial"))
    fit = fit_nonlinear(start, train, settings, tau={"forces": 1.0, "stress": 0.1})
    assert fit.report["optimizer"] == "varpro"
    energy_error, force_error = max_errors(fit.potential, potential, test)
    assert energy_error < before[0] / 100 and force_error < before[1] / 30


def test_auto_optimizer_and_varpro_refusals(teacher):
    potential, train, _ = teacher
    assert resolve_optimizer(potential, NonlinearSettings()) == "varpro"
    for kwargs, reason in [({"ladder": [4]}, "ladder"), ({"batch_size": 3}, "batch_size"),
                           ({"trainable": ["radial"]}, "frozen")]:
        assert resolve_optimizer(potential, NonlinearSettings(**kwargs)) == "L-BFGS"
        with pytest.raises(ValueError, match=reason):
            fit_nonlinear(potential, train, NonlinearSettings(optimizer="varpro", **kwargs))


def test_solve_symmetric_handles_scale_zero_columns_and_singular_systems():
    from ace.fitting.nonlinear import solve_symmetric
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20, 4)) * np.array([1e-4, 1.0, 1e4, 0.0])  # scales; one unused
    A, b = X.T @ X, X.T @ rng.standard_normal(20)
    x = solve_symmetric(A, b)
    assert x[3] == 0.0
    np.testing.assert_allclose(A @ x, b, rtol=1e-10, atol=1e-10 * np.abs(b).max())
    singular = np.column_stack([X[:, :3], X[:, 1]])  # a repeated column: no Cholesky
    A, b = singular.T @ singular, singular.T @ rng.standard_normal(20)
    x = solve_symmetric(A, b)
    np.testing.assert_allclose(A @ x, b, rtol=1e-8, atol=1e-8 * np.abs(b).max())
    assert np.abs(x).max() < 1e3 * np.abs(solve_symmetric(A[:3, :3], b[:3])).max()


def test_varpro_with_a_validation_split_and_restarts(teacher):
    potential, train, _ = teacher
    start = perturbed_start(potential, size=0.01, seed=6)
    settings = NonlinearSettings(optimizer="varpro", max_iterations=10, checkpoint_every=5,
                                 restarts=2, validation_fraction=0.25)
    fit = fit_nonlinear(start, train, settings, tau={"forces": 1.0})
    history = fit.report["history"]
    assert {h["restart"] for h in history} == {0, 1}
    assert fit.report["n_validation_structures"] == 3
    # the projection solved on the fit structures only: their loss is stationary in the first
    # density's coefficients at the result
    fit_idx, _ = train.split_indices(0.25, settings.seed)
    layout = ParameterLayout(fit.potential)
    loss = NonlinearLoss(layout, compile_model(fit.potential, design=True),
                         make_batches(fit.potential, train, np.ones(len(train)), fit_idx),
                         {"forces": 1.0, "stress": 0.0}, np.zeros(potential.n_functions),
                         settings.radial_l2)
    _, grad = loss.value_and_gradient(layout.pack())
    first = layout.coef_index % layout.coefs0.shape[1] == 0
    nc = layout.sizes[0]
    assert np.abs(grad[:nc][first]).max() < 1e-6 * np.abs(grad[:nc][~first]).max()
    scores = [sum(h["validation"].values()) for h in history]
    assert fit.report["best_score"] == pytest.approx(min(scores))


def test_projection_of_a_one_density_potential_with_a_core():
    potential = random_potential(ndensity=1, inner="zbl", radbase="SBessel")
    assert potential.has_core_repulsion and potential.ndensity_max == 1
    data = teacher_data(potential, 3)
    loss = loss_for(potential, data, {"forces": 1.0, "stress": 0.1})
    projection = projection_for(loss, data)
    theta = loss.layout.pack()
    theta *= 1 + 0.02 * np.random.default_rng(4).standard_normal(theta.size)
    _, grad = loss.value_and_gradient(projection.solve(theta))
    linear = np.setdiff1d(np.arange(theta.size), projection.outer)
    assert np.abs(grad[linear]).max() < 1e-7 * np.abs(grad[projection.outer]).max()
