"""Extrapolation grade (active sets, gamma) and committee uncertainty."""
import os
import warnings

import numpy as np
import pytest
from ase.build import bulk

from ace.calculator import ACECalculator
from ace.evaluator import Evaluator, Structure
from ace.testing import random_rotation
from ace.uncertainty import (ActiveSet, ActiveSetError, ExtrapolationError, ExtrapolationWarning,
                            build_active_set, structure_gamma)
from ace.uncertainty.maxvol import RankDeficientError, maxvol
from ace.uncertainty.projections import kernel_mode, structure_projections
from conftest import (requires_openmp, LATTICE, clone, potential_dict, random_cu_ni, random_potential,
                      shift_densities_positive)
from reference_evaluator import atom_environments, blend_factors, per_atom_b
from reference_formulas import embedding_reference


def training_structures(elements=("Cu",), n=12, seed=0):
    """Rattled, strained fcc supercells (32 atoms), species random when there are two."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        atoms = bulk("Cu", "fcc", a=LATTICE * rng.uniform(0.96, 1.04), cubic=True).repeat(2)
        atoms.positions += 0.12 * rng.standard_normal(atoms.positions.shape)
        if len(elements) > 1:
            atoms.set_chemical_symbols(rng.choice(elements, size=len(atoms)))
        out.append(atoms)
    return out


@pytest.fixture(scope="module")
def cu_case():
    pot = random_potential(orders=3, inner="distance")
    structures = training_structures()
    return pot, structures, build_active_set(pot, structures, batch_size=5)


def small_cu_ni(inner=None):
    """Cu-Ni (Cu: two densities, Ni: one), 48 functions per element."""
    return random_cu_ni(potential_dict(("Cu", "Ni"), "ChebExpCos", "FinnisSinclairShiftedScaled",
                                       2, ([4, 2, 1], [0, 2, 1]), inner), seed=2)


@pytest.fixture(scope="module")
def mixed_case():
    pot = small_cu_ni(inner="density")
    structures = training_structures(("Cu", "Ni"), n=16)
    pot = shift_densities_positive(pot, structures)
    return pot, structures, build_active_set(pot, structures, mode="full", batch_size=6)


def reference_projections(pot, atoms, mode):
    """Slow numpy projections: B (linear), B / |B| (normalised) or s F'_p(rho_p) B_f (full),
    per element columns."""
    b = per_atom_b(pot, atoms)
    blend = blend_factors(pot, atoms)
    rows = []
    for a, mu, _, _ in atom_environments(pot, atoms):
        own = [k for k, f in enumerate(pot.functions) if f.mu0 == mu]
        values = b[a, own]
        if mode == "linear":
            rows.append(values)
            continue
        if mode == "normalised":
            rows.append(values / np.linalg.norm(values))
            continue
        emb = pot.embeddings[mu]
        rho = values @ pot.coefficients[own, :emb.ndensity]
        dF = [embedding_reference(emb.npot, emb.fs_parameters[2 * p], emb.fs_parameters[2 * p + 1],
                                  np.array([rho[p]]))[1][0] for p in range(emb.ndensity)]
        rows.append(blend[a] * np.outer(values, dF).ravel())
    return rows


def reference_gamma(pot, active_set, atoms):
    index = {e: i for i, e in enumerate(pot.elements)}
    symbols = atoms.get_chemical_symbols()
    rows = reference_projections(pot, atoms, active_set.mode)
    return np.array([np.abs(np.linalg.solve(active_set.matrices[s].T, r)).max()
                     for s, r in zip(symbols, rows) if s in index])


def test_maxvol_bounds_every_row_by_the_tolerance():
    rng = np.random.default_rng(1)
    matrix = rng.standard_normal((300, 20)) * rng.uniform(0.1, 10, 20)
    chosen = maxvol(matrix, tolerance=1.001)
    assert len(set(chosen.tolist())) == 20
    coefficients = np.linalg.solve(matrix[chosen].T, matrix.T).T
    assert np.abs(coefficients).max() <= 1.001
    np.testing.assert_allclose(coefficients[chosen], np.eye(20), atol=1e-10)


def numpy_swaps(matrix, chosen, tolerance):
    """MaxVol's swap phase written plainly (the compiled kernel's reference)."""
    chosen = chosen.copy()
    coefficients = np.linalg.solve(matrix[chosen].T, matrix.T).T
    while True:
        i, j = np.unravel_index(np.argmax(np.abs(coefficients)), coefficients.shape)
        pivot = coefficients[i, j]
        if abs(pivot) <= tolerance:
            return chosen
        column, row = coefficients[:, j].copy(), coefficients[i].copy()
        row[j] -= 1.0
        coefficients -= np.outer(column / pivot, row)
        chosen[j] = i


@requires_openmp
def test_maxvol_swaps_equal_the_numpy_reference_on_any_thread_count():
    """The fused swap kernel makes the same swaps as the plain numpy loop from the same start,
    and 1 and 2 threads choose the same rows with the same largest grade."""
    from ace.uncertainty.maxvol import initial_rows

    rng = np.random.default_rng(4)
    matrix = rng.standard_normal((701, 40)) * rng.uniform(0.1, 10, 40)
    start, coefficients = initial_rows(matrix)
    np.testing.assert_allclose(coefficients, np.linalg.solve(matrix[start].T, matrix.T).T,
                               atol=1e-10)
    one, largest_one = maxvol(matrix, num_threads=1, return_largest=True)
    two, largest_two = maxvol(matrix, num_threads=2, return_largest=True)
    np.testing.assert_array_equal(one, two)
    assert largest_one == largest_two <= 1.001
    assert not np.array_equal(np.sort(start), np.sort(one))  # swaps happened
    np.testing.assert_array_equal(one, numpy_swaps(matrix, start, 1.001))


def test_maxvol_reports_dependent_columns():
    matrix = np.random.default_rng(2).standard_normal((50, 6))
    matrix[:, 5] = matrix[:, 0] - 2 * matrix[:, 3]
    with pytest.raises(RankDeficientError) as error:
        maxvol(matrix)
    assert error.value.rank == 5


@pytest.mark.parametrize("case", ["cu_case", "mixed_case"])
def test_gamma_is_one_on_the_active_set_and_at_most_the_tolerance_on_training(case, request):
    pot, structures, active_set = request.getfixturevalue(case)
    gammas = [structure_gamma(pot, active_set, atoms, num_threads=1) for atoms in structures]
    assert max(g.max() for g in gammas) <= active_set.tolerance + 1e-8
    for element in pot.elements:
        origins = active_set.origins[element]
        assert (origins >= 0).all()  # real atoms, no placeholders on this data
        on_active = np.array([gammas[s][a] for s, a in origins])
        np.testing.assert_allclose(on_active, 1.0, rtol=1e-8)


@pytest.mark.parametrize("case", ["cu_case", "mixed_case"])
def test_projections_and_gamma_equal_the_numpy_reference(case, request):
    pot, structures, active_set = request.getfixturevalue(case)
    evaluator = Evaluator(pot)
    atoms = structures[0].copy()
    atoms.set_cell(atoms.cell * 0.93, scale_atoms=True)  # outside the training data
    structure = Structure.from_atoms(pot, atoms)
    rows = structure_projections(evaluator, structure, active_set.mode, num_threads=1)
    for a, expected in enumerate(reference_projections(pot, atoms, active_set.mode)):
        np.testing.assert_allclose(rows[a, :len(expected)], expected, rtol=1e-9,
                                   atol=1e-11 * np.abs(expected).max())
    calc = ACECalculator(pot, num_threads=1, active_set=active_set, gamma_warning=None)
    atoms.calc = calc
    atoms.get_potential_energy()
    expected = reference_gamma(pot, active_set, atoms)
    np.testing.assert_allclose(calc.results["gamma"], expected, rtol=1e-7)
    assert calc.results["max_gamma"] == pytest.approx(expected.max(), rel=1e-7)
    assert calc.results["gamma_p90"] == pytest.approx(np.percentile(expected, 90), rel=1e-7)
    assert expected.max() > 1.5


def test_full_projections_are_the_energy_derivatives_by_the_coefficients(mixed_case):
    pot, structures, _ = mixed_case
    atoms = structures[1]
    structure = Structure.from_atoms(pot, atoms)
    rows = structure_projections(Evaluator(pot), structure, "full", num_threads=1)
    rng = np.random.default_rng(3)
    first = {e: min(k for k, f in enumerate(pot.functions) if f.mu0 == e)
             for e in range(len(pot.elements))}
    for k in rng.choice(pot.n_functions, 6, replace=False):
        mu = pot.functions[k].mu0
        for p in range(pot.embeddings[mu].ndensity):
            h = 1e-5
            energies = []
            for sign in (1, -1):
                shifted = clone(pot)
                shifted.coefficients[k, p] += sign * h
                energies.append(Evaluator(shifted).compute(structure, num_threads=1).energies)
            derivative = (energies[0] - energies[1]) / (2 * h)
            nd = pot.embeddings[mu].ndensity
            column = (k - first[mu]) * nd + p
            own = structure.species == mu
            np.testing.assert_allclose(rows[own, column], derivative[own], rtol=1e-6, atol=1e-8)
            assert np.all(derivative[~own] == 0)


def test_gamma_is_invariant_under_rotation_and_permutation(mixed_case):
    pot, structures, active_set = mixed_case
    atoms = structures[2].copy()
    atoms.set_cell(atoms.cell * 1.06, scale_atoms=True)
    gamma = structure_gamma(pot, active_set, atoms, num_threads=1)
    rng = np.random.default_rng(5)
    rotated = atoms.copy()
    rotation = random_rotation(rng)
    rotated.set_cell(atoms.cell.array @ rotation.T, scale_atoms=False)
    rotated.positions = atoms.positions @ rotation.T
    np.testing.assert_allclose(structure_gamma(pot, active_set, rotated, num_threads=1), gamma,
                               rtol=1e-8)
    order = rng.permutation(len(atoms))
    np.testing.assert_allclose(structure_gamma(pot, active_set, atoms[order], num_threads=1),
                               gamma[order], rtol=1e-10)


def test_one_and_two_threads_agree(mixed_case):
    pot, structures, active_set = mixed_case
    atoms = structures[3]
    one = structure_gamma(pot, active_set, atoms, num_threads=1)
    two = structure_gamma(pot, active_set, atoms, num_threads=2)
    np.testing.assert_array_equal(one, two)


@pytest.mark.parametrize("case", ["cu_case", "mixed_case"])
def test_projections_from_the_energy_pass_equal_the_kernel_and_the_reference(case, request):
    """The calculator's projections come out of the energy pass (the energy tree's stored
    leaves); they equal the projection kernel's and the numpy reference, on 1 and 2 threads,
    and asking for them changes neither energies nor forces."""
    pot, structures, active_set = request.getfixturevalue(case)
    atoms = structures[4].copy()
    del atoms[[0, 5]]  # an odd count and species runs that break the two-atom pairs
    atoms.set_cell(atoms.cell * 0.95, scale_atoms=True)
    structure = Structure.from_atoms(pot, atoms)
    plain = Evaluator(pot).compute(structure, num_threads=1)
    evaluator = Evaluator(pot)
    reference = reference_projections(pot, atoms, kernel_mode(active_set.mode))
    for mode in ("linear", "full"):
        kernel = structure_projections(evaluator, structure, mode, num_threads=1)
        for threads in (1, 2):
            result = evaluator.compute(structure, num_threads=threads, projections=mode)
            assert result.projections.shape == kernel.shape
            np.testing.assert_allclose(result.projections, kernel, rtol=1e-12,
                                       atol=1e-14 * np.abs(kernel).max())
            if threads == 1:
                np.testing.assert_array_equal(result.energies, plain.energies)
                np.testing.assert_array_equal(result.forces, plain.forces)
            if mode == kernel_mode(active_set.mode):
                for a, expected in enumerate(reference):
                    np.testing.assert_allclose(result.projections[a, :len(expected)], expected,
                                               rtol=1e-9, atol=1e-11 * np.abs(expected).max())
    with pytest.raises(ValueError, match="unknown projection mode 'quadratic'"):
        evaluator.compute(structure, num_threads=1, projections="quadratic")


def test_projections_of_functions_with_zero_coefficients_come_from_the_energy_pass(cu_case):
    """Functions whose coefficients vanish have no products in the C-tilde energy tree; the
    energy model with projections adds them (coefficient 0), so B is still there, and the
    energy is that of the plain model."""
    pot, structures, active_set = cu_case
    zeroed = clone(pot)
    ranks = np.array([f.rank for f in pot.functions])
    zeroed.coefficients[ranks == 3] = 0.0
    zeroed.coefficients[::5] = 0.0
    atoms = structures[6]
    structure = Structure.from_atoms(zeroed, atoms)
    evaluator = Evaluator(zeroed)
    plain = evaluator.compute(structure, num_threads=1)
    result = evaluator.compute(structure, num_threads=1, projections="linear")
    np.testing.assert_allclose(result.energies, plain.energies, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(result.forces, plain.forces, rtol=1e-11, atol=1e-13)
    kernel = structure_projections(evaluator, structure, "linear", num_threads=1)
    np.testing.assert_allclose(result.projections, kernel, rtol=1e-12,
                               atol=1e-14 * np.abs(kernel).max())
    assert np.abs(kernel[:, ranks == 3]).max() > 1e-3  # those B are there, and not zero


def test_projection_arrays_of_the_wrong_shape_are_refused(cu_case):
    from ace._core._evaluator import energy_forces
    from ace._core._projections import atom_projections
    pot, structures, _ = cu_case
    evaluator = Evaluator(pot)
    structure = Structure.from_atoms(pot, structures[0])
    nl = evaluator.neighbours(structure, 1)
    model = evaluator.projection_model
    args = (model, structure.species, nl.first, nl.i, nl.j, np.ascontiguousarray(nl.vectors), 1)
    with pytest.raises(ValueError, match=r"projections must be \[32, >= \d+\]"):
        energy_forces(*args, projections=np.zeros((32, 3)))
    with pytest.raises(ValueError, match="compiled with the B-functions"):
        energy_forces(Evaluator(pot).energy_model, *args[1:], projections=np.zeros((32, 500)))
    with pytest.raises(ValueError, match="compiled with the B-functions"):
        atom_projections(Evaluator(pot).energy_model, structure.species, nl.first, nl.j, args[5],
                         np.ascontiguousarray(pot.coefficients), False, 1)


@pytest.mark.parametrize("case", ["cu_case", "mixed_case"])
def test_calculator_gamma_is_one_on_the_active_atoms_and_thread_independent(case, request):
    """Through the calculator (projections from the energy pass): exactly 1 on the atoms of
    the active set, the same on 1 and 2 threads, and invariant under rotation and
    permutation."""
    pot, structures, active_set = request.getfixturevalue(case)
    gammas = []
    for threads in (1, 2):
        calc = ACECalculator(pot, num_threads=threads, active_set=active_set, gamma_warning=None)
        per_structure = []
        for atoms in structures:
            atoms = atoms.copy()
            atoms.calc = calc
            atoms.get_forces()
            per_structure.append(calc.results["gamma"].copy())
        gammas.append(per_structure)
    for one, two in zip(*gammas):
        np.testing.assert_allclose(two, one, rtol=1e-12)
    for element in pot.elements:
        on_active = np.array([gammas[0][s][a] for s, a in active_set.origins[element]])
        np.testing.assert_allclose(on_active, 1.0, rtol=1e-8)
    assert max(g.max() for g in gammas[0]) <= active_set.tolerance + 1e-8
    atoms = structures[2].copy()
    atoms.set_cell(atoms.cell * 1.06, scale_atoms=True)
    rng = np.random.default_rng(8)
    rotation = random_rotation(rng)
    order = rng.permutation(len(atoms))
    moved = atoms[order]
    moved.set_cell(moved.cell.array @ rotation.T, scale_atoms=False)
    moved.positions = moved.positions @ rotation.T
    values = []
    for image in (atoms, moved):
        image.calc = ACECalculator(pot, num_threads=1, active_set=active_set, gamma_warning=None)
        image.get_potential_energy()
        values.append(image.calc.results["gamma"])
    np.testing.assert_allclose(values[1], values[0][order], rtol=1e-8)
    assert values[0].max() > 1.2


def test_active_set_file_round_trip_and_thresholds(cu_case, tmp_path):
    pot, structures, active_set = cu_case
    path = tmp_path / "pot.active.yaml"
    active_set.save(path)
    loaded = ActiveSet.load(path)
    assert loaded.mode == active_set.mode and loaded.fingerprint == active_set.fingerprint
    np.testing.assert_array_equal(loaded.matrices["Cu"], active_set.matrices["Cu"])
    np.testing.assert_array_equal(loaded.origins["Cu"], active_set.origins["Cu"])
    squeezed = bulk("Cu", "fcc", a=LATTICE * 0.85).repeat(3)
    squeezed.calc = ACECalculator(pot, num_threads=1, active_set=str(path))
    with pytest.warns(ExtrapolationWarning, match="extrapolation grade"):
        squeezed.get_potential_energy()
    assert squeezed.calc.results["max_gamma"] > 5
    squeezed.calc = ACECalculator(pot, num_threads=1, active_set=loaded, gamma_warning=None,
                                  gamma_stop=5.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ExtrapolationError, match="exceeds the stop threshold 5"):
            squeezed.get_potential_energy()


def test_an_active_set_for_another_potential_is_refused(cu_case):
    pot, structures, active_set = cu_case
    other = clone(pot, pot.coefficients * 1.01)
    with pytest.raises(ActiveSetError, match="another potential"):
        ACECalculator(other, active_set=active_set)


def test_a_truncated_or_edited_active_set_file_is_refused(cu_case, tmp_path):
    _, _, active_set = cu_case
    path = tmp_path / "a.yaml"
    active_set.save(path)
    text = path.read_text()
    (tmp_path / "cut.yaml").write_text(text[:len(text) // 2])
    with pytest.raises(ActiveSetError, match="cut.yaml: checksum mismatch"):
        ActiveSet.load(tmp_path / "cut.yaml")
    (tmp_path / "other.yaml").write_text("format: ace-potential\n")
    with pytest.raises(ActiveSetError, match="not an ace active-set file"):
        ActiveSet.load(tmp_path / "other.yaml")


def test_fewer_atoms_than_functions_names_the_element_and_counts():
    pot = small_cu_ni()
    atoms = bulk("Cu", "fcc", a=LATTICE, cubic=True)
    atoms.symbols[0] = "Ni"
    n_ni = sum(f.mu0 == 1 for f in pot.functions)
    with pytest.raises(ValueError, match=f"element Cu: 3 training atoms but "
                                         f"{sum(f.mu0 == 0 for f in pot.functions)} projections"):
        build_active_set(pot, [atoms])
    assert n_ni > 1


def test_unseen_directions_get_a_huge_gamma():
    """A function that no training atom activates (Ni neighbours in pure-Cu data) is an unseen
    direction: an atom that activates it gets gamma far above the thresholds."""
    pot = small_cu_ni()
    cu_only = [s for s in training_structures(n=8)]
    ni_atoms = bulk("Ni", "fcc", a=LATTICE, cubic=True).repeat(2)
    ni_atoms.rattle(0.1, seed=0)
    data = cu_only + [ni_atoms] * 2
    active_set = build_active_set(pot, data)
    assert (active_set.origins["Cu"] < 0).any()  # placeholders for the Cu-Ni functions
    mixed = cu_only[0].copy()
    mixed.symbols[::4] = "Ni"
    gamma = structure_gamma(pot, active_set, mixed, num_threads=1)
    assert gamma[mixed.numbers == 29].max() > 1e3
    assert structure_gamma(pot, active_set, cu_only[1], num_threads=1).max() <= 1.001 + 1e-8


def test_cli_active_set_writes_a_file_the_calculator_uses(cu_case, tmp_path, capsys):
    from ase.io import write

    from ace.cli import main
    pot, structures, _ = cu_case
    pot.save(tmp_path / "pot.yaml")
    write(tmp_path / "train.xyz", structures)
    assert main(["active-set", str(tmp_path / "pot.yaml"), str(tmp_path / "train.xyz"),
                 "--mode", "full"]) == 0
    active_set = ActiveSet.load(tmp_path / "pot.active.yaml")
    assert active_set.mode == "full"
    atoms = structures[4].copy()
    atoms.calc = ACECalculator(str(tmp_path / "pot.yaml"), num_threads=1,
                               active_set=str(tmp_path / "pot.active.yaml"))
    atoms.get_potential_energy()
    assert atoms.calc.results["max_gamma"] <= active_set.tolerance + 1e-8
    assert main(["active-set", str(tmp_path / "pot.yaml"), str(tmp_path / "missing.xyz")]) == 1
    assert "missing.xyz: no such file" in capsys.readouterr().err


def test_cli_export_of_a_normalised_active_set_fails_before_writing(cu_case, tmp_path, capsys):
    """The default active set (normalised) cannot become a PACE .asi: export says how to get
    a linear one and writes neither X.yaml nor X.asi."""
    from ace.cli import main
    pot, structures, active_set = cu_case
    pot.save(tmp_path / "pot.yaml")
    active_set.save(tmp_path / "pot.active.yaml")
    out = tmp_path / "X.yaml"
    assert main(["export", str(tmp_path / "pot.yaml"), "-o", str(out), "--e0-to-metadata",
                 "--active-set", str(tmp_path / "pot.active.yaml")]) == 1
    assert "--mode linear" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "X.asi").exists()


@pytest.mark.parametrize("case", ["single", "cu_ni"])
def test_pace_asi_gives_pyace_the_same_gamma(case, tmp_path):
    pyace = pytest.importorskip("pyace", reason="python-ace is not installed")
    from ace.cli import main
    if case == "single":
        pot = random_potential(ndensity=2, orders=4, inner="density", seed=4)
        train = training_structures(n=10, seed=1)
    else:
        pot = small_cu_ni(inner="distance")
        train = training_structures(("Cu", "Ni"), n=12, seed=1)
    pot.e0[:] = 0.0  # a PACE .yaml carries no E0
    pot = shift_densities_positive(pot, train)
    active_set = build_active_set(pot, train, mode="linear")
    pot.save(tmp_path / "pot.yaml")
    active_set.save(tmp_path / "pot.active.yaml")
    assert main(["export", str(tmp_path / "pot.yaml"), "-o", str(tmp_path / "X.yaml"),
                 "--active-set", str(tmp_path / "pot.active.yaml")]) == 0
    calc = pyace.PyACECalculator(str(tmp_path / "X.yaml"))
    calc.set_active_set(str(tmp_path / "X.asi"))
    ours = ACECalculator(pot, num_threads=1, active_set=active_set, gamma_warning=None)
    for k, atoms in enumerate(training_structures(sorted(pot.elements), n=3, seed=9)):
        atoms.set_cell(atoms.cell * (0.92 + 0.08 * k), scale_atoms=True)
        atoms.calc = ours
        atoms.get_potential_energy()
        gamma = ours.results["gamma"].copy()
        atoms.calc = calc
        atoms.get_potential_energy()
        np.testing.assert_allclose(np.asarray(calc.results["gamma"]), gamma,
                                   rtol=1e-6, atol=1e-6 * gamma.max())
    assert gamma.max() > 2  # also far outside the data


@pytest.mark.parametrize("case", ["cu_case", "mixed_case"])  # normalised, full
def test_only_linear_mode_active_sets_are_written_as_pace_asi(case, request, tmp_path):
    from ace.uncertainty.pace_asi import write_asi
    pot, _, active_set = request.getfixturevalue(case)
    assert active_set.mode != "linear"
    with pytest.raises(ValueError, match="linear-mode active set .*--mode linear"):
        write_asi(active_set, pot, tmp_path / "X.asi")


def test_normalised_grade_ignores_the_size_of_b_and_is_zero_without_neighbours(cu_case):
    """Normalised rows: gamma is that of B / |B|, so it equals the linear grade computed with
    the active rows and the atom's row scaled to unit length; an atom with no neighbours
    (B = 0) gets 0, not NaN."""
    pot, structures, active_set = cu_case
    assert active_set.mode == "normalised"
    np.testing.assert_allclose(np.linalg.norm(active_set.matrices["Cu"], axis=1), 1.0, rtol=1e-12)
    atoms = structures[3].copy()
    atoms.set_cell(atoms.cell * 1.1, scale_atoms=True)
    b = np.array(reference_projections(pot, atoms, "linear"))
    expected = np.abs(np.linalg.solve(active_set.matrices["Cu"].T,
                                      (b / np.linalg.norm(b, axis=1)[:, None]).T)).max(axis=0)
    gamma = structure_gamma(pot, active_set, atoms, num_threads=1)
    np.testing.assert_allclose(gamma, expected, rtol=1e-7)
    assert gamma.max() > 1.5  # an expanded cell is outside the data
    lonely = atoms.copy()
    lonely.positions[0] += [0.0, 0.0, 40.0]
    lonely.set_cell(atoms.cell + np.diag([0.0, 0.0, 60.0]))
    calc = ACECalculator(pot, num_threads=1, active_set=active_set, gamma_warning=None)
    lonely.calc = calc
    lonely.get_potential_energy()
    assert calc.results["gamma"][0] == 0.0 and np.isfinite(calc.results["gamma"]).all()


# ---------------------------------------------------------------------------- committee

@pytest.fixture(scope="module")
def teacher_student():
    """A teacher potential's noisy labels on 40 structures and test cells (the student has the
    teacher's basis)."""
    from ase.calculators.singlepoint import SinglePointCalculator

    from ace.basis import build_basis
    from test_fit import basis_dict, emt_like_structures, label, true_potential
    basis = build_basis(basis_dict())
    data = label(emt_like_structures(40, volume=0.08, strain=0.05, rattle=0.3),
                 true_potential(basis))
    rng = np.random.default_rng(0)
    noisy = []
    for k in range(len(data)):
        atoms = data.atoms(k)
        atoms.calc = SinglePointCalculator(
            atoms, energy=atoms.get_potential_energy() + 0.01 * len(atoms) * rng.normal(),
            forces=atoms.get_forces() + 0.05 * rng.normal(size=(len(atoms), 3)))
        noisy.append(atoms)
    test = emt_like_structures(4, seed=99, volume=0.08, strain=0.05, rattle=0.3)
    return basis, noisy, test


def committee_fit(basis, images, n_members=16):
    from ace.data import Dataset
    from ace.fitting.linear import fit_committee
    from ace.fitting.linear import LossSettings, fit_linear
    from ace.potential import ACEPotential
    train = Dataset.from_atoms(images)
    fit = fit_linear(ACEPotential.from_basis(basis), train,
                     LossSettings(forces=1.0, stress=0.0, method="gcv"), num_threads=1)
    return fit.potential, fit_committee(fit, train, n_members=n_members, num_threads=1)


def test_committee_mean_is_the_fit_and_its_std_that_of_the_members(teacher_student, tmp_path):
    from ace.potential import ACEPotential
    basis, images, test = teacher_student
    fitted, pot = committee_fit(basis, images[:20])
    np.testing.assert_array_equal(pot.coefficients, fitted.coefficients)
    pot.save(tmp_path / "committee.yaml")
    pot = ACEPotential.load(tmp_path / "committee.yaml")
    committee = pot.committee
    np.testing.assert_allclose(committee.coefficients.mean(axis=0), pot.coefficients[:, 0],
                               atol=1e-12 * np.abs(pot.coefficients).max())
    atoms = test[0].copy()
    calc = ACECalculator(pot, num_threads=1, committee=True)
    atoms.calc = calc
    energy, forces, stress = (atoms.get_potential_energy(), atoms.get_forces(),
                              atoms.get_stress())
    members = []
    for k in range(committee.n_members):
        member = ACEPotential(pot.elements, pot.bonds, pot.embeddings, pot.functions,
                              committee.coefficients[k][:, None], e0=committee.e0[k])
        other = atoms.copy()
        other.calc = ACECalculator(member, num_threads=1)
        members.append((other.get_potential_energy(), other.get_forces(), other.get_stress()))
    e_k, f_k, s_k = (np.array([m[i] for m in members]) for i in range(3))
    assert e_k.mean() == pytest.approx(energy, abs=1e-9)
    np.testing.assert_allclose(f_k.mean(axis=0), forces, atol=1e-9)
    np.testing.assert_allclose(s_k.mean(axis=0), stress, atol=1e-9)
    assert calc.results["energy_std"] == pytest.approx(e_k.std(), rel=1e-8)
    np.testing.assert_allclose(calc.results["forces_std"], f_k.std(axis=0), rtol=1e-7,
                               atol=1e-12)
    np.testing.assert_allclose(calc.results["stress_std"], s_k.std(axis=0), rtol=1e-7,
                               atol=1e-14)
    assert calc.results["energy_std"] > 0


def test_committee_std_shrinks_as_data_are_added(teacher_student):
    basis, images, test = teacher_student
    spreads = []
    for n in (8, 16, 40):
        _, pot = committee_fit(basis, images[:n])
        calc = ACECalculator(pot, num_threads=1, committee=True)
        per_atom = []
        for atoms in test:
            atoms = atoms.copy()
            atoms.calc = calc
            atoms.get_potential_energy()
            per_atom.append(calc.results["energy_std"] / len(atoms))
        spreads.append(np.median(per_atom))
    assert spreads[0] > spreads[1] > spreads[2]


def test_a_malformed_committee_is_refused(teacher_student, tmp_path):
    import yaml

    from ace.potential import ACEPotential, PotentialFileError
    basis, images, _ = teacher_student
    _, pot = committee_fit(basis, images[:8], n_members=4)
    data = pot.to_dict()
    data["committee"]["coefficients"] = data["committee"]["coefficients"][:, :-1] \
        if isinstance(data["committee"]["coefficients"], np.ndarray) else \
        [row[:-1] for row in data["committee"]["coefficients"]]
    with pytest.raises(PotentialFileError, match="committee coefficients have shape"):
        ACEPotential.from_dict(yaml.safe_load(yaml.safe_dump(data)))
    with pytest.raises(ValueError, match="has no committee"):
        ACECalculator(random_potential(), committee=True)


def test_uncertainty_properties_through_ase(cu_case):
    from ase.calculators.calculator import PropertyNotImplementedError
    pot, structures, active_set = cu_case
    atoms = structures[0].copy()
    atoms.calc = ACECalculator(pot, num_threads=1, active_set=active_set)
    assert atoms.calc.get_property("max_gamma", atoms) <= active_set.tolerance + 1e-8
    assert atoms.calc.get_property("gamma", atoms).shape == (len(atoms),)
    atoms.calc = ACECalculator(pot, num_threads=1)
    with pytest.raises(PropertyNotImplementedError):
        atoms.calc.get_property("gamma", atoms)


def test_gamma_every_nth_call_and_on_request(cu_case):
    pot, structures, active_set = cu_case
    every = ACECalculator(pot, num_threads=1, active_set=active_set)
    sparse = ACECalculator(pot, num_threads=1, active_set=active_set, uncertainty_interval=3)
    atoms = structures[5].copy()
    other = atoms.copy()
    atoms.calc, other.calc = every, sparse
    computed = []
    for step in range(5):
        for image in (atoms, other):
            image.positions[step] += 0.05
            image.get_forces()
        computed.append("gamma" in sparse.results)
        if computed[-1]:
            np.testing.assert_array_equal(sparse.results["gamma"], every.results["gamma"])
    assert computed == [True, False, False, True, False]
    forces = sparse.results["forces"]
    # asked for: computed for the current structure without a new energy evaluation
    assert sparse.get_property("max_gamma", other) == every.results["max_gamma"]
    assert sparse.results["forces"] is forces
    with pytest.raises(ValueError, match="uncertainty_interval"):
        ACECalculator(pot, active_set=active_set, uncertainty_interval=0)


def test_select_picks_extrapolative_structures_once_and_skips_covered_ones(cu_case, tmp_path,
                                                                           capsys):
    from ase.io import read, write

    from ace.cli import main
    from ace.uncertainty.selection import select_structures
    pot, structures, active_set = cu_case
    squeezed = structures[0].copy()
    squeezed.set_cell(squeezed.cell * 0.9, scale_atoms=True)
    near_duplicate = squeezed.copy()
    near_duplicate.positions += 1e-4 * np.random.default_rng(0).standard_normal((32, 3))
    stretched = structures[1].copy()
    stretched.set_cell(stretched.cell * 1.1, scale_atoms=True)
    candidates = [structures[2], squeezed, structures[3], near_duplicate, stretched]
    picked = select_structures(pot, active_set, candidates, n=5)
    indices = [k for k, _ in picked]
    assert len(indices) == 2 and 4 in indices and len({1, 3} & set(indices)) == 1
    gammas = [g for _, g in picked]
    assert all(g > 1.5 for g in gammas) and gammas == sorted(gammas, reverse=True)
    pot.save(tmp_path / "pot.yaml")
    active_set.save(tmp_path / "pot.active.yaml")
    write(tmp_path / "candidates.xyz", candidates)
    assert main(["select", str(tmp_path / "candidates.xyz"), "--potential",
                 str(tmp_path / "pot.yaml"), "--active-set", str(tmp_path / "pot.active.yaml"),
                 "-n", "1", "-o", str(tmp_path / "picked.xyz")]) == 0
    chosen = read(tmp_path / "picked.xyz", ":")
    assert len(chosen) == 1 and chosen[0].info["candidate_index"] == indices[0]
    assert "picked 1 of 5 candidates" in capsys.readouterr().out


def test_active_set_from_a_dataset_equals_the_one_from_atoms(cu_case):
    from ase.calculators.singlepoint import SinglePointCalculator

    from ace.data import Dataset
    pot, structures, active_set = cu_case
    labelled = []
    for atoms in structures:
        atoms = atoms.copy()
        atoms.calc = SinglePointCalculator(atoms, energy=0.0)
        labelled.append(atoms)
    from_dataset = build_active_set(pot, Dataset.from_atoms(labelled), batch_size=5)
    np.testing.assert_allclose(from_dataset.matrices["Cu"], active_set.matrices["Cu"],
                               rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------- active learning

LEARN_CONFIG = """potential: start.yaml
reference: ase.calculators.emt:EMT
seeds: seeds.xyz
test: test.xyz
output: out
iterations: {iterations}
select: 2
gamma_threshold: 1.5
md: {{temperatures: [600, 1500], steps: 20, timestep: 2.0, interval: 5}}
loss: {{forces: 1.0, stress: 0.0, method: gcv}}
"""


def learn_case(directory, iterations):
    from ase.calculators.emt import EMT
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.io import write

    from ace.basis import build_basis
    from ace.potential import ACEPotential
    basis = build_basis({
        "elements": ["Cu"],
        "embeddings": {"ALL": {"npot": "FinnisSinclairShiftedScaled", "ndensity": 1,
                               "fs_parameters": [1, 1]}},
        "bonds": {"ALL": {"radbase": "ChebExpCos", "radparameters": [2.0], "rcut": 4.5,
                          "dcut": 0.01}},
        "functions": {"ALL": {"nradmax_by_orders": [5, 2], "lmax_by_orders": [0, 2]}}})
    ACEPotential.from_basis(basis).save(directory / "start.yaml")
    seeds = []
    for k, a in enumerate([3.6, 3.7]):
        atoms = bulk("Cu", "fcc", a=a, cubic=True).repeat(2)
        atoms.rattle(0.05, seed=k)
        seeds.append(atoms)
    write(directory / "seeds.xyz", seeds)
    test = []
    for k in range(3):
        atoms = bulk("Cu", "fcc", a=3.55 + 0.1 * k, cubic=True).repeat(2)
        atoms.rattle(0.2, seed=10 + k)
        atoms.calc = EMT()
        atoms.calc = SinglePointCalculator(atoms, energy=atoms.get_potential_energy(),
                                           forces=atoms.get_forces())
        test.append(atoms)
    write(directory / "test.xyz", test)
    (directory / "learn.yaml").write_text(LEARN_CONFIG.format(iterations=iterations))
    return directory / "learn.yaml"


def test_learn_runs_two_iterations_with_emt_and_resumes_after_being_killed(tmp_path):
    import json
    import signal
    import subprocess
    import sys
    import time

    from ase.io import read

    from ace.learn import learn, load_config
    config = learn_case(tmp_path, iterations=2)
    from conftest import package_env
    env = package_env(OMP_NUM_THREADS="1")
    process = subprocess.Popen([sys.executable, "-m", "ace.cli", "learn", str(config)],
                               cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    state = tmp_path / "out" / "state.json"
    deadline = time.time() + 60
    while not state.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)  # after iteration 0, somewhere in iteration 1
    process.wait()
    assert state.exists()
    history = learn(load_config(config), log=lambda message: None)
    assert [h["iteration"] for h in history] == [0, 1, 2]
    assert history[1]["max_gamma"] > 1.5 and history[1]["labelled"] == 2
    train = read(tmp_path / "out" / "train.xyz", ":")
    assert len(train) == 2 + sum(h["labelled"] for h in history[1:])
    assert json.loads(state.read_text())["iteration"] == 2
    assert history[-1]["test"]["energy_rmse"] < history[0]["test"]["energy_rmse"]
    # labels are the reference's
    from ase.calculators.emt import EMT
    atoms = train[-1].copy()
    atoms.calc = EMT()
    assert atoms.get_potential_energy() == pytest.approx(train[-1].get_potential_energy())


def test_learn_config_errors_are_clear(tmp_path):
    from ace.learn import LearnConfigError, load_config
    config = learn_case(tmp_path, iterations=1)
    text = config.read_text()
    config.write_text(text.replace("ase.calculators.emt:EMT", "ase.calculators.emt:Nope"))
    with pytest.raises(LearnConfigError, match="reference 'ase.calculators.emt:Nope'"):
        load_config(config)
    config.write_text(text + "temperature: 300\n")
    with pytest.raises(LearnConfigError, match="unknown key"):
        load_config(config)
