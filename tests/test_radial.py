"""Tests of the radial/cutoff/core/embedding kernels in ace._core._radial.

The Cython kernels are compared with the plain-numpy formulas of reference_formulas.py, their
derivatives with finite differences, and both with python-ace (the oracle) where pyace exposes
the functions.
"""
import itertools

import mpmath
import numpy as np
import pytest

import reference_formulas as ref
from ace._core import _radial

RADIAL_CASES = [
    # family, lam, rcut, dcut
    ("ChebExpCos", 5.25, 5.0, 0.01),
    ("ChebExpCos", 2.0, 7.5, 0.5),
    ("ChebExpCos", 0.7, 3.2, 1.2),
    ("ChebExpCos", -1.5, 4.0, 0.3),
    ("ChebPow", 2.0, 5.0, 0.01),
    ("ChebPow", 1.0, 6.0, 0.5),
    ("ChebPow", 5.25, 3.5, 0.0),
    ("ChebPow", 0.6, 4.0, 0.2),   # lam < 1: derivative diverges at rcut
    ("SBessel", 0.0, 5.0, 0.01),
    ("SBessel", 3.0, 3.1, 0.5),
    ("SBessel", 1.0, 8.7, 0.0),
]
NRADBASES = [1, 2, 7, 20]


def scaled_error(actual, expected, axis=0):
    """max |actual - expected| / max |expected| along `axis` (per basis function)."""
    scale = np.max(np.abs(expected), axis=axis)
    scale = np.where(scale > 0, scale, 1.0)
    return np.max(np.abs(actual - expected), axis=axis) / scale


def central_difference(func, x, h):
    """Fourth-order central difference of func at x (func vectorised, h scalar or array)."""
    h = np.asarray(h, dtype=float)
    if np.ndim(func(x)) > np.ndim(x):
        h = h[..., None]
    return (-func(x + 2 * h) + 8 * func(x + h) - 8 * func(x - h) + func(x - 2 * h)) / (12 * h)


def away_from(x, kinks, distance):
    """Mask of points further than `distance` from all `kinks`."""
    mask = np.ones_like(x, dtype=bool)
    for kink in kinks:
        mask &= np.abs(x - kink) > distance
    return mask


def radial_grid(rcut, dcut):
    r = np.linspace(0.0, 1.25 * rcut, 1501)
    special = [rcut, rcut - dcut, np.nextafter(rcut, 0), np.nextafter(rcut, 2 * rcut),
               1e-12, 1e-6, 1e-3]
    return np.sort(np.concatenate([r, [s for s in special if s >= 0]]))


# ---------------------------------------------------------------------------------------------
# radial bases

def test_ids():
    assert _radial.RADBASE_IDS == {"SBessel": 0, "ChebExpCos": 1, "ChebPow": 2}
    assert _radial.NPOT_IDS == {"FinnisSinclair": 0, "FinnisSinclairShiftedScaled": 1}


@pytest.mark.parametrize("family,lam,rcut,dcut", RADIAL_CASES)
@pytest.mark.parametrize("nradbase", NRADBASES)
def test_radial_base_matches_reference(family, lam, rcut, dcut, nradbase):
    r = radial_grid(rcut, dcut)
    g, dg = _radial.radial_base_values(family, lam, rcut, dcut, nradbase, r)
    g_ref, dg_ref = ref.radial_base_reference(family, lam, rcut, dcut, nradbase, r)
    assert g.shape == dg.shape == (r.size, nradbase)
    assert np.all(np.isfinite(g)) and np.all(np.isfinite(dg))
    assert np.all(scaled_error(g, g_ref) <= 1e-12)
    if family == "ChebPow" and lam < 1:
        # dg ~ (rcut - r)^(lam-1) is huge next to rcut; compare away from it
        keep = r < rcut - 1e-3
        assert np.all(scaled_error(dg[keep], dg_ref[keep]) <= 1e-12)
    else:
        assert np.all(scaled_error(dg, dg_ref) <= 1e-12)


def test_radial_base_accepts_ids_and_rejects_unknown():
    r = np.linspace(0.5, 4.5, 7)
    by_name = _radial.radial_base_values("SBessel", 0.0, 5.0, 0.1, 4, r)
    by_id = _radial.radial_base_values(_radial.RADBASE_IDS["SBessel"], 0.0, 5.0, 0.1, 4, r)
    np.testing.assert_array_equal(by_name[0], by_id[0])
    with pytest.raises(ValueError):
        _radial.radial_base_values("ChebLinear", 1.0, 5.0, 0.1, 4, r)
    with pytest.raises(ValueError):
        _radial.radial_base_values(7, 1.0, 5.0, 0.1, 4, r)
    with pytest.raises(ValueError):
        _radial.radial_base_values("SBessel", 1.0, 5.0, 0.1, 0, r)


@pytest.mark.parametrize("family,lam,rcut,dcut", [c for c in RADIAL_CASES if c[1] >= 1 or c[0] != "ChebPow"])
def test_radial_base_derivative_finite_difference(family, lam, rcut, dcut):
    nradbase = 20
    h = 2e-5 * min(rcut, dcut if dcut > 0 else rcut)
    r = np.linspace(0.0, 1.1 * rcut, 997)
    r = r[away_from(r, [rcut, rcut - dcut], 2.5 * h)]
    _, dg = _radial.radial_base_values(family, lam, rcut, dcut, nradbase, r)
    fd = central_difference(
        lambda x: _radial.radial_base_values(family, lam, rcut, dcut, nradbase, x)[0], r, h)
    assert np.all(scaled_error(dg, fd) <= 1e-7)


@pytest.mark.parametrize("family,lam,rcut,dcut", RADIAL_CASES)
def test_radial_base_vanishes_at_and_beyond_rcut(family, lam, rcut, dcut):
    r = np.array([rcut, np.nextafter(rcut, 2 * rcut), 1.01 * rcut, 2 * rcut, 1e3])
    g, dg = _radial.radial_base_values(family, lam, rcut, dcut, 20, r)
    assert np.all(g == 0.0) and np.all(dg == 0.0)


@pytest.mark.parametrize("family,lam,rcut,dcut",
                         [c for c in RADIAL_CASES if not (c[0] == "ChebPow" and c[1] <= 1)])
def test_radial_base_value_and_slope_continuous_at_rcut(family, lam, rcut, dcut):
    # ChebPow is C1 at rcut only for lam > 1; the other families always are.
    nradbase = 20
    r_inside = rcut * (1 - 1e-9)
    r_far = np.linspace(0.0, rcut, 501)
    g_far, dg_far = _radial.radial_base_values(family, lam, rcut, dcut, nradbase, r_far)
    g, dg = _radial.radial_base_values(family, lam, rcut, dcut, nradbase, [r_inside])
    assert np.all(np.abs(g[0]) <= 1e-8 * np.abs(g_far).max(axis=0))
    assert np.all(np.abs(dg[0]) <= 1e-6 * np.abs(dg_far).max(axis=0))


@pytest.mark.parametrize("lam,rcut,dcut", [(5.25, 5.0, 0.01), (2.0, 7.5, 0.5), (0.7, 3.2, 1.2)])
def test_chebexpcos_continuous_at_taper_start(lam, rcut, dcut):
    nradbase = 20
    z = rcut - dcut
    eps = 1e-9 * dcut
    g, dg = _radial.radial_base_values("ChebExpCos", lam, rcut, dcut, nradbase, [z - eps, z + eps])
    g_all, dg_all = _radial.radial_base_values("ChebExpCos", lam, rcut, dcut, nradbase,
                                               np.linspace(0, rcut, 501))
    assert np.all(np.abs(g[1] - g[0]) <= 1e-8 * np.abs(g_all).max(axis=0))
    assert np.all(np.abs(dg[1] - dg[0]) <= 1e-6 * np.abs(dg_all).max(axis=0))


def test_chebexpcos_first_function_is_the_envelope():
    r = np.linspace(0, 4.0, 101)
    g, _ = _radial.radial_base_values("ChebExpCos", 3.0, 5.0, 0.5, 3, r)
    np.testing.assert_allclose(g[:, 0], 0.5 * (1 + np.cos(np.pi * r / 5.0)), rtol=1e-14, atol=1e-16)


def _sbessel_mpmath(rcut, nradbase, r):
    """High-precision SBessel g_k(r) and dg_k/dr straight from the formula (for small r)."""
    with mpmath.workdps(40):
        r, rc = mpmath.mpf(r), mpmath.mpf(rcut)

        def f(n, x):
            k1, k2 = n + 1, n + 2
            pref = ((-1) ** n * mpmath.sqrt(2) * mpmath.pi / rc ** mpmath.mpf(1.5) * k1 * k2
                    / mpmath.sqrt(k1**2 + k2**2))
            return pref * (mpmath.sinc(k1 * mpmath.pi * x / rc) + mpmath.sinc(k2 * mpmath.pi * x / rc))

        g = [lambda x: f(0, x)]
        d_prev = mpmath.mpf(1)
        for n in range(1, nradbase):
            e_n = mpmath.mpf(n**2 * (n + 2) ** 2) / (4 * (n + 1) ** 4 + 1)
            d_n = 1 - e_n / d_prev
            mix, norm = mpmath.sqrt(e_n / d_prev), 1 / mpmath.sqrt(d_n)
            g.append(lambda x, n=n, mix=mix, norm=norm, prev=g[-1]: norm * (f(n, x) + mix * prev(x)))
            d_prev = d_n
        return (np.array([float(gk(r)) for gk in g]),
                np.array([float(mpmath.diff(gk, r)) for gk in g]))


@pytest.mark.parametrize("r", [0.0, 1e-9, 1e-6, 1e-3, 0.02, 0.3, 2.7])
def test_sbessel_small_r_against_high_precision(r):
    rcut, nradbase = 5.0, 20
    g_exact, dg_exact = _sbessel_mpmath(rcut, nradbase, r)
    g, dg = _radial.radial_base_values("SBessel", 0.0, rcut, 0.0, nradbase, [r])
    g_ref, dg_ref = ref.radial_base_reference("SBessel", 0.0, rcut, 0.0, nradbase, [r])
    g_scale = np.abs(_radial.radial_base_values("SBessel", 0.0, rcut, 0.0, nradbase,
                                                np.linspace(0, rcut, 201))[0]).max(axis=0)
    dg_scale = g_scale / rcut * nradbase
    for values, derivs in [(g[0], dg[0]), (g_ref[0], dg_ref[0])]:
        assert np.all(np.abs(values - g_exact) <= 1e-13 * g_scale)
        assert np.all(np.abs(derivs - dg_exact) <= 1e-12 * dg_scale)
    if r == 0.0:
        assert np.all(dg[0] == 0.0)  # g is even in r


# ---------------------------------------------------------------------------------------------
# inner cutoff polynomial

@pytest.mark.parametrize("r_in,delta", [(1.0, 0.5), (2.3, 0.1), (0.5, 0.5), (4.0, 1e-3)])
def test_cutoff_poly_matches_reference_and_derivative(r_in, delta):
    r = np.concatenate([np.linspace(r_in - 2 * delta, r_in + delta, 1001), [r_in, r_in - delta]])
    f, df = _radial.cutoff_poly_values(r, r_in, delta)
    f_ref, df_ref = ref.cutoff_poly_reference(r, r_in, delta)
    np.testing.assert_allclose(f, f_ref, rtol=1e-12, atol=1e-15)
    assert scaled_error(df, df_ref) <= 1e-12

    h = 1e-4 * delta
    inner = away_from(r, [r_in, r_in - delta], 2.5 * h)
    fd = central_difference(lambda x: _radial.cutoff_poly_values(x, r_in, delta)[0], r[inner], h)
    assert scaled_error(df[inner], fd) <= 1e-8


@pytest.mark.parametrize("r_in,delta", [(1.0, 0.5), (2.3, 0.1)])
def test_cutoff_poly_endpoints_and_c2(r_in, delta):
    lo, hi = r_in - delta, r_in
    f, df = _radial.cutoff_poly_values([lo - 1, lo, hi, hi + 1, lo + delta / 2], r_in, delta)
    np.testing.assert_array_equal(f[:4], [1.0, 1.0, 0.0, 0.0])
    np.testing.assert_array_equal(df[:4], 0.0)
    assert f[4] == pytest.approx(0.5, abs=1e-13)
    assert df[4] == pytest.approx(-15 / 8 / delta, rel=1e-14)  # steepest slope at the middle
    # value, slope and curvature all go to zero/one smoothly at both ends (C2)
    for end in (lo, hi):
        eps = 1e-6 * delta
        f_near, df_near = _radial.cutoff_poly_values([end - eps, end + eps], r_in, delta)
        assert abs(f_near[1] - f_near[0]) < 1e-15
        assert np.all(np.abs(df_near) <= 1e-10 / delta)
        d2f = np.diff(_radial.cutoff_poly_values([end - 2 * eps, end - eps, end + eps, end + 2 * eps],
                                                  r_in, delta)[1])
        assert np.all(np.abs(d2f) / eps <= 1e-4 / delta**2)
    # monotone step
    r = np.linspace(lo, hi, 501)
    assert np.all(np.diff(_radial.cutoff_poly_values(r, r_in, delta)[0]) <= 0)


def test_cutoff_poly_zero_width_is_a_step():
    f, df = _radial.cutoff_poly_values([0.5, 1.0, 1.5], 1.0, 0.0)
    np.testing.assert_array_equal(f, [1.0, 1.0, 0.0])
    np.testing.assert_array_equal(df, 0.0)


# ---------------------------------------------------------------------------------------------
# exponential core repulsion

CORE_CASES = [(550.0, 10.0, 8.71), (3.0, 2.0, 5.0), (1.0, 0.1, 6.0), (-2.0, -1.5, 4.0)]


@pytest.mark.parametrize("prehc,lambdahc,rcut", CORE_CASES)
def test_core_exponential_matches_reference_and_derivative(prehc, lambdahc, rcut):
    r = np.concatenate([np.linspace(0.05, 1.2 * rcut, 1201), [rcut]])
    phi, dphi = _radial.core_exponential_values(r, prehc, lambdahc, rcut)
    phi_ref, dphi_ref = ref.core_exponential_reference(r, prehc, lambdahc, rcut)
    np.testing.assert_allclose(phi, phi_ref, rtol=1e-12, atol=0)
    np.testing.assert_allclose(dphi, dphi_ref, rtol=1e-12, atol=0)
    assert np.all(phi >= 0)  # signs of pre and lambda are dropped: always repulsive

    h = 1e-5 * rcut
    threshold = np.sqrt(50 / abs(lambdahc))  # where the core is switched off
    ok = away_from(r, [rcut, threshold], 2.5 * h) & (r > 0.1)
    fd = central_difference(lambda x: _radial.core_exponential_values(x, prehc, lambdahc, rcut)[0],
                            r[ok], h)
    np.testing.assert_allclose(dphi[ok], fd, rtol=1e-7, atol=1e-9 * np.abs(dphi).max())


def test_core_exponential_cutoffs():
    phi, dphi = _radial.core_exponential_values([5.0, 6.0, 2.3, 3.0], 3.0, 10.0, 5.0)
    np.testing.assert_array_equal(phi, 0.0)      # r >= rcut, and lam r^2 >= 50
    np.testing.assert_array_equal(dphi, 0.0)
    phi, dphi = _radial.core_exponential_values([5.0 * (1 - 1e-8)], 3.0, 0.01, 5.0)
    assert abs(phi[0]) < 1e-15 and abs(dphi[0]) < 1e-7  # envelope: C1 at rcut
    np.testing.assert_array_equal(_radial.core_exponential_values([1.3], -3.0, -0.5, 5.0)[0],
                                  _radial.core_exponential_values([1.3], 3.0, 0.5, 5.0)[0])


# ---------------------------------------------------------------------------------------------
# ZBL

ZBL_CASES = [(13, 13, 1.0, 5.0, 0.3), (1, 74, 1.0, 4.0, 0.7), (74, 74, 0.5, 6.0, 1.5),
             (28, 41, 2.0, 3.0, 0.01), (6, 8, -1.0, 5.0, 0.5)]


@pytest.mark.parametrize("z_i,z_j,prehc,rcut,dcut", ZBL_CASES)
def test_zbl_matches_reference_and_derivative(z_i, z_j, prehc, rcut, dcut):
    r = np.concatenate([np.linspace(0.05, 1.2 * rcut, 1201), [rcut, rcut - dcut]])
    v, dv = _radial.zbl_values(r, z_i, z_j, prehc, rcut, dcut)
    v_ref, dv_ref = ref.zbl_reference(r, z_i, z_j, prehc, rcut, dcut)
    assert scaled_error(v, v_ref) <= 1e-12
    assert scaled_error(dv, dv_ref) <= 1e-12
    assert np.all(np.isfinite(v)) and np.all(np.isfinite(dv))

    h = 1e-5 * min(rcut, dcut)
    ok = away_from(r, [rcut, rcut - dcut], 2.5 * h) & (r > 0.1)
    fd = central_difference(lambda x: _radial.zbl_values(x, z_i, z_j, prehc, rcut, dcut)[0], r[ok], h)
    np.testing.assert_allclose(dv[ok], fd, rtol=1e-7, atol=1e-9 * np.abs(dv).max())


@pytest.mark.parametrize("z_i,z_j,prehc,rcut,dcut", ZBL_CASES)
def test_zbl_switching(z_i, z_j, prehc, rcut, dcut):
    coulomb = prehc * ref.ZBL_COULOMB_K / 2 * z_i * z_j
    a = 0.46850 / (z_i**0.23 + z_j**0.23)
    # zero at and beyond rcut, and continuous with zero slope there
    v, dv = _radial.zbl_values([rcut, rcut + 1e-12, 2 * rcut], z_i, z_j, prehc, rcut, dcut)
    np.testing.assert_array_equal(v, 0.0)
    np.testing.assert_array_equal(dv, 0.0)
    scale = abs(coulomb) / rcut
    v, dv = _radial.zbl_values([rcut * (1 - 1e-9)], z_i, z_j, prehc, rcut, dcut)
    assert abs(v[0]) < 1e-12 * scale and abs(dv[0]) < 1e-6 * scale
    # continuity of value and slope where the switching starts
    z_in, eps = rcut - dcut, 1e-9 * dcut
    v, dv = _radial.zbl_values([z_in - eps, z_in + eps], z_i, z_j, prehc, rcut, dcut)
    assert abs(v[1] - v[0]) < 1e-9 * scale
    assert abs(dv[1] - dv[0]) < 1e-6 * scale
    # below the switching zone: the bare screened Coulomb term plus a constant shift
    r = np.linspace(0.1, z_in - 1e-6, 50)
    v, dv = _radial.zbl_values(r, z_i, z_j, prehc, rcut, dcut)
    bare, dbare, _ = ref.zbl_screened_coulomb(r, a)
    shift = v / coulomb - bare
    np.testing.assert_allclose(shift, shift[0], rtol=0, atol=1e-12 * np.abs(bare).max())
    np.testing.assert_allclose(dv, coulomb * dbare, rtol=1e-13)


def test_zbl_zero_dcut_has_no_nan():
    v, dv = _radial.zbl_values(np.linspace(0.1, 6.0, 60), 13, 13, 1.0, 5.0, 0.0)
    assert np.all(np.isfinite(v)) and np.all(np.isfinite(dv))


# ---------------------------------------------------------------------------------------------
# embeddings

EXPONENTS = [0.5, 0.1, 0.75, 1.0, 1.5, 2.0, 0.999999]
NPOTS = ["FinnisSinclair", "FinnisSinclairShiftedScaled"]


def rho_grid():
    positive = np.logspace(-15, 3, 721)
    return np.concatenate([-positive[::-1], [-0.0, 0.0], positive, [1e-10, -1e-10, 3.1e-6]])


@pytest.mark.parametrize("npot,m", list(itertools.product(NPOTS, EXPONENTS)))
def test_embedding_matches_reference(npot, m):
    rho = rho_grid()
    w = 0.7
    F, dF, d2F = _radial.embedding_values(npot, w, m, rho)
    F_ref, dF_ref, d2F_ref = ref.embedding_reference(npot, w, m, rho)
    assert np.all(np.isfinite(F)) and np.all(np.isfinite(dF)) and np.all(np.isfinite(d2F))
    # ShiftedScaled computes F as a difference of O(1) terms near rho = 0: absolute rounding 1e-16
    np.testing.assert_allclose(F, F_ref, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(dF, dF_ref, rtol=1e-12, atol=0)
    d2_scale = np.abs(d2F_ref) + np.abs(dF_ref) / np.maximum(np.abs(rho), 1e-10)
    assert np.all(np.abs(d2F - d2F_ref) <= 1e-12 * d2_scale)


@pytest.mark.parametrize("npot,m", list(itertools.product(NPOTS, EXPONENTS)))
def test_embedding_derivatives_finite_difference(npot, m):
    # FinnisSinclair is resolved down to its linear core (|rho| <= 1e-10, steps of 1e-4 |rho|).
    # ShiftedScaled's F carries ~1e-16 absolute rounding (a difference of O(1) terms), which
    # would swamp tiny steps, so it is differenced from 1e-3 on; near 0 see the test below.
    smallest = 1e-9 if npot == "FinnisSinclair" else 1e-3
    positive = np.logspace(np.log10(smallest), 3, 241)
    rho = np.concatenate([-positive, positive])
    h = (1e-4 if npot == "FinnisSinclair" else 1e-3) * np.abs(rho)
    F, dF, d2F = _radial.embedding_values(npot, 1.0, m, rho)
    fd1 = central_difference(lambda x: _radial.embedding_values(npot, 1.0, m, x)[0], rho, h)
    fd2 = central_difference(lambda x: _radial.embedding_values(npot, 1.0, m, x)[1], rho, h)
    np.testing.assert_allclose(dF, fd1, rtol=1e-8, atol=0)
    d2_scale = np.abs(d2F) + np.abs(dF) / np.abs(rho)
    assert np.all(np.abs(d2F - fd2) <= 1e-7 * d2_scale)


def _embedding_mpmath(npot, m, rho):
    """F_m(rho) and its first two derivatives in 40-digit arithmetic, straight from the formula."""
    with mpmath.workdps(40):
        m = mpmath.mpf(m)

        def F(x):
            a, sign = abs(x), mpmath.sign(x)
            if npot == "FinnisSinclair":
                w = mpmath.mpf(10) ** 6
                g = mpmath.exp(-(w * a) ** 3)
                return sign * ((1 - g) * a**m + w ** (1 - m) * g * a)
            n = 1 / m
            return sign * ((n ** (n / (1 - n)) * mpmath.exp(-a) + a) ** m
                           - n ** (1 / (1 - n)) * mpmath.exp(-a))

        x = mpmath.mpf(rho)
        return [float(mpmath.diff(F, x, k)) for k in range(3)]


@pytest.mark.parametrize("npot,m", list(itertools.product(NPOTS, [0.5, 0.1, 1.5, 2.0])))
@pytest.mark.parametrize("rho", [2e-10, 1e-8, 1e-7, 1e-6, 3.2e-6, 1e-5, 1e-3, 0.37, 42.0])
def test_embedding_against_high_precision(npot, m, rho):
    # covers the small-|rho| range that finite differences cannot resolve for ShiftedScaled
    for x in (rho, -rho):
        exact = _embedding_mpmath(npot, m, x)
        ours = [v[0] for v in _radial.embedding_values(npot, 1.0, m, [x])]
        assert ours[0] == pytest.approx(exact[0], rel=1e-12, abs=1e-15)
        assert ours[1] == pytest.approx(exact[1], rel=1e-12)
        assert ours[2] == pytest.approx(exact[2], rel=1e-10, abs=1e-12 * abs(exact[1] / x))


@pytest.mark.parametrize("npot,m", list(itertools.product(NPOTS, EXPONENTS)))
def test_embedding_near_zero_and_symmetry(npot, m):
    positive = np.logspace(-16, 1, 200)
    F_pos, dF_pos, d2F_pos = _radial.embedding_values(npot, 1.0, m, positive)
    F_neg, dF_neg, d2F_neg = _radial.embedding_values(npot, 1.0, m, -positive)
    np.testing.assert_array_equal(F_neg, -F_pos)        # odd
    np.testing.assert_array_equal(dF_neg, dF_pos)       # even
    np.testing.assert_array_equal(d2F_neg, -d2F_pos)    # odd
    F0, dF0, d2F0 = _radial.embedding_values(npot, 1.0, m, [0.0, -0.0])
    assert np.all(np.isfinite(dF0)) and np.all(np.isfinite(d2F0)) and np.all(dF0 > 0)
    assert np.all(np.abs(F0) < 1e-15)
    # the slope at 0 is finite and the same on both sides; F is continuous through 0
    F_tiny, dF_tiny, _ = _radial.embedding_values(npot, 1.0, m, [-1e-13, 1e-13])
    assert dF_tiny[0] == pytest.approx(dF0[0], rel=1e-6)
    assert dF_tiny[1] == pytest.approx(dF0[0], rel=1e-6)
    assert np.all(np.abs(F_tiny) <= 2e-13 * dF0[0])


@pytest.mark.parametrize("npot", NPOTS)
def test_embedding_m_equal_one_is_identity(npot):
    rho = rho_grid()
    F, dF, d2F = _radial.embedding_values(npot, 2.5, 1.0, rho)
    np.testing.assert_allclose(F, 2.5 * rho, rtol=1e-15, atol=0)
    np.testing.assert_allclose(dF, 2.5, rtol=1e-15)
    np.testing.assert_array_equal(d2F, 0.0)


def test_embedding_weight_is_linear_and_unknown_npot_rejected():
    rho = np.linspace(-3, 3, 13)
    a = _radial.embedding_values(1, 1.0, 0.5, rho)
    b = _radial.embedding_values("FinnisSinclairShiftedScaled", -3.0, 0.5, rho)
    for x, y in zip(a, b):
        np.testing.assert_allclose(y, -3.0 * x, rtol=1e-15)
    with pytest.raises(ValueError):
        _radial.embedding_values("Exp", 1.0, 0.5, rho)


def test_finnis_sinclair_tail_is_a_power_law():
    rho = np.array([1e-3, 0.5, 7.0, 1e6])
    F, dF, d2F = _radial.embedding_values("FinnisSinclair", 1.0, 0.5, rho)
    np.testing.assert_allclose(F, np.sqrt(rho), rtol=1e-15)
    np.testing.assert_allclose(dF, 0.5 / np.sqrt(rho), rtol=1e-15)
    np.testing.assert_allclose(d2F, -0.25 * rho**-1.5, rtol=1e-15)


# ---------------------------------------------------------------------------------------------
# python-ace (the oracle)

try:
    import pyace
except ImportError:  # the oracle is optional: only these cross-checks need it
    pyace = None

requires_pyace = pytest.mark.skipif(pyace is None, reason="python-ace (pyace) is not installed")


def pyace_radial_functions(radbase, lam, rcut, dcut, nradbase, inner_cutoff_type="density",
                           core_repulsion=(0.0, 1.0), elements=("Al",)):
    """ACERadialFunctions of a small potential built by pyace.create_multispecies_basis_config."""
    config = {
        "deltaSplineBins": 0.001,
        "elements": list(elements),
        "embeddings": {"ALL": {"npot": "FinnisSinclairShiftedScaled", "fs_parameters": [1, 1],
                               "ndensity": 1}},
        "bonds": {"ALL": {"radbase": radbase, "radparameters": [lam], "rcut": rcut, "dcut": dcut,
                          "r_in": 1.0, "delta_in": 0.5, "core-repulsion": list(core_repulsion),
                          "inner_cutoff_type": inner_cutoff_type}},
        "functions": {"ALL": {"nradmax_by_orders": [nradbase, 2], "lmax_by_orders": [0, 1]}},
    }
    bconf = pyace.create_multispecies_basis_config(config)
    return pyace.ACEBBasisSet(bconf).radial_functions


@requires_pyace
@pytest.mark.parametrize("family,lam,rcut,dcut", RADIAL_CASES)
def test_radial_base_matches_pyace(family, lam, rcut, dcut):
    # ACERadialFunctions.radbase(lam, rcut, dcut, name, r, r_in, delta_in) evaluates the analytic
    # basis (no splines) into .gr/.dgr. With inner_cutoff_type "density" PACE applies no inner
    # cutoff, and r_in = delta_in = 0 makes its "g = 0 for r <= r_in - delta_in" rule void.
    nradbase = 20
    radial = pyace_radial_functions(family, lam, rcut, dcut, nradbase)
    r = np.concatenate([np.linspace(0.01, 1.1 * rcut, 397), [rcut - dcut, rcut]])
    g_pace, dg_pace = [], []
    for x in r:
        radial.radbase(lam, rcut, dcut, family, x, 0.0, 0.0)
        g_pace.append(np.array(radial.gr))
        dg_pace.append(np.array(radial.dgr))
    g_pace, dg_pace = np.array(g_pace), np.array(dg_pace)
    g, dg = _radial.radial_base_values(family, lam, rcut, dcut, nradbase, r)
    assert np.all(scaled_error(g, g_pace) <= 1e-12)
    keep = r < rcut - 1e-3 if (family == "ChebPow" and lam < 1) else slice(None)
    assert np.all(scaled_error(dg[keep], dg_pace[keep]) <= 1e-12)


def _pyace_core_on_knots(radial, r_knots, mu_i=0, mu_j=0):
    """PACE's splined core term at spline knots, where the Hermite spline equals the analytic value."""
    values, derivs = [], []
    for x in r_knots:
        radial.evaluate(x, 1, 1, mu_i, mu_j)
        values.append(radial.cr)
        derivs.append(radial.dcr)
    return np.array(values), np.array(derivs)


@requires_pyace
def test_core_exponential_matches_pyace():
    prehc, lambdahc, rcut = 3.0, 2.0, 5.0
    radial = pyace_radial_functions("ChebExpCos", 5.25, rcut, 0.3, 2, "density", (prehc, lambdahc))
    r = np.arange(50, 5000, 7) * 1e-3
    phi_pace, dphi_pace = _pyace_core_on_knots(radial, r)
    phi, dphi = _radial.core_exponential_values(r, prehc, lambdahc, rcut)
    assert scaled_error(phi, phi_pace) <= 1e-12
    assert scaled_error(dphi, dphi_pace) <= 1e-12


@requires_pyace
@pytest.mark.parametrize("elements", [("Al",), ("H", "W")])
def test_zbl_matches_pyace(elements):
    # PACE builds its ZBL term from the bond's rcut and dcut; read off its splines at the knots
    atomic_numbers = {"H": 1, "Al": 13, "W": 74}
    prehc, rcut, dcut = 1.3, 4.0, 0.7
    radial = pyace_radial_functions("ChebExpCos", 5.25, rcut, dcut, 2, "zbl", (prehc, 1.0), elements)
    r = np.arange(50, 4000, 7) * 1e-3
    for mu_i, mu_j in itertools.product(range(len(elements)), repeat=2):
        v_pace, dv_pace = _pyace_core_on_knots(radial, r, mu_i, mu_j)
        z_i, z_j = atomic_numbers[elements[mu_i]], atomic_numbers[elements[mu_j]]
        v, dv = _radial.zbl_values(r, z_i, z_j, prehc, rcut, dcut)
        assert scaled_error(v, v_pace) <= 1e-12
        assert scaled_error(dv, dv_pace) <= 1e-12


@requires_pyace
@pytest.mark.parametrize("npot,m", list(itertools.product(NPOTS, EXPONENTS)))
def test_embedding_matches_pyace(npot, m):
    pace_function = {"FinnisSinclair": pyace.basis.Fexp,
                     "FinnisSinclairShiftedScaled": pyace.basis.FexpShiftedScaled}[npot]
    rho = rho_grid()
    pace = np.array([pace_function(x, m) for x in rho])
    F, dF, _ = _radial.embedding_values(npot, 1.0, m, rho)
    np.testing.assert_allclose(F, pace[:, 0], rtol=1e-12, atol=1e-15)
    # PACE's Fexp sets exp(-(1e6 rho)^3) to 0 once the exponent exceeds 30 (a 1e-13 shortcut);
    # we keep the exact term, which moves dF by up to ~1e-10 (relative) just above that point.
    exact_tail = (1e6 * np.abs(rho)) ** 3
    shortcut = (npot == "FinnisSinclair") & (exact_tail > 30) & (exact_tail < 40)
    np.testing.assert_allclose(dF[~shortcut], pace[~shortcut, 1], rtol=1e-12)
    np.testing.assert_allclose(dF[shortcut], pace[shortcut, 1], rtol=2e-10)
