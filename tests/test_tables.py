"""Generated tables: spherical harmonics kernel (ace._core._harmonics) and Clebsch-Gordan table."""
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.special import sph_harm_y

from ace._core._harmonics import YLM_LMAX, spherical_harmonics
from ace.basis.clebsch_gordan import CG_JMAX, clebsch_gordan, clebsch_gordan_array

REPO_ROOT = Path(__file__).resolve().parents[1]
SQRT_4PI = math.sqrt(4 * math.pi)


def ylm_index(l, m):
    return l * (l + 1) // 2 + m


def test_pace_example_values():
    v = np.array([[0.3, -1.2, 0.7]])
    x, y, z = v[0] / np.linalg.norm(v[0])
    Y = spherical_harmonics(v, 1)[0]
    assert Y[ylm_index(0, 0)] == 1.0
    assert Y[ylm_index(1, 0)] == pytest.approx(math.sqrt(3) * z, abs=1e-15)
    assert Y[ylm_index(1, 1)] == pytest.approx(-math.sqrt(1.5) * (x + 1j * y), abs=1e-15)


# ---------------------------------------------------------------------------------------------
# Spherical harmonics
# ---------------------------------------------------------------------------------------------

def sample_vectors(seed=0):
    """Random directions with lengths far from 1, the poles, and points close to the z axis."""
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(40, 3))
    directions /= np.linalg.norm(directions, axis=1)[:, None]
    random_points = directions * rng.uniform(0.05, 20.0, size=(40, 1))
    axis_points = np.array([[0, 0, 1.0], [0, 0, -1.0], [0, 0, 3.7], [0, 0, -0.2]])
    near_axis = np.array([[1e-9, -2e-9, 1.0], [3e-7, 1e-7, -2.5], [-1e-4, 2e-4, 0.8],
                          [1e-5, 0.0, -1.0]])
    equator = np.array([[1.0, 0, 0], [0, -2.0, 0], [0.6, 0.8, 0.0]])
    return np.vstack([random_points, axis_points, near_axis, equator])


def scipy_reference(vectors, l, m):
    # arctan2, not arccos(z/r): arccos loses the polar angle near the poles
    theta = np.arctan2(np.hypot(vectors[:, 0], vectors[:, 1]), vectors[:, 2])
    phi = np.arctan2(vectors[:, 1], vectors[:, 0])
    return SQRT_4PI * sph_harm_y(l, m, theta, phi)


@pytest.mark.parametrize("lmax, tolerance", [(10, 1e-12), (YLM_LMAX, 1e-11)])
def test_harmonics_match_scipy(lmax, tolerance):
    vectors = sample_vectors()
    Y = spherical_harmonics(vectors, lmax)
    assert Y.shape == (len(vectors), (lmax + 1) * (lmax + 2) // 2)
    for l in range(lmax + 1):
        # |Ytilde_lm| <= sqrt(2l+1): the natural scale for a relative error
        scale = math.sqrt(2 * l + 1)
        for m in range(l + 1):
            error = np.abs(Y[:, ylm_index(l, m)] - scipy_reference(vectors, l, m))
            assert error.max() <= tolerance * scale, (l, m, error.max())


def test_harmonics_exact_on_z_axis():
    Y_up, Y_down = spherical_harmonics(np.array([[0, 0, 2.0], [0, 0, -0.5]]), YLM_LMAX)
    for l in range(YLM_LMAX + 1):
        assert Y_up[ylm_index(l, 0)] == pytest.approx(math.sqrt(2 * l + 1), rel=1e-14)
        assert Y_down[ylm_index(l, 0)] == pytest.approx((-1) ** l * math.sqrt(2 * l + 1),
                                                         rel=1e-14)
        for m in range(1, l + 1):
            assert Y_up[ylm_index(l, m)] == 0 and Y_down[ylm_index(l, m)] == 0


def test_negative_m_from_conjugate():
    """The caller's rule Ytilde_{l,-m} = (-1)^m conj(Ytilde_lm) is scipy's negative m."""
    vectors = sample_vectors(seed=1)
    Y = spherical_harmonics(vectors, 10)
    for l in range(11):
        for m in range(1, l + 1):
            from_positive = (-1) ** m * np.conj(Y[:, ylm_index(l, m)])
            np.testing.assert_allclose(from_positive, scipy_reference(vectors, l, -m),
                                       rtol=0, atol=1e-12 * math.sqrt(2 * l + 1))


def test_values_identical_with_and_without_gradients():
    vectors = sample_vectors(seed=2)
    Y_only = spherical_harmonics(vectors, YLM_LMAX)
    Y, dY = spherical_harmonics(vectors, YLM_LMAX, gradients=True)
    np.testing.assert_array_equal(Y, Y_only)
    assert dY.shape == Y.shape + (3,)


def central_difference_gradient(vectors, lmax):
    """Per-point step 1e-5 |r|: the harmonics depend on r/|r| only."""
    gradient = np.empty(vectors.shape[:1] + (len(spherical_harmonics(vectors[:1], lmax)[0]), 3),
                        dtype=complex)
    steps = 1e-5 * np.linalg.norm(vectors, axis=1)[:, None]
    for c in range(3):
        shift = np.zeros(3)
        shift[c] = 1.0
        forward = spherical_harmonics(vectors + steps * shift, lmax)
        backward = spherical_harmonics(vectors - steps * shift, lmax)
        gradient[:, :, c] = (forward - backward) / (2 * steps)
    return gradient


@pytest.mark.parametrize("lmax", [10, YLM_LMAX])
def test_gradients_match_finite_differences(lmax):
    vectors = sample_vectors(seed=3)
    _, dY = spherical_harmonics(vectors, lmax, gradients=True)
    reference = central_difference_gradient(vectors, lmax)
    r = np.linalg.norm(vectors, axis=1)
    for l in range(lmax + 1):
        # Central-difference truncation error ~ step^2 l^3 sqrt(2l+1)/|r| (observed ~5e-12 (l+1)^3
        # in these units), plus rounding ~ eps/1e-5.
        tolerance = (2e-11 * (l + 1) ** 3 + 1e-10) * math.sqrt(2 * l + 1) / r[:, None]
        for m in range(l + 1):
            error = np.abs(dY[:, ylm_index(l, m)] - reference[:, ylm_index(l, m)])
            assert np.all(error <= tolerance), (l, m, error.max())


def test_gradients_tangential_and_scale_as_inverse_length():
    vectors = sample_vectors(seed=4)
    _, dY = spherical_harmonics(vectors, YLM_LMAX, gradients=True)
    _, dY_scaled = spherical_harmonics(2.5 * vectors, YLM_LMAX, gradients=True)
    # r . grad = 0 up to rounding in the cancellation of terms of size ~ l sqrt(2l+1)
    radial_component = np.einsum("nkc,nc->nk", dY, vectors)
    for l in range(YLM_LMAX + 1):
        error = np.abs(radial_component[:, ylm_index(l, 0):ylm_index(l, l) + 1])
        assert error.max() <= 1e-14 * (l + 1) * math.sqrt(2 * l + 1), l
    np.testing.assert_allclose(dY_scaled, dY / 2.5, rtol=1e-12, atol=1e-12 * np.abs(dY).max())


def test_gradients_on_z_axis_closed_form():
    """On the z axis only m = 1 has a gradient: d/dx Ytilde_l1 = -sqrt((2l+1) l(l+1)/4)/|r|."""
    r = 1.7
    _, dY = spherical_harmonics(np.array([[0, 0, r]]), YLM_LMAX, gradients=True)
    for l in range(1, YLM_LMAX + 1):
        expected = -math.sqrt((2 * l + 1) * l * (l + 1) / 4) / r
        d11 = dY[0, ylm_index(l, 1)]
        assert d11[0] == pytest.approx(expected, rel=1e-13)
        assert d11[1] == pytest.approx(1j * expected, rel=1e-13)
        assert abs(d11[2]) <= 1e-14 * l ** 2
        for m in (0,) + tuple(range(2, l + 1)):
            assert np.abs(dY[0, ylm_index(l, m)]).max() <= 1e-14 * l ** 2, (l, m)


def test_lmax_zero_and_limit():
    Y, dY = spherical_harmonics(np.array([[1.0, 2.0, 3.0]]), 0, gradients=True)
    assert Y.tolist() == [[1.0]] and np.all(dY == 0)
    with pytest.raises(ValueError, match="YLM_LMAX"):
        spherical_harmonics(np.array([[1.0, 2.0, 3.0]]), YLM_LMAX + 1)


# ---------------------------------------------------------------------------------------------
# Clebsch-Gordan coefficients
# ---------------------------------------------------------------------------------------------

def test_cg_closed_forms():
    s3 = math.sqrt(3)
    assert clebsch_gordan(0, 0, 0, 0, 0, 0) == 1.0
    assert clebsch_gordan(1, 0, 1, 0, 0, 0) == pytest.approx(-1 / s3, rel=1e-15)
    assert clebsch_gordan(1, 1, 1, -1, 0, 0) == pytest.approx(1 / s3, rel=1e-15)
    assert clebsch_gordan(1, 0, 1, 0, 2, 0) == pytest.approx(math.sqrt(2 / 3), rel=1e-15)
    assert clebsch_gordan(1, 1, 1, 0, 1, 1) == pytest.approx(1 / math.sqrt(2), rel=1e-15)
    assert clebsch_gordan(1, 0, 1, 0, 1, 0) == 0.0
    assert clebsch_gordan(2, 1, 1, -1, 1, 0) == pytest.approx(math.sqrt(3 / 10), rel=1e-15)
    for j in range(CG_JMAX + 1):
        for m in range(-j, j + 1):
            # coupling to zero and C(j m 1 0 | j m) = m / sqrt(j(j+1))
            assert clebsch_gordan(j, m, j, -m, 0, 0) == pytest.approx(
                (-1) ** (j - m) / math.sqrt(2 * j + 1), rel=1e-15)
            if j >= 1:
                assert clebsch_gordan(j, m, 1, 0, j, m) == pytest.approx(
                    m / math.sqrt(j * (j + 1)), rel=1e-14, abs=1e-16)


def test_cg_stretched_coupling():
    """J = j1 + j2: C = sqrt(binom(2j1, j1+m1) binom(2j2, j2+m2) / binom(2J, J+M))."""
    for j1 in range(CG_JMAX + 1):
        for j2 in range(CG_JMAX + 1 - j1):
            J = j1 + j2
            for m1 in range(-j1, j1 + 1):
                for m2 in range(-j2, j2 + 1):
                    M = m1 + m2
                    expected = math.sqrt(math.comb(2 * j1, j1 + m1) * math.comb(2 * j2, j2 + m2)
                                         / math.comb(2 * J, J + M))
                    assert clebsch_gordan(j1, m1, j2, m2, J, M) == pytest.approx(expected,
                                                                                 rel=1e-14)


def all_cg_keys(jmax=CG_JMAX):
    """Every (j1, m1, j2, m2, J) with |m| <= j and |m1 + m2| <= J <= jmax, triangle allowed."""
    keys = [(j1, m1, j2, m2, J)
            for j1 in range(jmax + 1) for j2 in range(jmax + 1)
            for J in range(abs(j1 - j2), min(j1 + j2, jmax) + 1)
            for m1 in range(-j1, j1 + 1) for m2 in range(-j2, j2 + 1) if abs(m1 + m2) <= J]
    return np.array(keys).T


def test_cg_orthogonality():
    j1_all, m1_all, j2_all, m2_all, J_all = all_cg_keys()
    values = clebsch_gordan_array(j1_all, m1_all, j2_all, m2_all, J_all, m1_all + m2_all)
    for j1 in range(CG_JMAX + 1):
        for j2 in range(CG_JMAX + 1):
            pair = (j1_all == j1) & (j2_all == j2)
            # rows: (J, M) ; columns: (m1, m2) with m1 + m2 = M
            row = (J_all[pair] * (2 * CG_JMAX + 1) + (m1_all + m2_all)[pair] + CG_JMAX)
            column = (m1_all[pair] + j1) * (2 * j2 + 1) + m2_all[pair] + j2
            matrix = np.zeros(((CG_JMAX + 1) * (2 * CG_JMAX + 1), (2 * j1 + 1) * (2 * j2 + 1)))
            matrix[row, column] = values[pair]
            matrix = matrix[np.any(matrix != 0, axis=1)]
            # sum over m1, m2 of C(..|JM) C(..|J'M') = delta: orthonormal rows
            np.testing.assert_allclose(matrix @ matrix.T, np.eye(len(matrix)), atol=1e-14)
            if j1 + j2 <= CG_JMAX:
                # all J present: the transformation is complete, so also orthonormal columns
                assert matrix.shape[0] == matrix.shape[1]
                np.testing.assert_allclose(matrix.T @ matrix, np.eye(len(matrix)), atol=1e-14)


def test_cg_symmetries():
    j1, m1, j2, m2, J = all_cg_keys()
    M = m1 + m2
    value = clebsch_gordan_array(j1, m1, j2, m2, J, M)
    sign = (-1.0) ** (j1 + j2 - J)
    assert np.count_nonzero(value) > 0.9 * value.size
    np.testing.assert_array_equal(clebsch_gordan_array(j2, m2, j1, m1, J, M), sign * value)
    np.testing.assert_array_equal(clebsch_gordan_array(j1, -m1, j2, -m2, J, -M), sign * value)
    # A symmetry the stored canonical subset does not use: moving j1 to the right-hand side.
    moved = clebsch_gordan_array(J, -M, j2, m2, j1, -m1)
    np.testing.assert_allclose(
        value, (-1.0) ** (j2 + m2) * np.sqrt((2 * J + 1) / (2 * j1 + 1)) * moved,
        rtol=1e-14, atol=1e-15)


def test_cg_matches_sympy_sample():
    from sympy.physics.wigner import clebsch_gordan as exact_cg

    rng = np.random.default_rng(5)
    j1, m1, j2, m2, J = all_cg_keys()
    for i in rng.choice(j1.size, size=300, replace=False):
        args = int(j1[i]), int(m1[i]), int(j2[i]), int(m2[i]), int(J[i])
        expected = float(exact_cg(args[0], args[2], args[4], args[1], args[3], args[1] + args[3]))
        assert clebsch_gordan(*args, args[1] + args[3]) == pytest.approx(expected, rel=1e-15,
                                                                          abs=1e-300)


def test_cg_matches_pyace_convention():
    """python-ace (the PACE oracle) uses the same coefficients and argument order."""
    coupling = pytest.importorskip("pyace.coupling")
    j1, m1, j2, m2, J = all_cg_keys(jmax=8)
    ours = clebsch_gordan_array(j1, m1, j2, m2, J, m1 + m2)
    theirs = [coupling.clebsch_gordan(*map(int, key), int(key[1] + key[3]))
              for key in zip(j1, m1, j2, m2, J)]
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-14)


def test_cg_forbidden_combinations_are_zero():
    assert clebsch_gordan(1, 1, 1, 0, 1, 0) == 0.0  # M != m1 + m2
    assert clebsch_gordan(1, 0, 1, 0, 3, 0) == 0.0  # triangle
    assert clebsch_gordan(4, 0, 1, 0, 2, 0) == 0.0  # triangle
    assert clebsch_gordan(1, 2, 1, -2, 0, 0) == 0.0  # |m1| > j1
    assert clebsch_gordan(2, 2, 2, 0, 1, 2) == 0.0  # |M| > J
    assert clebsch_gordan(-1, 0, 1, 0, 0, 0) == 0.0
    got = clebsch_gordan_array(np.array([1, 1, 1]), np.array([1, 0, 1]), 1,
                               np.array([0, 0, -1]), np.array([1, 3, 0]), np.array([0, 0, 0]))
    np.testing.assert_allclose(got, [0.0, 0.0, 1 / math.sqrt(3)], rtol=1e-15, atol=0)


def test_cg_array_matches_scalar_including_forbidden():
    rng = np.random.default_rng(6)
    args = rng.integers(-2, CG_JMAX + 1, size=(6, 2000))
    args[[0, 2, 4]] = np.abs(args[[0, 2, 4]])
    args[5, ::2] = args[1, ::2] + args[3, ::2]  # half of them with M = m1 + m2
    got = clebsch_gordan_array(*args)
    expected = [clebsch_gordan(*map(int, column)) for column in args.T]
    np.testing.assert_array_equal(got, expected)


def test_cg_beyond_table_raises():
    big = CG_JMAX + 1
    for args in ((big, 0, 1, 0, big, 0), (1, 0, big, 0, big, 0), (6, 0, 7, 0, big, 0)):
        with pytest.raises(ValueError, match=f"CG_JMAX = {CG_JMAX}"):
            clebsch_gordan(*args)
    with pytest.raises(ValueError, match=f"CG_JMAX = {CG_JMAX}"):
        clebsch_gordan_array(np.array([1, big]), 0, 1, 0, 1, 0)


def test_cg_loader_does_not_import_sympy(tmp_path):
    code = ("import sys; from ace.basis.clebsch_gordan import clebsch_gordan; "
            "clebsch_gordan(2, 1, 2, -1, 2, 0); assert 'sympy' not in sys.modules")
    from conftest import package_env
    subprocess.run([sys.executable, "-c", code], check=True, env=package_env(), cwd=tmp_path)


# ---------------------------------------------------------------------------------------------
# Regeneration
# ---------------------------------------------------------------------------------------------

def test_generated_files_are_reproducible(tmp_path):
    """The committed tables are exactly what the generator writes (takes ~40 s: full sympy CG)."""
    # run by path: the source tree has no compiled modules, and the generator needs none
    generator = REPO_ROOT / "ace" / "_core" / "generate_tables.py"
    subprocess.run([sys.executable, str(generator), "--output-dir", str(tmp_path)],
                   check=True, cwd=tmp_path)
    committed = {
        "ylm_tables.h": REPO_ROOT / "ace" / "_core" / "ylm_tables.h",
        "clebsch_gordan.txt": REPO_ROOT / "ace" / "basis" / "data" / "clebsch_gordan.txt",
    }
    for name, path in committed.items():
        assert (tmp_path / name).read_bytes() == path.read_bytes(), name
    header_first_line = committed["ylm_tables.h"].read_text().splitlines()[0]
    assert "GENERATED by `python -m ace._core.generate_tables`" in header_first_line
    table_first_line = committed["clebsch_gordan.txt"].read_text().splitlines()[0]
    assert table_first_line.startswith("# GENERATED by `python -m ace._core.generate_tables`")
