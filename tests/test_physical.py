"""Physical forms (ace.physical): forces, strain derivative, parameter derivatives, the adjoint
(u and Hessian) against finite differences of the kernel's own outputs, invariance, thread-count
independence and clear errors for bad parameters."""
import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, fcc111

from ace.neighbours import build_neighbour_list
from ace.physical import SPECS, adjoint, adjoint_u, form_by_name, per_atom

CUTOFF, WIDTH = 4.2, 0.8


def start(name):
    return np.array([SPECS[name].start[k] for k in SPECS[name].parameter_names])


def periodic():
    atoms = bulk("Mo", "bcc", a=3.15, cubic=True).repeat((2, 2, 1))
    atoms.rattle(0.08, seed=3)
    return atoms


def slab():
    atoms = fcc111("Cu", size=(2, 2, 3), a=3.7, vacuum=5.0)
    atoms.pbc = (True, True, False)
    atoms.rattle(0.08, seed=4)
    return atoms


def cluster():
    atoms = bulk("Mo", "bcc", a=3.0, cubic=True).repeat(2)
    atoms = Atoms("Mo" * 9, positions=atoms.positions[:9] + np.random.default_rng(5).normal(0, 0.1, (9, 3)))
    return atoms


STRUCTURES = {"periodic": periodic, "slab": slab, "cluster": cluster}


def local_params(name, n, seed=0):
    """Different parameters on every atom (E_i must use atom i's own only)."""
    rng = np.random.default_rng(seed)
    p = start(name)
    return p * (1 + 0.1 * rng.uniform(-1, 1, (n, len(p)))) + 0.02 * rng.uniform(0, 1, (n, len(p)))


def evaluate(form, atoms, params, positions=None, cell=None, num_threads=1):
    positions = atoms.positions if positions is None else positions
    cell = atoms.cell.array if cell is None else cell
    nl = build_neighbour_list(positions, cell, atoms.pbc, form.cutoff)
    return per_atom(form, nl, np.zeros(len(atoms), np.int32), params, num_threads)


def deformed(atoms, displacement, strain, t):
    """Positions and cell moved so that every pair vector D_ij moves by
    t * (g[j] - g[i] + strain @ D_ij)."""
    deformation = np.eye(3) + t * strain
    return atoms.positions @ deformation.T + t * displacement, atoms.cell.array @ deformation.T


@pytest.fixture(params=["bop", "eam"])
def form(request):
    return form_by_name(request.param, CUTOFF, WIDTH)


@pytest.mark.parametrize("kind", STRUCTURES)
def test_forces_are_minus_the_energy_gradient(form, kind):
    atoms = STRUCTURES[kind]()
    params = local_params(form.name, len(atoms))
    result = evaluate(form, atoms, params)
    assert np.abs(result.forces).max() > 0.1
    h = 1e-5
    for a in range(len(atoms)):
        for c in range(3):
            x = atoms.positions.copy()
            x[a, c] += h
            up = evaluate(form, atoms, params, positions=x).energy
            x[a, c] -= 2 * h
            down = evaluate(form, atoms, params, positions=x).energy
            assert result.forces[a, c] == pytest.approx(-(up - down) / (2 * h), abs=2e-7)
    assert np.abs(result.forces.sum(axis=0)).max() < 1e-10


@pytest.mark.parametrize("kind", ["periodic", "slab"])
def test_virial_is_the_strain_derivative(form, kind):
    atoms = STRUCTURES[kind]()
    params = local_params(form.name, len(atoms))
    result = evaluate(form, atoms, params)
    h = 1e-6
    for a in range(3):
        for b in range(3):
            strain = np.zeros((3, 3))
            strain[a, b] = 1.0
            values = []
            for t in (h, -h):
                x, cell = deformed(atoms, np.zeros((len(atoms), 3)), strain, t)
                values.append(evaluate(form, atoms, params, positions=x, cell=cell).energy)
            # D -> (1 + t strain) D: dE/dt = sum_q (strain D_q) . dE/dD_q = virial[b, a]
            assert result.virial[b, a] == pytest.approx((values[0] - values[1]) / (2 * h), abs=1e-6)


@pytest.mark.parametrize("kind", STRUCTURES)
def test_parameter_gradient(form, kind):
    atoms = STRUCTURES[kind]()
    params = local_params(form.name, len(atoms))
    result = evaluate(form, atoms, params)
    h = 1e-6
    for k in range(form.n_params):
        step = np.zeros_like(params)
        step[:, k] = h
        up = evaluate(form, atoms, params + step).energies
        down = evaluate(form, atoms, params - step).energies
        np.testing.assert_allclose(result.dE_dp[:, k], (up - down) / (2 * h), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("kind", STRUCTURES)
def test_adjoint_u_and_hessian(form, kind):
    atoms = STRUCTURES[kind]()
    n = len(atoms)
    rng = np.random.default_rng(7)
    params = local_params(form.name, n)
    displacement = rng.normal(size=(n, 3))
    strain = rng.normal(size=(3, 3)) if atoms.pbc.all() else np.zeros((3, 3))
    nl = build_neighbour_list(atoms.positions, atoms.cell.array, atoms.pbc, form.cutoff)
    species = np.zeros(n, np.int32)
    u, hessian = adjoint(form, nl, species, params, displacement, strain, num_threads=1)
    np.testing.assert_array_equal(u, adjoint_u(form, nl, species, params, displacement, strain, 1))
    assert np.abs(u).max() > 1e-3
    # with a parameter tangent v in the same direction: u + H v, without forming H
    v = rng.normal(size=params.shape)
    np.testing.assert_allclose(
        adjoint_u(form, nl, species, params, displacement, strain, 1, parameter_tangent=v),
        u + np.einsum("ikl,il->ik", hessian, v), rtol=1e-12,
        atol=1e-12 * np.abs(hessian).max() * np.abs(v).max())
    # u[i, k] = d/dp_ik of the directional derivative of E_i = that derivative of dE_i/dp_ik
    h = 1e-6
    grads = []
    for t in (h, -h):
        x, cell = deformed(atoms, displacement, strain, t)
        grads.append(evaluate(form, atoms, params, positions=x, cell=cell).dE_dp)
    np.testing.assert_allclose(u, (grads[0] - grads[1]) / (2 * h), atol=2e-5, rtol=1e-5)
    for k in range(form.n_params):
        step = np.zeros_like(params)
        step[:, k] = h
        fd = (evaluate(form, atoms, params + step).dE_dp
              - evaluate(form, atoms, params - step).dE_dp) / (2 * h)
        np.testing.assert_allclose(hessian[:, k, :], fd, atol=2e-5, rtol=1e-5)
    np.testing.assert_allclose(hessian, hessian.transpose(0, 2, 1), atol=1e-10)


def test_invariance(form):
    atoms = cluster()
    params = local_params(form.name, len(atoms))
    reference = evaluate(form, atoms, params)
    rotation = np.linalg.qr(np.random.default_rng(1).normal(size=(3, 3)))[0]
    moved = evaluate(form, atoms, params, positions=atoms.positions @ rotation.T + [1.0, -2.0, 0.5])
    np.testing.assert_allclose(moved.energies, reference.energies, atol=1e-11)
    np.testing.assert_allclose(moved.forces, reference.forces @ rotation.T, atol=1e-10)
    order = np.random.default_rng(2).permutation(len(atoms))
    permuted = atoms[order]
    shuffled = evaluate(form, permuted, params[order])
    np.testing.assert_allclose(shuffled.energies, reference.energies[order], atol=1e-11)
    np.testing.assert_allclose(shuffled.forces, reference.forces[order], atol=1e-10)
    # a periodic crystal: a lattice translation of one atom changes nothing
    atoms = periodic()
    params = local_params(form.name, len(atoms))
    x = atoms.positions.copy()
    x[0] += atoms.cell[1]
    np.testing.assert_allclose(evaluate(form, atoms, params, positions=x).energies,
                               evaluate(form, atoms, params).energies, atol=1e-11)


def test_one_and_two_threads_agree(form):
    atoms = periodic().repeat((1, 1, 2))
    params = local_params(form.name, len(atoms))
    nl = build_neighbour_list(atoms.positions, atoms.cell.array, True, form.cutoff)
    species = np.zeros(len(atoms), np.int32)
    one, two = (per_atom(form, nl, species, params, n) for n in (1, 2))
    for name in ("energies", "forces", "virial", "dE_dp"):
        np.testing.assert_allclose(getattr(two, name), getattr(one, name), rtol=1e-12, atol=1e-12)
    g = np.random.default_rng(0).normal(size=(len(atoms), 3))
    (u1, h1), (u2, h2) = (adjoint(form, nl, species, params, g, np.eye(3), n) for n in (1, 2))
    np.testing.assert_allclose(u2, u1, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(h2, h1, rtol=1e-12, atol=1e-12)


def test_isolated_atom_has_zero_energy(form):
    atoms = Atoms("Mo2", positions=[[0, 0, 0], [0, 0, CUTOFF + 0.1]])
    result = evaluate(form, atoms, np.tile(start(form.name), (2, 1)))
    assert result.energies.tolist() == [0.0, 0.0]
    assert not result.forces.any() and not result.dE_dp.any()


@pytest.mark.parametrize("name, index, value, message", [
    ("bop", 5, -1.0, "parameter sigma of the bop form must be >= 0"),
    ("bop", 6, -0.1, "parameter a of the bop form must be >= 0"),
    ("bop", 7, -0.1, "parameter lambda of the bop form must be >= 0"),
    ("bop", 0, np.nan, "parameter A of the bop form is not finite"),
    ("eam", 5, -1.0, "parameter sigma of the eam form must be >= 0"),
    ("eam", 4, -1.0, "parameter gamma of the eam form must be >= 0"),
])
def test_bad_parameters_are_named(name, index, value, message):
    form = form_by_name(name, CUTOFF, WIDTH)
    atoms = cluster()
    params = np.tile(start(name), (len(atoms), 1))
    params[3, index] = value
    with pytest.raises(ValueError, match=message):
        evaluate(form, atoms, params)


def test_bad_shapes_and_cutoffs():
    form = form_by_name("bop", CUTOFF, WIDTH)
    atoms = cluster()
    with pytest.raises(ValueError, match=r"params must have shape \(n_atoms, n_params\)"):
        evaluate(form, atoms, np.tile(start("bop"), (len(atoms) - 1, 1)))
    with pytest.raises(ValueError, match="parameters of the bop form must have shape"):
        form.check(np.ones(7))
    for bad in (0.0, -1.0, np.nan):
        with pytest.raises(ValueError, match="cutoff of the bop form must be a positive"):
            form_by_name("bop", bad, WIDTH)
        with pytest.raises(ValueError, match="cutoff_width of the eam form must be a positive"):
            form_by_name("eam", CUTOFF, bad)
    with pytest.raises(ValueError, match="unknown physical form 'tersoff'"):
        form_by_name("tersoff", CUTOFF, WIDTH)
    nl = build_neighbour_list(atoms.positions, atoms.cell.array, False, CUTOFF - 1)
    with pytest.raises(ValueError, match="neighbour list's cutoff"):
        per_atom(form, nl, np.zeros(len(atoms)), np.tile(start("bop"), (len(atoms), 1)))


@pytest.mark.parametrize("name", ["bop", "eam"])
def test_energy_is_continuous_when_an_atom_crosses_the_cutoff(name):
    """An atom k crossing i's cutoff while it lies beside the bond i-j (r_jk < r_ij, so its
    screening excess r_ik + r_jk - r_ij is inside the cutoff): the energy changes by no more
    than its smooth slope allows. Screening that switched k on at r_ik = r_c would jump."""
    form = form_by_name(name, cutoff=CUTOFF, cutoff_width=WIDTH)
    direction = np.array([3.8, 1.25, 0.0]) / np.linalg.norm([3.8, 1.25, 0.0])

    def energy(r_ik):
        atoms = Atoms("Mo3", positions=[[0, 0, 0], [2.9, 0, 0], r_ik * direction])
        return evaluate(form, atoms, np.tile(start(name), (3, 1))).energies.sum()

    def jump(eps):
        return abs(energy(CUTOFF + eps) - energy(CUTOFF - eps))

    # a continuous energy changes in proportion to the step (k moves nearer j as well, so the
    # slope is steep); a jump of even 1e-6 eV would stay as the step shrinks
    assert jump(1e-7) < 2e-4 * jump(1e-3) + 1e-11
