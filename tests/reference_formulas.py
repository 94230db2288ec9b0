"""Plain-numpy reference implementations of PACE's analytic building blocks.

Written directly from the formulas in docs/model.md, sections 2 and 6 (radial bases, inner
cutoff, core repulsion, embeddings). They favour obviousness over speed: every function takes numpy
arrays and returns values together with their analytic derivatives. The Cython kernels in
ace._core._radial are tested against these, and the pure-numpy reference evaluator reuses them.
"""
import numpy as np

# Coulomb constant e^2/(4 pi eps0) in eV*Angstrom, as used by PACE's ZBL term.
ZBL_COULOMB_K = 14.399645351950543
ZBL_SCREENING_COEFFS = np.array([0.18175, 0.50986, 0.28022, 0.02817])
ZBL_SCREENING_EXPONENTS = np.array([-3.19980, -0.94229, -0.40290, -0.20162])

# Below this |argument| sin(x)/x and its derivative are taken from their Taylor series,
# because (x cos x - sin x)/x^2 cancels catastrophically for small x.
SINC_SERIES_BELOW = 0.1


def chebyshev_t_and_derivative(nmax, x):
    """T_0..T_nmax(x) and dT_n/dx = n U_{n-1}(x), each as a list of arrays."""
    x = np.asarray(x, dtype=float)
    t = [np.ones_like(x), x.copy()]
    u = [np.ones_like(x), 2.0 * x]  # Chebyshev polynomials of the second kind
    for n in range(2, nmax + 1):
        t.append(2.0 * x * t[n - 1] - t[n - 2])
        u.append(2.0 * x * u[n - 1] - u[n - 2])
    dt = [np.zeros_like(x)] + [n * u[n - 1] for n in range(1, nmax + 1)]
    return t[: nmax + 1], dt


def sinc_and_derivative(x):
    """sin(x)/x and its derivative d/dx, with the exact limits at x = 0."""
    x = np.asarray(x, dtype=float)
    small = np.abs(x) < SINC_SERIES_BELOW
    safe_x = np.where(small, 1.0, x)
    x2 = x * x
    sinc_series = 1 - x2 / 6 * (1 - x2 / 20 * (1 - x2 / 42 * (1 - x2 / 72)))
    dsinc_series = -x / 3 + x**3 / 30 - x**5 / 840 + x**7 / 45360 - x**9 / 3991680
    sinc = np.where(small, sinc_series, np.sin(safe_x) / safe_x)
    dsinc = np.where(small, dsinc_series,
                     (safe_x * np.cos(safe_x) - np.sin(safe_x)) / safe_x**2)
    return sinc, dsinc


def cosine_envelope(r, rcut):
    """0.5 (1 + cos(pi r / rcut)) and its derivative."""
    arg = np.pi * np.asarray(r, dtype=float) / rcut
    return 0.5 * (1 + np.cos(arg)), -0.5 * np.pi / rcut * np.sin(arg)


def _cheb_exp_cos(lam, rcut, dcut, nradbase, r):
    y1 = np.exp(-lam * r / rcut)
    y2 = np.exp(-lam)
    x = 1 - 2 * (y1 - y2) / (1 - y2)
    dx = 2 * (lam / rcut) * y1 / (1 - y2)
    t, dt = chebyshev_t_and_derivative(nradbase, x)
    g = [np.ones_like(r)] + [0.5 * (1 - t[k]) for k in range(1, nradbase)]
    dg = [np.zeros_like(r)] + [-0.5 * dt[k] * dx for k in range(1, nradbase)]
    g, dg = np.stack(g, axis=-1), np.stack(dg, axis=-1)

    env, denv = cosine_envelope(r, rcut)
    # the extra taper acts only on (rcut - dcut, rcut)
    taper_zone = r > rcut - dcut
    safe_dcut = dcut if dcut > 0 else 1.0
    taper_arg = np.pi * (r - rcut + dcut) / safe_dcut
    taper = np.where(taper_zone, 0.5 * (1 + np.cos(taper_arg)), 1.0)
    dtaper = np.where(taper_zone, -0.5 * np.pi / safe_dcut * np.sin(taper_arg), 0.0)
    envelope = (env * taper)[:, None]
    denvelope = (denv * taper + env * dtaper)[:, None]
    return g * envelope, dg * envelope + g * denvelope


def _cheb_pow(lam, rcut, nradbase, r):
    y = 1 - r / rcut
    x = 2 * (1 - y**lam) - 1
    dx = 2 * lam / rcut * y ** (lam - 1)
    t, dt = chebyshev_t_and_derivative(nradbase, x)
    g = np.stack([0.5 * (1 - t[k + 1]) for k in range(nradbase)], axis=-1)
    dg = np.stack([-0.5 * dt[k + 1] * dx for k in range(nradbase)], axis=-1)
    return g, dg


def _simplified_bessel(rcut, nradbase, r):
    f, df = [], []
    for n in range(nradbase):
        prefactor = ((-1) ** n * np.sqrt(2) * np.pi / rcut**1.5 * (n + 1) * (n + 2)
                     / np.sqrt((n + 1) ** 2 + (n + 2) ** 2))
        sa, dsa = sinc_and_derivative((n + 1) * np.pi * r / rcut)
        sb, dsb = sinc_and_derivative((n + 2) * np.pi * r / rcut)
        f.append(prefactor * (sa + sb))
        df.append(prefactor * np.pi / rcut * ((n + 1) * dsa + (n + 2) * dsb))
    # orthogonalising recursion of the simplified Bessel basis
    g, dg = [f[0]], [df[0]]
    d_prev = 1.0
    for n in range(1, nradbase):
        e_n = n**2 * (n + 2) ** 2 / (4 * (n + 1) ** 4 + 1)
        d_n = 1 - e_n / d_prev
        mix = np.sqrt(e_n / d_prev)
        g.append((f[n] + mix * g[n - 1]) / np.sqrt(d_n))
        dg.append((df[n] + mix * dg[n - 1]) / np.sqrt(d_n))
        d_prev = d_n
    return np.stack(g, axis=-1), np.stack(dg, axis=-1)


def radial_base_reference(family_name, lam, rcut, dcut, nradbase, r):
    """g_k(r), dg_k/dr for k = 0..nradbase-1, shapes [len(r), nradbase]; zero for r >= rcut.

    family_name is "ChebExpCos", "ChebPow" or "SBessel". No inner cutoff is applied.
    """
    r = np.atleast_1d(np.asarray(r, dtype=float))
    inside = r < rcut
    r_in = np.where(inside, r, 0.5 * rcut)  # any point inside, to keep the formulas finite
    if family_name == "ChebExpCos":
        g, dg = _cheb_exp_cos(lam, rcut, dcut, nradbase, r_in)
    elif family_name == "ChebPow":
        g, dg = _cheb_pow(lam, rcut, nradbase, r_in)
    elif family_name == "SBessel":
        g, dg = _simplified_bessel(rcut, nradbase, r_in)
    else:
        raise ValueError(f"unknown radial basis {family_name!r}")
    return np.where(inside[:, None], g, 0.0), np.where(inside[:, None], dg, 0.0)


def cutoff_poly_reference(r, r_in, delta):
    """PACE cutoff_func_poly: 1 for r <= r_in - delta, 0 for r >= r_in, C2 quintic between."""
    r = np.asarray(r, dtype=float)
    safe_delta = delta if delta > 0 else 1.0
    x = 1 - 2 * (1 + (r - r_in) / safe_delta)
    f_mid = 0.5 + 15 / 4 * (x / 4 - x**3 / 6 + x**5 / 20)
    df_mid = -7.5 / safe_delta * (0.25 - x**2 / 2 + x**4 / 4)
    below, above = r <= r_in - delta, r >= r_in
    f = np.where(below, 1.0, np.where(above, 0.0, f_mid))
    df = np.where(below | above, 0.0, df_mid)
    return f, df


def core_exponential_reference(r, prehc, lambdahc, rcut):
    """|pre| exp(-|lam| r^2)/r * 0.5(1 + cos(pi r/rcut)); 0 where |lam| r^2 >= 50 or r >= rcut."""
    r = np.asarray(r, dtype=float)
    pre, lam = abs(prehc), abs(lambdahc)
    core = pre * np.exp(-lam * r**2) / r
    dcore = -core * (2 * lam * r**2 + 1) / r
    env, denv = cosine_envelope(r, rcut)
    active = (lam * r**2 < 50) & (r < rcut)
    return np.where(active, core * env, 0.0), np.where(active, dcore * env + core * denv, 0.0)


def zbl_screened_coulomb(r, a):
    """E(r) = phi(r/a)/r with its first and second derivatives."""
    r = np.asarray(r, dtype=float)
    terms = ZBL_SCREENING_COEFFS * np.exp(np.multiply.outer(r / a, ZBL_SCREENING_EXPONENTS))
    phi = terms.sum(axis=-1)
    dphi = (terms * ZBL_SCREENING_EXPONENTS).sum(axis=-1) / a
    d2phi = (terms * ZBL_SCREENING_EXPONENTS**2).sum(axis=-1) / a**2
    e = phi / r
    de = dphi / r - phi / r**2
    d2e = d2phi / r - 2 * dphi / r**2 + 2 * phi / r**3
    return e, de, d2e


def zbl_reference(r, z_i, z_j, prehc, rcut, dcut):
    """PACE's ZBL pair term V(r) and dV/dr (docs/model.md, "Core repulsion and the blend")."""
    r = np.asarray(r, dtype=float)
    a = 0.46850 / (z_i**0.23 + z_j**0.23)
    e, de, _ = zbl_screened_coulomb(r, a)
    ec, dec, d2ec = zbl_screened_coulomb(rcut, a)
    z_in = rcut - dcut
    c = -ec + dcut / 2 * dec - dcut**2 / 12 * d2ec
    if dcut > 0:
        sw_a = (-3 * dec + dcut * d2ec) / dcut**2
        sw_b = (2 * dec - dcut * d2ec) / dcut**3
    else:
        sw_a = sw_b = 0.0
    t = r - z_in
    between = (r > z_in) & (r < rcut)
    s = np.where(between, sw_a / 3 * t**3 + sw_b / 4 * t**4 + c, np.where(r <= z_in, c, 0.0))
    ds = np.where(between, sw_a * t**2 + sw_b * t**3, 0.0)
    prefactor = prehc * ZBL_COULOMB_K / 2 * z_i * z_j
    fc, dfc = cutoff_poly_reference(r, rcut, dcut)
    v = prefactor * (e + s)
    dv = prefactor * (de + ds)
    inside = r < rcut
    return np.where(inside, v * fc, 0.0), np.where(inside, dv * fc + v * dfc, 0.0)


def finnis_sinclair_reference(m, rho):
    """PACE 'FinnisSinclair' (Fexp) F_m(rho), dF/drho, d2F/drho2 (no weight)."""
    rho = np.asarray(rho, dtype=float)
    w = 1e6
    lam = w ** (1 - m)
    a = np.abs(rho)
    sign = np.where(np.signbit(rho), -1.0, 1.0)
    linear = a <= 1e-10  # PACE makes F exactly linear there
    a_safe = np.where(linear, 1.0, a)
    g = np.exp(-(w * a_safe) ** 3)
    dg = -3 * w**3 * a_safe**2 * g
    d2g = (9 * w**6 * a_safe**4 - 6 * w**3 * a_safe) * g
    am = a_safe**m
    f = sign * ((1 - g) * am + lam * g * a_safe)
    df = m * a_safe ** (m - 1) * (1 - g) - am * dg + lam * (dg * a_safe + g)
    d2f = sign * (m * (m - 1) * a_safe ** (m - 2) * (1 - g) - 2 * m * a_safe ** (m - 1) * dg
                  + (lam * a_safe - am) * d2g + 2 * lam * dg)
    return (np.where(linear, lam * rho, f), np.where(linear, lam, df),
            np.where(linear, 0.0, d2f))


def finnis_sinclair_shifted_scaled_reference(m, rho):
    """PACE 'FinnisSinclairShiftedScaled' F_m(rho), dF/drho, d2F/drho2 (no weight)."""
    rho = np.asarray(rho, dtype=float)
    if abs(m - 1) < 1e-10:
        return rho.copy(), np.ones_like(rho), np.zeros_like(rho)
    a = np.abs(rho)
    sign = np.where(np.signbit(rho), -1.0, 1.0)
    n = 1 / m
    x_off = n ** (n / (1 - n)) * np.exp(-a)
    y_off = n ** (1 / (1 - n)) * np.exp(-a)
    base = x_off + a
    f = sign * (base**m - y_off)
    df = y_off + m * (1 - x_off) * base ** (m - 1)
    d2f = sign * (-y_off + m * x_off * base ** (m - 1)
                  + m * (m - 1) * (1 - x_off) ** 2 * base ** (m - 2))
    return f, df, d2f


def embedding_reference(npot_name, w, m, rho):
    """One embedding term w * F_m(rho) with its first and second derivatives."""
    if npot_name == "FinnisSinclair":
        f, df, d2f = finnis_sinclair_reference(m, rho)
    elif npot_name == "FinnisSinclairShiftedScaled":
        f, df, d2f = finnis_sinclair_shifted_scaled_reference(m, rho)
    else:
        raise ValueError(f"unknown embedding {npot_name!r}")
    return w * f, w * df, w * d2f
