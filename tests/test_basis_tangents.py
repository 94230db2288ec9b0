"""A linear ACE basis as a descriptor (ace/_core/_basis_tangents.pyx): per-atom B-functions,
their tangents along a displacement and strain, and the forces and strain derivative of a
per-atom weighted sum, against finite differences and across thread counts."""
import numpy as np
import pytest

from ace._core._projections import atom_projections
from ace.evaluator import Evaluator, Structure

from conftest import make_structure, mixed_potential, random_potential, requires_openmp

KINDS = ("bulk", "slab", "cluster", "triclinic", "small_cell")


@pytest.fixture(scope="module", params=["Cu", "CuNi"])
def descriptor(request):
    if request.param == "Cu":
        return random_potential(("Cu",), ndensity=1, orders=3, seed=3)
    return mixed_potential(seed=2)


def deformed(atoms, displacement, strain, t):
    """Positions r + t (D r + g), cell (1 + t D) cell: each pair vector moves by
    t (g_j - g_i + D r_ij)."""
    work = atoms.copy()
    deformation = np.eye(3) + t * strain
    work.positions = atoms.positions @ deformation.T + t * displacement
    work.cell = atoms.cell.array @ deformation.T
    return work


def values(evaluator, potential, atoms):
    structure = Structure.from_atoms(potential, atoms)
    n = len(atoms)
    return evaluator.basis_tangents(structure, np.zeros((n, 3)), np.zeros((3, 3)),
                                    num_threads=1)[0]


def case(potential, kind, seed=1):
    atoms = make_structure(kind, elements=tuple(potential.elements), seed=seed)
    rng = np.random.default_rng(seed)
    return atoms, rng.standard_normal((len(atoms), 3)), 0.3 * rng.standard_normal((3, 3))


@pytest.mark.parametrize("kind", KINDS)
def test_values_are_the_projections(descriptor, kind):
    atoms, g, strain = case(descriptor, kind)
    evaluator = Evaluator(descriptor)
    structure = Structure.from_atoms(descriptor, atoms)
    nl = evaluator.neighbours(structure)
    b, _ = evaluator.basis_tangents(structure, g, strain, num_threads=1)
    projections = atom_projections(evaluator.design_model, structure.species, nl.first, nl.j,
                                   np.ascontiguousarray(nl.vectors), np.zeros((1, 1)), False, 1)
    np.testing.assert_allclose(b, projections, rtol=1e-11, atol=1e-11 * np.abs(b).max())


@pytest.mark.parametrize("kind", KINDS)
def test_tangents_are_directional_derivatives(descriptor, kind):
    atoms, g, strain = case(descriptor, kind)
    evaluator = Evaluator(descriptor)
    structure = Structure.from_atoms(descriptor, atoms)
    _, tangents = evaluator.basis_tangents(structure, g, strain, num_threads=1)
    errors = []
    for h in (1e-3, 1e-4, 1e-5):
        numerical = (values(evaluator, descriptor, deformed(atoms, g, strain, h))
                     - values(evaluator, descriptor, deformed(atoms, g, strain, -h))) / (2 * h)
        errors.append(np.abs(numerical - tangents).max())
    scale = np.abs(tangents).max()
    assert min(errors) < 1e-7 * scale, (errors, scale)
    assert errors[0] > 10 * min(errors)  # the error falls with the step: a real derivative


@pytest.mark.parametrize("kind", KINDS)
def test_weighted_forces_and_strain(descriptor, kind):
    """E_W = sum W B: its values, -dE_W/dr by central differences, and the strain derivative
    (d E_W along a pure strain = sum strain_derivative * D)."""
    atoms, g, strain = case(descriptor, kind)
    evaluator = Evaluator(descriptor)
    structure = Structure.from_atoms(descriptor, atoms)
    b, tangents = evaluator.basis_tangents(structure, g, strain, num_threads=1)
    weights = np.random.default_rng(5).standard_normal(b.shape)
    per_atom, forces, strain_derivative = evaluator.weighted_forces(structure, weights,
                                                                    num_threads=1)
    np.testing.assert_allclose(per_atom, (weights * b).sum(axis=1), rtol=1e-12,
                               atol=1e-12 * np.abs(per_atom).max())

    def energy(t, g_, strain_):
        return (weights * values(evaluator, descriptor, deformed(atoms, g_, strain_, t))).sum()

    # along g alone: -sum F . g; along the strain alone: sum strain_derivative * D
    h = 1e-5
    zero_g, zero_d = np.zeros_like(g), np.zeros((3, 3))
    along_g = (energy(h, g, zero_d) - energy(-h, g, zero_d)) / (2 * h)
    along_d = (energy(h, zero_g, strain) - energy(-h, zero_g, strain)) / (2 * h)
    scale = np.abs(weights).sum() * np.abs(b).max()
    assert abs(along_g + (forces * g).sum()) < 1e-7 * scale
    assert abs(along_d - (strain_derivative * strain).sum()) < 1e-7 * scale
    # the tangent and the weighted scatter are adjoint to each other
    adjoint = -(forces * g).sum() + (strain_derivative * strain).sum()
    assert abs((weights * tangents).sum() - adjoint) < 1e-10 * scale


def test_forces_sum_to_zero_and_invariance(descriptor):
    atoms, _, _ = case(descriptor, "cluster")
    evaluator = Evaluator(descriptor)
    structure = Structure.from_atoms(descriptor, atoms)
    b = values(evaluator, descriptor, atoms)
    weights = np.random.default_rng(2).standard_normal(b.shape)
    _, forces, strain_derivative = evaluator.weighted_forces(structure, weights, num_threads=1)
    assert np.abs(forces.sum(axis=0)).max() < 1e-10 * np.abs(forces).max()
    # rotation invariance of B; a cluster's strain derivative is symmetric (torque free)
    q, r = np.linalg.qr(np.random.default_rng(3).standard_normal((3, 3)))
    rotated = atoms.copy()
    rotated.positions = atoms.positions @ q.T
    np.testing.assert_allclose(values(evaluator, descriptor, rotated), b, rtol=1e-10,
                               atol=1e-10 * np.abs(b).max())
    np.testing.assert_allclose(strain_derivative, strain_derivative.T,
                               atol=1e-10 * np.abs(strain_derivative).max())


@requires_openmp
@pytest.mark.parametrize("kind", ("bulk", "cluster"))
def test_one_and_two_threads_agree(descriptor, kind):
    atoms, g, strain = case(descriptor, kind)
    evaluator = Evaluator(descriptor)
    structure = Structure.from_atoms(descriptor, atoms)
    one = evaluator.basis_tangents(structure, g, strain, num_threads=1)
    two = evaluator.basis_tangents(structure, g, strain, num_threads=2)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)  # per-atom rows: independent of the threads
    weights = np.random.default_rng(5).standard_normal(one[0].shape)
    one = evaluator.weighted_forces(structure, weights, num_threads=1)
    two = evaluator.weighted_forces(structure, weights, num_threads=2)
    for a, b in zip(one, two):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12 * np.abs(a).max())


def test_bad_shapes_are_refused(descriptor):
    atoms, g, strain = case(descriptor, "bulk")
    evaluator = Evaluator(descriptor)
    structure = Structure.from_atoms(descriptor, atoms)
    with pytest.raises(ValueError, match="displacement"):
        evaluator.basis_tangents(structure, g[:-1], strain)
    with pytest.raises(ValueError, match="strain"):
        evaluator.basis_tangents(structure, g, np.zeros((3, 2)))
    with pytest.raises(ValueError, match="weights"):
        evaluator.weighted_forces(structure, np.zeros((len(atoms), 1)))
