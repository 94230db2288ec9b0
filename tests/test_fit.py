"""The linear fit: recovery of a known linear ACE potential, the ridge algebra, weights, metrics."""
import numpy as np
import pytest
from ase.build import bulk
from ase.calculators.singlepoint import SinglePointCalculator

from ace.basis import build_basis
from ace.calculator import ACECalculator
from ace.data import Dataset
from ace.fitting.linear import (LossSettings, NormalEquations, RidgeSystem, check_linear, fit_linear,
                            normal_equations, structure_weights)
from ace.fitting.metrics import Predictions, error_table, evaluate, format_table
from ace.potential import ACEPotential

E0_TRUE = -3.7


def basis_dict(inner=None):
    bond = {"radbase": "ChebExpCos", "radparameters": [2.0], "rcut": 4.5, "dcut": 0.01}
    if inner == "zbl":
        bond.update({"inner_cutoff_type": "zbl", "core-repulsion": [1.0, 1.0], "r_in": 1.9,
                     "delta_in": 0.4})
    return {"elements": ["Cu"],
            "embeddings": {"ALL": {"npot": "FinnisSinclairShiftedScaled", "ndensity": 1,
                                   "fs_parameters": [1, 1]}},
            "bonds": {"ALL": bond},
            "functions": {"ALL": {"nradmax_by_orders": [6, 3, 2], "lmax_by_orders": [0, 2, 1]}}}


@pytest.fixture(scope="module")
def basis():
    return build_basis(basis_dict())


def true_potential(basis, seed=0):
    rng = np.random.default_rng(seed)
    return ACEPotential.from_basis(basis, rng.normal(size=basis.n_functions), e0=[E0_TRUE])


def emt_like_structures(n, seed=0, volume=0.04, strain=0.03, rattle=0.2):
    """Rattled and strained fcc/bcc/sc/hcp Cu cells, some with a vacancy (8-27 atoms); the
    lattice constants, strains and displacements spread with ``volume``, ``strain`` and
    ``rattle`` (relative, relative, Å)."""
    rng = np.random.default_rng(seed)
    images = []
    for k in range(n):
        kind = ("fcc", "bcc", "sc", "hcp")[k % 4]
        a0 = {"fcc": 3.6, "bcc": 2.87, "sc": 2.4, "hcp": 2.55}[kind]
        atoms = bulk("Cu", kind, a=a0 * (1 + volume * rng.normal()), cubic=kind != "hcp")
        atoms = atoms.repeat([(2, 2, 2), (2, 2, 2), (3, 3, 3), (2, 2, 2)][k % 4])
        atoms.set_cell(atoms.cell.array @ (np.eye(3) + strain * rng.normal(size=(3, 3))),
                       scale_atoms=True)
        atoms.rattle(rattle, seed=k)
        if k % 3 == 0:
            del atoms[0]
        atoms.info["config_type"] = kind
        images.append(atoms)
    return images


def label(images, potential):
    calc = ACECalculator(potential, num_threads=1)
    out = []
    for atoms in images:
        atoms = atoms.copy()
        atoms.calc = calc
        results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces(),
                   "stress": atoms.get_stress()}
        atoms.calc = SinglePointCalculator(atoms, **results)
        out.append(atoms)
    return Dataset.from_atoms(out)


@pytest.fixture(scope="module")
def recovery_data(basis):
    """Exact labels of a known potential on 48 structures (more than the 35 parameters), spread
    widely in density, strain and displacement so that the functions are well separated on
    them: the standardised design's condition number is about 1e4."""
    truth = true_potential(basis)
    return truth, label(emt_like_structures(48, volume=0.08, strain=0.05, rattle=0.3), truth)


def recovery_tolerance(report):
    """Relative coefficient error that round-off alone can explain for exact labels.

    The recovery fits have no penalty (l2 = 0), so the smoothness prior would change nothing
    but the scaling of the columns; they use the scale-free standardisation (smoothness None),
    which conditions the solve best.

    The normal equations square the condition number kappa of the (standardised) design, so
    their solve loses about kappa^2 eps; a factor 100 covers the summation of thousands of rows
    into the Gram matrices in an order that depends on the threads and chunks (measured errors
    are 1-3 kappa^2 eps). Well-conditioned data keep this far below the error of any wrong
    solve (checked: a 1e-5 relative perturbation of the solution fails)."""
    tolerance = 100 * report["condition"] ** 2 * np.finfo(float).eps
    assert tolerance < 1e-5, f"the recovery problem is too ill-conditioned: {report['condition']}"
    return tolerance


def test_recovers_known_coefficients_and_e0(basis, recovery_data):
    truth, data = recovery_data
    assert 20 <= basis.n_functions <= 40 and max(f.rank for f in basis.functions) == 3
    fit = fit_linear(ACEPotential.from_basis(basis), data,
                     LossSettings(forces=1.0, stress=1.0, l2=0.0, smoothness=None), num_threads=1)
    tolerance = recovery_tolerance(fit.report)
    c_true = truth.coefficients[:, 0]
    c_fit = fit.potential.coefficients[:, 0]
    assert np.abs(c_fit - c_true).max() <= tolerance * np.abs(c_true).max()
    assert fit.potential.e0[0] == pytest.approx(E0_TRUE, rel=tolerance)
    assert fit.report["rank"] == basis.n_functions + 1
    assert fit.report["e0_fitted"] and fit.report["unused_functions"] == 0


def test_recovers_with_given_e0_and_two_threads(basis, recovery_data):
    truth, data = recovery_data
    fit = fit_linear(ACEPotential.from_basis(basis), data,
                     LossSettings(forces=1.0, stress=1.0, l2=0.0, smoothness=None, e0={"Cu": E0_TRUE}),
                     num_threads=2, chunk_rows=7)
    tolerance = recovery_tolerance(fit.report)
    c_true = truth.coefficients[:, 0]
    assert np.abs(fit.potential.coefficients[:, 0] - c_true).max() <= \
        tolerance * np.abs(c_true).max()
    assert fit.potential.e0[0] == E0_TRUE and not fit.report["e0_fitted"]


def test_core_repulsion_is_subtracted(recovery_data):
    """With a ZBL core the fixed part of the model is taken off the targets: still exact."""
    basis = build_basis(basis_dict("zbl"))
    truth = true_potential(basis, seed=1)
    images = emt_like_structures(16, seed=2)
    images[2].positions[1] = images[2].positions[0] + [1.8, 0.3, 0.0]  # inside the ZBL blend
    data = label(images, truth)
    fit = fit_linear(ACEPotential.from_basis(basis), data,
                     LossSettings(forces=1.0, stress=1.0, l2=0.0, smoothness=None), num_threads=1)
    c_true = truth.coefficients[:, 0]
    # the close pair makes the design less well conditioned (about 1e5): a looser bound; a
    # wrong subtraction of the core part would give errors of order 1
    assert np.abs(fit.potential.coefficients[:, 0] - c_true).max() <= 1e-4 * np.abs(c_true).max()
    assert fit.potential.e0[0] == pytest.approx(E0_TRUE, rel=1e-6)


def test_chunking_does_not_change_the_normal_equations(basis, recovery_data):
    _, data = recovery_data
    pot = ACEPotential.from_basis(basis)
    w = np.linspace(0.5, 2.0, len(data))
    big = normal_equations(pot, data, w, None, 1, chunk_rows=4096)
    small = normal_equations(pot, data, w, None, 1, chunk_rows=5)
    for t in big.present:
        np.testing.assert_allclose(small.terms[t]["gram"], big.terms[t]["gram"], rtol=1e-12,
                                   atol=1e-12 * np.abs(big.terms[t]["gram"]).max())
        np.testing.assert_allclose(small.terms[t]["rhs"], big.terms[t]["rhs"], rtol=1e-12)
        assert small.terms[t]["rows"] == big.terms[t]["rows"]
    # accumulating in parts (the cross-validation folds) and adding them up gives the same
    parts = np.arange(len(data)) % 3
    folds = normal_equations(pot, data, w, None, 1, chunk_rows=64, parts=parts)
    assert len(folds) == 3
    assert folds[1].terms["energy"]["rows"] == np.sum(parts == 1)
    total = folds[0] + folds[1] + folds[2]
    for t in big.present:
        np.testing.assert_allclose(total.terms[t]["gram"], big.terms[t]["gram"], rtol=1e-10,
                                   atol=1e-12 * np.abs(big.terms[t]["gram"]).max())
    # the energy rows are per atom, with one E0 column per element counting atoms / N = 1
    assert big.terms["energy"]["rows"] == len(data)
    assert big.terms["forces"]["rows"] == 3 * data.total_atoms
    assert big.terms["stress"]["rows"] == 9 * len(data)
    assert big.terms["energy"]["gram"][-1, -1] == pytest.approx(w.sum())


def random_problem(seed=0, n_rows=200, nf=12, ne=2):
    """NormalEquations of random rows (one term) and the stacked rows themselves."""
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(n_rows, nf + ne)) * rng.uniform(0.1, 100, nf + ne)
    y = rng.normal(size=n_rows)
    term = {"gram": A.T @ A, "rhs": A.T @ y, "yy": y @ y, "rows": n_rows, "weight": n_rows}
    return NormalEquations({"energy": term}, nf, ne), A, y


def test_ridge_without_penalty_is_least_squares():
    neq, A, y = random_problem()
    system = RidgeSystem(*neq.combined({}), neq.n_functions, neq.n_e0)
    expected, *_ = np.linalg.lstsq(A, y, rcond=None)
    np.testing.assert_allclose(system.solve(0.0), expected, rtol=1e-9, atol=1e-12)


def test_ridge_is_scale_free_and_leaves_e0_unpenalised():
    neq, A, y = random_problem(seed=1)
    base = RidgeSystem(*neq.combined({}), neq.n_functions, neq.n_e0).solve(0.3)
    scaled_A = A.copy()
    scaled_A[:, 3] *= 1000.0  # a function 1000 times larger gets a 1000 times smaller coefficient
    scaled = NormalEquations({"energy": {"gram": scaled_A.T @ scaled_A, "rhs": scaled_A.T @ y,
                                         "yy": y @ y, "rows": len(y), "weight": len(y)}},
                             neq.n_functions, neq.n_e0)
    params = RidgeSystem(*scaled.combined({}), neq.n_functions, neq.n_e0).solve(0.3)
    expected = base.copy()
    expected[3] /= 1000.0
    np.testing.assert_allclose(params, expected, rtol=1e-8)
    # E0 is the exact least-squares optimum given the coefficients
    c = params[:neq.n_functions]
    e0, *_ = np.linalg.lstsq(scaled_A[:, neq.n_functions:], y - scaled_A[:, :neq.n_functions] @ c,
                             rcond=None)
    np.testing.assert_allclose(params[neq.n_functions:], e0, rtol=1e-8)


def test_smoothness_prior_penalises_rough_functions_and_is_the_stated_minimum(basis):
    """With a prior the solve minimises the loss + l2 * sum_k prior_k * mean(g) * c_k^2 (E0
    free): checked against the penalised normal equations solved directly; the prior's weights
    grow with the degree sum(n) + sum(l) and are 1 at the mean degree."""
    from ace.fitting.linear import smoothness_prior

    weights = smoothness_prior(ACEPotential.from_basis(basis), 2.0)
    degree = np.array([sum(f.ns) + sum(f.ls) for f in basis.functions], dtype=float)
    np.testing.assert_allclose(weights, ((1 + degree) / (1 + degree.mean())) ** 2)
    assert smoothness_prior(ACEPotential.from_basis(basis), None) is None

    neq, A, y = random_problem(seed=2)
    nf, ne = neq.n_functions, neq.n_e0
    prior = np.linspace(0.2, 5.0, nf)
    l2 = 0.05
    params = RidgeSystem(*neq.combined({}), nf, ne, prior).solve(l2)
    # the reference: E0 projected out, then (G + l2 * mean(diag) * prior) c = b
    G, b = A.T @ A / len(y), A.T @ y / len(y)
    K = np.linalg.solve(G[nf:, nf:], G[nf:, :nf])
    schur = G[:nf, :nf] - G[:nf, nf:] @ K
    rhs = b[:nf] - G[:nf, nf:] @ np.linalg.solve(G[nf:, nf:], b[nf:])
    c = np.linalg.solve(schur + l2 * np.mean(np.diag(schur)) * np.diag(prior), rhs)
    np.testing.assert_allclose(params[:nf], c, rtol=1e-8, atol=1e-12)
    # a rougher function (larger prior weight) is shrunk more than with the scale-free ridge
    plain = RidgeSystem(*neq.combined({}), nf, ne).solve(l2)
    assert abs(params[nf - 1]) < abs(plain[nf - 1])


def test_cross_validation_errors_match_explicit_refits():
    """The held-out RMSE from fold normal equations equals refitting on the other folds and
    predicting the held-out rows explicitly."""
    from ace.fitting.linear import CrossValidation

    rng = np.random.default_rng(7)
    blocks = []
    for k in range(3):
        A = rng.normal(size=(30, 9))
        y = A @ rng.normal(size=9) + 0.1 * rng.normal(size=30)
        blocks.append((A, y))
    folds = [NormalEquations({"energy": {"gram": A.T @ A, "rhs": A.T @ y, "yy": y @ y,
                                         "rows": len(y), "weight": len(y)}}, 8, 1)
             for A, y in blocks]
    cv = CrossValidation(folds, range(3))
    cv.evaluate([(0.0, 0.0, 1e-3)])
    sse = 0.0
    for k, (A_k, y_k) in enumerate(blocks):
        A = np.vstack([b[0] for j, b in enumerate(blocks) if j != k])
        y = np.concatenate([b[1] for j, b in enumerate(blocks) if j != k])
        neq = NormalEquations({"energy": {"gram": A.T @ A, "rhs": A.T @ y, "yy": y @ y,
                                          "rows": len(y), "weight": len(y)}}, 8, 1)
        params = RidgeSystem(*neq.combined({}), 8, 1).solve(1e-3)
        sse += np.sum((A_k @ params - y_k) ** 2)
    assert cv.results[(0.0, 0.0, 1e-3)]["energy"] == pytest.approx(np.sqrt(sse / 90), rel=1e-9)
    # the folds solved one after another and on two threads at once agree
    candidates = [(0.0, 0.0, l2) for l2 in (1e-6, 1e-3, 1.0)]
    serial, parallel = CrossValidation(folds, range(3), 1), CrossValidation(folds, range(3), 2)
    serial.evaluate(candidates)
    parallel.evaluate(candidates)
    for key in candidates:
        assert parallel.results[key]["energy"] == pytest.approx(serial.results[key]["energy"],
                                                                rel=1e-12)


def test_gcv_prefers_more_regularisation_for_noisier_data():
    rng = np.random.default_rng(4)
    A = rng.normal(size=(60, 40))
    truth = rng.normal(size=40) * np.exp(-np.arange(40) / 5)
    choices = []
    for noise in (1e-4, 1.0):
        y = A @ truth + noise * rng.normal(size=60)
        neq = NormalEquations({"energy": {"gram": A.T @ A, "rhs": A.T @ y, "yy": y @ y,
                                          "rows": 60, "weight": 60}}, 40, 0)
        system = RidgeSystem(*neq.combined({}), 40, 0)
        grid = np.logspace(-10, 1, 23)
        choices.append(grid[np.argmin(system.gcv(grid))])
    assert choices[1] > 100 * choices[0]


def test_automatic_choice_fits_noisy_data(basis, recovery_data):
    """Validation-chosen weights and ridge on noisy labels: finite choices from the grids, and
    errors near the noise level."""
    truth, data = recovery_data
    rng = np.random.default_rng(5)
    noisy = data.subset(np.arange(len(data)))
    noisy.energy = noisy.energy + 0.01 * noisy.n_atoms * rng.normal(size=len(noisy))
    noisy.forces = noisy.forces + 0.05 * rng.normal(size=noisy.forces.shape)
    logs = []
    fit = fit_linear(ACEPotential.from_basis(basis), noisy, LossSettings(), num_threads=1,
                     log=logs.append)
    report = fit.report
    assert report["method"] == "cv" and report["n_validation_structures"] == len(noisy)
    assert 0 < report["l2"] <= 1 and report["weights"]["forces"] > 0
    assert any("chosen by cross-validation" in line for line in logs)
    table = evaluate(fit.potential, data, num_threads=1)
    assert table["overall"]["forces_rmse"] < 0.1 * np.abs(data.forces).std()
    split = fit_linear(ACEPotential.from_basis(basis), noisy, LossSettings(method="validation"),
                       num_threads=1)
    assert split.report["method"] == "validation"
    assert 0 < split.report["n_validation_structures"] < len(noisy)
    gcv = fit_linear(ACEPotential.from_basis(basis), noisy, LossSettings(method="gcv"),
                     num_threads=1)
    assert gcv.report["method"] == "gcv" and np.isfinite(gcv.potential.coefficients).all()


class BowlSearch:
    """The evaluate/scored interface of CrossValidation with a known score: a tilted bowl in
    (log10 tau_F, log10 lambda) with its minimum at ``optimum``."""

    def __init__(self, optimum):
        self.optimum = np.log10(optimum)
        self.results = {}
        self.terms = ["energy", "forces"]

    def evaluate(self, candidates):
        for key in candidates:
            f, l = np.log10(key[0]) - self.optimum[0], np.log10(key[2]) - self.optimum[1]
            self.results[key] = 2.0 + (f ** 2 + 0.3 * f * l + 0.2 * l ** 2) / 10

    def scored(self):
        return sorted(({"forces": k[0], "stress": k[1], "l2": k[2], "score": v}
                       for k, v in self.results.items()), key=lambda r: r["score"])


@pytest.mark.parametrize("optimum", [(0.01, 1e-4), (10 ** -3.5, 1e-12), (10 ** 0.5, 1e-8),
                                     (0.1, 1e-2), (1e-4, 1e-11)])
def test_lattice_search_finds_the_lattice_optimum(optimum):
    """Coarse coordinate descent then the fine pattern search reach the best lattice point
    (also at the lattice's edges, and off the coarse points) with far fewer candidates than
    the full lattice."""
    from ace.fitting.linear import FORCES_LATTICE, L2_LATTICE, lattice_search

    cv = BowlSearch(optimum)
    best = lattice_search(cv, FORCES_LATTICE, L2_LATTICE, 0.0, start=0.01)
    assert (best["forces"], best["l2"]) == pytest.approx(optimum, rel=1e-12)
    assert len(cv.results) <= len(FORCES_LATTICE) * len(L2_LATTICE) / 4


def test_staged_selection_matches_the_full_lattice(basis, recovery_data):
    """On noisy data the staged search chooses the same (tau_F, lambda) as scoring every
    point of the lattice. These noise levels make two valleys, the better one reached only by
    a diagonal step of the fine search. A fixed tau_F stays fixed."""
    from ace.fitting.linear import (FORCES_LATTICE, L2_LATTICE, CrossValidation, fold_indices,
                                select_hyperparameters)

    truth, data = recovery_data
    rng = np.random.default_rng(11)
    noisy = data.subset(np.arange(len(data)))
    noisy.energy = noisy.energy + 0.02 * noisy.n_atoms * rng.normal(size=len(noisy))
    noisy.forces = noisy.forces + 0.1 * rng.normal(size=noisy.forces.shape)
    noisy.has_stress[:] = False
    folds = normal_equations(ACEPotential.from_basis(basis), noisy, np.ones(len(noisy)), None, 1,
                             parts=fold_indices(noisy, 5))
    full = CrossValidation(folds, range(5))
    full.evaluate([(f, 0.0, l) for f in FORCES_LATTICE for l in L2_LATTICE])
    expected = full.scored()[0]
    best, table = select_hyperparameters(CrossValidation(folds, range(5)), LossSettings(), False)
    assert (best["forces"], best["l2"]) == (expected["forces"], expected["l2"])
    assert len(table) <= len(FORCES_LATTICE) * len(L2_LATTICE) / 4
    fixed = CrossValidation(folds, range(5))
    best, table = select_hyperparameters(fixed, LossSettings(forces=0.05), False)
    assert {r["forces"] for r in table} == {0.05}
    line = CrossValidation(folds, range(5))
    line.evaluate([(0.05, 0.0, l) for l in L2_LATTICE])
    assert best["l2"] == line.scored()[0]["l2"]


def test_structure_weights():
    images = emt_like_structures(8)
    for k, atoms in enumerate(images):
        atoms.calc = SinglePointCalculator(atoms, energy=-3.0 * len(atoms) + (0.5 if k == 1 else 0))
    data = Dataset.from_atoms(images)
    w = structure_weights(data, LossSettings(config_type={"bcc": 3.0}), ["Cu"])
    np.testing.assert_allclose(w, np.where(data.config_type == "bcc", 3.0, 1.0))
    w = structure_weights(data, LossSettings(energy_kT=0.01, energy_min_weight=0.05), ["Cu"])
    assert w[1] == pytest.approx(0.05) and np.all(w[[0, 2, 3]] > 0.9)
    with pytest.warns(UserWarning, match="absent from the data"):
        structure_weights(data, LossSettings(config_type={"liquid": 2.0}), ["Cu"])


def test_settings_and_embedding_checks(basis, recovery_data):
    with pytest.raises(ValueError, match="forces"):
        LossSettings(forces=-1)
    with pytest.raises(ValueError, match="method"):
        LossSettings(method="bayes")
    with pytest.raises(ValueError, match="config_type weights"):
        LossSettings(config_type={"bulk": -1})
    _, data = recovery_data
    with pytest.raises(ValueError, match=r"unknown \['Ni'\]"):
        fit_linear(ACEPotential.from_basis(basis), data, LossSettings(e0={"Cu": 0.0, "Ni": 1.0}))
    nonlinear = basis_dict()
    nonlinear["embeddings"]["ALL"].update(ndensity=2, fs_parameters=[1, 1, 1, 0.5])
    with pytest.raises(ValueError, match="linear embedding"):
        check_linear(ACEPotential.from_basis(build_basis(nonlinear)))


def test_error_table_units_and_groups():
    images = emt_like_structures(4)
    for atoms in images:
        atoms.calc = SinglePointCalculator(atoms, energy=-10.0, forces=np.zeros((len(atoms), 3)),
                                           stress=np.zeros(6))
    data = Dataset.from_atoms(images)
    n = data.n_atoms
    energy = data.energy + 0.002 * n * np.array([1, -1, 1, -1])  # 2 meV/atom
    forces = np.full((data.total_atoms, 3), 0.1)
    stress = np.zeros((4, 3, 3))
    stress[:, 0, 0] = 0.01  # eV/Å^3 = 1.602 GPa on one of six components
    table = error_table(data, Predictions(energy, forces, stress))
    overall = table["overall"]
    assert overall["energy_rmse"] == pytest.approx(2.0) and overall["energy_mae"] == pytest.approx(2.0)
    assert overall["forces_rmse"] == pytest.approx(0.1) and overall["forces_mae"] == pytest.approx(0.1)
    assert overall["stress_mae"] == pytest.approx(1.602176634 / 6, rel=1e-6)
    assert overall["stress_rmse"] == pytest.approx(1.602176634 / np.sqrt(6), rel=1e-6)
    assert set(table["by_config_type"]) == {"fcc", "bcc", "sc", "hcp"}
    assert table["by_config_type"]["sc"]["n_atoms"] == n[2]
    text = format_table(table, "demo")
    assert "energy (meV/atom)" in text and "stress (GPa)" in text and "overall" in text


def test_plain_progress_lines_without_tqdm():
    import io

    from ace.fitting import progress_bar

    assert progress_bar(False) is None
    stream = io.StringIO()
    progress = progress_bar(True, stream=stream, interval=0.0, use_tqdm=False)
    assert list(progress(range(4), "design rows")) == [0, 1, 2, 3]
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4 and lines[0].startswith("design rows: 1/4 (25%)")
    assert "left" in lines[0] and lines[-1].startswith("design rows: 4/4 (100%)")
    stream = io.StringIO()  # a long interval: only the closing line
    progress = progress_bar(True, stream=stream, interval=1e9, use_tqdm=False)
    assert list(progress(iter(range(3)), "evaluate")) == [0, 1, 2]
    assert stream.getvalue() == "evaluate: 3, 0 s\n"


def emt_labelled(images):
    from ase.calculators.emt import EMT

    out = []
    for atoms in images:
        atoms = atoms.copy()
        atoms.calc = EMT()
        labels = dict(energy=atoms.get_potential_energy(), forces=atoms.get_forces())
        atoms.calc = SinglePointCalculator(atoms, **labels)
        out.append(atoms)
    return Dataset.from_atoms(out)


@pytest.fixture(scope="module")
def balance_problem(basis):
    """A teacher inside the basis (the linear fit of EMT Cu, so energies and forces have
    physical sizes), 96 training and 40 clean test structures labelled by it."""
    from ace.fitting.linear import fit_linear

    spread = dict(volume=0.03, strain=0.03, rattle=0.15)
    teacher = fit_linear(ACEPotential.from_basis(basis),
                         emt_labelled(emt_like_structures(40, seed=100, **spread)),
                         LossSettings(forces=0.1, l2=1e-8), num_threads=1).potential
    train = label(emt_like_structures(96, **spread), teacher)
    test = label(emt_like_structures(40, seed=7, **spread), teacher)
    return train, test


@pytest.mark.parametrize("noise", [(0.001, 0.1), (0.003, 0.03), (0.01, 0.01), (0.02, 0.002)])
def test_selection_keeps_energies_and_forces_both_near_their_best(basis, balance_problem, noise):
    """Teacher-student with known noise (energy per atom, force component, eV and eV/Å): the
    right balance is known because the teacher is, so every (tau_F, lambda) of the lattice is
    scored by its error against the noise-free teacher on unseen structures. The
    cross-validation rule must land within 1.3x of the best of the lattice in energies AND
    in forces (from energy-noise- to force-noise-dominated data). Choosing by the force
    validation error alone, which trades energies away, fails this on the same data."""
    from ace.fitting.linear import (FORCES_LATTICE, L2_LATTICE, CrossValidation, _tau,
                                    fold_indices, select_hyperparameters, smoothness_prior)

    train, test = balance_problem
    potential = ACEPotential.from_basis(basis)
    prior = smoothness_prior(potential, 2)
    clean = normal_equations(potential, test, np.ones(len(test)), None, 1)
    worst_force_only = 1.0
    for seed in (1, 2):
        rng = np.random.default_rng(seed)
        noisy = train.subset(np.arange(len(train)))
        noisy.energy = noisy.energy + noise[0] * noisy.n_atoms * rng.normal(size=len(noisy))
        noisy.forces = noisy.forces + noise[1] * rng.normal(size=noisy.forces.shape)
        noisy.has_stress[:] = False
        folds = normal_equations(potential, noisy, np.ones(len(noisy)), None, 1,
                                 parts=fold_indices(noisy, 5))
        cv = CrossValidation(folds, range(5), prior=prior)
        chosen, _ = select_hyperparameters(cv, LossSettings(), False)
        total = folds[0] + folds[1] + folds[2] + folds[3] + folds[4]
        truth = {}
        for forces in FORCES_LATTICE:
            system = RidgeSystem(*total.combined(_tau(forces, 0.0)), total.n_functions,
                                 total.n_e0, prior)
            for l2 in L2_LATTICE:
                params = system.solve(l2)
                truth[forces, l2] = np.sqrt([clean.mse(t, params)[0] for t in ("energy", "forces")])
        best = np.min(list(truth.values()), axis=0)
        ratio = truth[chosen["forces"], chosen["l2"]] / best
        assert ratio.max() <= 1.3, (seed, chosen["forces"], chosen["l2"], ratio)
        cv.evaluate([(f, 0.0, l2) for f in FORCES_LATTICE for l2 in L2_LATTICE])
        force_only = min(cv.results, key=lambda key: cv.results[key]["forces"])
        worst_force_only = max(worst_force_only,
                               (truth[force_only[0], force_only[2]] / best).max())
    if noise[0] < noise[1]:  # energies informative: a force-only choice gives them away
        assert worst_force_only > 1.3
