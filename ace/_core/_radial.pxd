# cython: language_level=3
"""Inline kernels for PACE's analytic pair functions (docs/model.md, sections 2 and 6).

Radial bases g_k(r), the inner cutoff polynomial, the exponential and ZBL core repulsion and the
Finnis-Sinclair embeddings, each with analytic derivatives. Everything here is `noexcept nogil`,
touches no Python object and allocates nothing: callers pass output pointers, so these can run
inside OpenMP loops. Nothing is splined.
"""
cimport cython
from libc.math cimport M_PI, NAN, cos, exp, expm1, fabs, pow, signbit, sin, sqrt
from libc.stdlib cimport free, malloc

# radial families
cdef enum:
    RADBASE_SBESSEL = 0
    RADBASE_CHEBEXPCOS = 1
    RADBASE_CHEBPOW = 2

# embedding functions (npoti)
cdef enum:
    NPOT_FINNIS_SINCLAIR = 0
    NPOT_FINNIS_SINCLAIR_SHIFTED_SCALED = 1


# ---------------------------------------------------------------------------------------------
# helpers

cdef inline void _cosine_envelope(double r, double rcut, double* env, double* denv) noexcept nogil:
    """0.5 (1 + cos(pi r / rcut)), falling from 1 at r = 0 to 0 (with zero slope) at rcut."""
    cdef double arg = M_PI * r / rcut
    env[0] = 0.5 * (1.0 + cos(arg))
    denv[0] = -0.5 * M_PI / rcut * sin(arg)


cdef inline void _sinc_and_derivative(double x, double sin_x, double cos_x,
                                      double* sinc, double* dsinc) noexcept nogil:
    """sin(x)/x and d/dx of it, given sin x and cos x.

    Below |x| = 0.1 the Taylor series is used: it gives the exact x -> 0 limits and avoids the
    cancellation in (x cos x - sin x)/x^2. Truncation error there is below 1e-18 (relative).
    """
    cdef double x2, inv_x
    if fabs(x) < 0.1:
        x2 = x * x
        sinc[0] = 1.0 - x2 / 6.0 * (1.0 - x2 / 20.0 * (1.0 - x2 / 42.0 * (1.0 - x2 / 72.0)))
        dsinc[0] = x * (-1.0 / 3.0 + x2 * (1.0 / 30.0 + x2 * (-1.0 / 840.0
                        + x2 * (1.0 / 45360.0 - x2 / 3991680.0))))
    else:
        inv_x = 1.0 / x
        sinc[0] = sin_x * inv_x
        dsinc[0] = (cos_x - sinc[0]) * inv_x


cdef inline void _half_one_minus_chebyshev(double x, double dx, int count, double* f,
                                           double* df) noexcept nogil:
    """f[i] = (1 - T_{i+1}(x)) / 2 and df[i] its derivative (dx = dx/dr) for i < count.

    T by the three-term recursion; dT_k/dx = k U_{k-1}(x), U of the second kind.
    """
    cdef double t_prev = 1.0   # T_{k-1}
    cdef double t_cur = x      # T_k
    cdef double u_prev = 0.0   # U_{k-2} (U_{-1} = 0)
    cdef double u_cur = 1.0    # U_{k-1}
    cdef double t_next, u_next
    cdef int i
    for i in range(count):
        f[i] = 0.5 - 0.5 * t_cur
        df[i] = -0.5 * (i + 1) * u_cur * dx
        t_next = 2.0 * x * t_cur - t_prev
        t_prev = t_cur
        t_cur = t_next
        u_next = 2.0 * x * u_cur - u_prev
        u_prev = u_cur
        u_cur = u_next


@cython.cdivision(True)
cdef inline void _cheb_exp_cos(double lam, double rcut, double dcut, int nradbase, double r,
                               double* g, double* dg) noexcept nogil:
    cdef double y1 = exp(-lam * r / rcut)
    cdef double y2 = exp(-lam)
    cdef double x = 1.0 - 2.0 * (y1 - y2) / (1.0 - y2)
    cdef double dx = 2.0 * (lam / rcut) * y1 / (1.0 - y2)
    cdef double env = 0.0, denv = 0.0   # set by _cosine_envelope
    cdef double taper, dtaper, taper_arg, envelope, denvelope
    cdef double base, dbase
    cdef int k

    _cosine_envelope(r, rcut, &env, &denv)
    envelope = env
    denvelope = denv
    if r > rcut - dcut:  # extra taper on the last dcut before rcut
        taper_arg = M_PI * (r - rcut + dcut) / dcut
        taper = 0.5 * (1.0 + cos(taper_arg))
        dtaper = -0.5 * M_PI / dcut * sin(taper_arg)
        envelope = env * taper
        denvelope = denv * taper + env * dtaper

    g[0] = envelope
    dg[0] = denvelope
    _half_one_minus_chebyshev(x, dx, nradbase - 1, g + 1, dg + 1)
    for k in range(1, nradbase):
        base = g[k]
        dbase = dg[k]
        g[k] = base * envelope
        dg[k] = dbase * envelope + base * denvelope


@cython.cdivision(True)
cdef inline void _cheb_pow(double lam, double rcut, int nradbase, double r,
                           double* g, double* dg) noexcept nogil:
    cdef double y = 1.0 - r / rcut
    cdef double y_pow_lam_m1 = pow(y, lam - 1.0)
    cdef double x = 2.0 * (1.0 - y_pow_lam_m1 * y) - 1.0
    cdef double dx = 2.0 * lam / rcut * y_pow_lam_m1
    _half_one_minus_chebyshev(x, dx, nradbase, g, dg)


@cython.cdivision(True)
cdef inline void sbessel_constants(double rcut, int nradbase, double* c) noexcept nogil:
    """The r-independent factors of the simplified Bessel basis, 4 per n: the prefactor of f_n,
    that of df_n/dr, and the orthogonalising recursion's mix and 1/sqrt(d_n).

    Tabulated once per bond by the evaluator: their square roots and divisions, in a serial
    recursion over n, cost as much as the rest of g_k(r). The expressions are those the
    evaluation used inline, so the values are bit for bit the same.
    """
    cdef double norm = sqrt(2.0) * M_PI / (rcut * sqrt(rcut))
    cdef double sign = 1.0
    cdef double ka, kb, prefactor, e_n, d_n, d_prev = 1.0
    cdef int n
    for n in range(nradbase):
        ka = n + 1.0
        kb = n + 2.0
        prefactor = sign * norm * ka * kb / sqrt(ka * ka + kb * kb)
        c[4 * n] = prefactor
        c[4 * n + 1] = prefactor * M_PI / rcut
        c[4 * n + 2] = 0.0
        c[4 * n + 3] = 1.0
        if n > 0:
            e_n = (n * n) * (kb * kb) / (4.0 * (ka * ka) * (ka * ka) + 1.0)
            d_n = 1.0 - e_n / d_prev
            c[4 * n + 2] = sqrt(e_n / d_prev)
            c[4 * n + 3] = 1.0 / sqrt(d_n)
            d_prev = d_n
        sign = -sign


@cython.cdivision(True)
cdef inline void _simplified_bessel_tabulated(double rcut, int nradbase, double r, double* g,
                                              double* dg, const double* c) noexcept nogil:
    """g_n(r), dg_n/dr with the constants c of sbessel_constants(rcut, nradbase)."""
    cdef double theta = M_PI * r / rcut
    cdef double sin_theta = sin(theta)
    cdef double cos_theta = cos(theta)
    # f_n needs sinc(k theta) for k = n+1 and n+2; the k = n+2 value is reused as k = n+1 of the
    # next n. sin/cos(k theta) are advanced by rotating through theta (angle addition), which
    # keeps the relative error ~k*eps even for small theta, whereas the three-term recurrence
    # sin((k+1)t) = 2 cos t sin(kt) - sin((k-1)t) loses ~eps/theta^2 there.
    cdef double sin_k = 2.0 * sin_theta * cos_theta               # k = 2
    cdef double cos_k = cos_theta * cos_theta - sin_theta * sin_theta
    cdef double rotated_sin
    cdef double ka, kb, f, df
    # outputs of _sinc_and_derivative; initialised only to quiet gcc's -Wmaybe-uninitialized
    cdef double sinc_a = 0.0, dsinc_a = 0.0, sinc_b = 0.0, dsinc_b = 0.0
    cdef int n
    _sinc_and_derivative(theta, sin_theta, cos_theta, &sinc_a, &dsinc_a)   # k = 1
    for n in range(nradbase):
        ka = n + 1.0
        kb = n + 2.0
        _sinc_and_derivative(kb * theta, sin_k, cos_k, &sinc_b, &dsinc_b)
        f = c[4 * n] * (sinc_a + sinc_b)
        df = c[4 * n + 1] * (ka * dsinc_a + kb * dsinc_b)
        if n == 0:
            g[0] = f
            dg[0] = df
        else:
            # orthogonalising recursion
            g[n] = c[4 * n + 3] * (f + c[4 * n + 2] * g[n - 1])
            dg[n] = c[4 * n + 3] * (df + c[4 * n + 2] * dg[n - 1])
        sinc_a = sinc_b
        dsinc_a = dsinc_b
        rotated_sin = sin_k * cos_theta + cos_k * sin_theta
        cos_k = cos_k * cos_theta - sin_k * sin_theta
        sin_k = rotated_sin


cdef inline void _simplified_bessel(double rcut, int nradbase, double r,
                                    double* g, double* dg) noexcept nogil:
    cdef double c[4 * 64]
    cdef double* heap
    cdef int n
    if nradbase <= 64:
        sbessel_constants(rcut, nradbase, c)
        _simplified_bessel_tabulated(rcut, nradbase, r, g, dg, c)
        return
    heap = <double*>malloc(4 * nradbase * sizeof(double))
    if heap == NULL:
        for n in range(nradbase):
            g[n] = NAN
            dg[n] = NAN
        return
    sbessel_constants(rcut, nradbase, heap)
    _simplified_bessel_tabulated(rcut, nradbase, r, g, dg, heap)
    free(heap)


# ---------------------------------------------------------------------------------------------
# public kernels

cdef inline void radial_base(int family, double lam, double rcut, double dcut, int nradbase,
                             double r, double* g, double* dg) noexcept nogil:
    """g_k(r) and dg_k/dr, k = 0..nradbase-1 (docs/model.md, section 2); zero for r >= rcut.

    The inner cutoff is not applied here. lam and dcut are ignored by SBessel, dcut by ChebPow;
    ChebExpCos needs lam != 0 (0/0 otherwise, as in PACE). An unknown family gives NaN, so it
    cannot pass unnoticed.
    """
    cdef int k
    if nradbase <= 0:
        return
    if r >= rcut:
        for k in range(nradbase):
            g[k] = 0.0
            dg[k] = 0.0
        return
    if family == RADBASE_CHEBEXPCOS:
        _cheb_exp_cos(lam, rcut, dcut, nradbase, r, g, dg)
    elif family == RADBASE_CHEBPOW:
        _cheb_pow(lam, rcut, nradbase, r, g, dg)
    elif family == RADBASE_SBESSEL:
        _simplified_bessel(rcut, nradbase, r, g, dg)
    else:
        for k in range(nradbase):
            g[k] = NAN
            dg[k] = NAN


cdef inline void radial_base_tabulated(int family, double lam, double rcut, double dcut,
                                       int nradbase, double r, double* g, double* dg,
                                       const double* constants) noexcept nogil:
    """radial_base with the bond's precomputed constants (sbessel_constants for SBessel;
    the other families need none and ignore them)."""
    if family != RADBASE_SBESSEL or nradbase <= 0 or r >= rcut:
        radial_base(family, lam, rcut, dcut, nradbase, r, g, dg)  # (zeros beyond rcut)
        return
    _simplified_bessel_tabulated(rcut, nradbase, r, g, dg, constants)


@cython.cdivision(True)
cdef inline void cutoff_func_poly(double r, double r_in, double delta, double* f,
                                  double* df) noexcept nogil:
    """PACE's C2 quintic step: 1 for r <= r_in - delta, 0 for r >= r_in."""
    cdef double x, x2
    if r <= r_in - delta:
        f[0] = 1.0
        df[0] = 0.0
    elif r >= r_in:
        f[0] = 0.0
        df[0] = 0.0
    else:
        x = 1.0 - 2.0 * (1.0 + (r - r_in) / delta)   # runs from 1 down to -1
        x2 = x * x
        f[0] = 0.5 + 3.75 * x * (0.25 - x2 / 6.0 + x2 * x2 / 20.0)
        df[0] = -7.5 / delta * (0.25 - x2 / 2.0 + x2 * x2 / 4.0)


@cython.cdivision(True)
cdef inline void core_exponential(double r, double prehc, double lambdahc, double rcut,
                                  double* phi, double* dphi) noexcept nogil:
    """|pre| exp(-|lam| r^2)/r * 0.5(1 + cos(pi r/rcut)); 0 where |lam| r^2 >= 50 or r >= rcut.

    The signs of pre and lam are dropped, as PACE does, so the core is always repulsive.
    """
    cdef double pre = fabs(prehc)
    cdef double lam_r2 = fabs(lambdahc) * r * r
    cdef double core, dcore
    cdef double env = 0.0, denv = 0.0   # set by _cosine_envelope
    if r >= rcut or lam_r2 >= 50.0:
        phi[0] = 0.0
        dphi[0] = 0.0
        return
    core = pre * exp(-lam_r2) / r
    dcore = -core * (2.0 * lam_r2 + 1.0) / r
    _cosine_envelope(r, rcut, &env, &denv)
    phi[0] = core * env
    dphi[0] = dcore * env + core * denv


cdef inline void _add_screening_term(double coeff, double exponent, double x, double* phi,
                                     double* dphi, double* d2phi) noexcept nogil:
    """Adds coeff exp(exponent x) and its first two x-derivatives."""
    cdef double term = coeff * exp(exponent * x)
    phi[0] += term
    dphi[0] += term * exponent
    d2phi[0] += term * exponent * exponent


@cython.cdivision(True)
cdef inline void _zbl_screened_coulomb(double r, double a, double* e, double* de,
                                       double* d2e) noexcept nogil:
    """E(r) = phi(r/a)/r with the universal ZBL screening phi, and dE/dr, d2E/dr2."""
    cdef double x = r / a
    cdef double phi = 0.0, dphi = 0.0, d2phi = 0.0
    _add_screening_term(0.18175, -3.19980, x, &phi, &dphi, &d2phi)
    _add_screening_term(0.50986, -0.94229, x, &phi, &dphi, &d2phi)
    _add_screening_term(0.28022, -0.40290, x, &phi, &dphi, &d2phi)
    _add_screening_term(0.02817, -0.20162, x, &phi, &dphi, &d2phi)
    dphi /= a          # d/dr = (1/a) d/dx
    d2phi /= a * a
    e[0] = phi / r
    de[0] = dphi / r - phi / (r * r)
    d2e[0] = d2phi / r - 2.0 * dphi / (r * r) + 2.0 * phi / (r * r * r)


@cython.cdivision(True)
cdef inline void zbl_pair(double r, double z_i, double z_j, double prehc, double rcut,
                          double dcut, double* v, double* dv) noexcept nogil:
    """PACE's ZBL pair term V(r) = pre (K/2) Zi Zj [phi(r/a)/r + S(r)] f_in(r; rcut, dcut).

    S is the LAMMPS pair_zbl switching polynomial between rcut - dcut and rcut, which brings
    E + S to zero with zero first and second derivative at rcut. rcut/dcut are the bond's outer
    cutoff and dcut (PACE passes those, not r_in/delta_in). prehc keeps its sign.
    """
    cdef double coulomb_k = 14.399645351950543   # e^2/(4 pi eps0) in eV*Angstrom
    cdef double a, e, de, d2e_unused, e_c, de_c, d2e_c
    cdef double z_in, shift, s, ds, t, sw_a, sw_b, prefactor, bare, dbare, fc, dfc
    if r >= rcut:
        v[0] = 0.0
        dv[0] = 0.0
        return
    a = 0.46850 / (pow(z_i, 0.23) + pow(z_j, 0.23))
    _zbl_screened_coulomb(r, a, &e, &de, &d2e_unused)
    _zbl_screened_coulomb(rcut, a, &e_c, &de_c, &d2e_c)
    z_in = rcut - dcut
    shift = -e_c + 0.5 * dcut * de_c - dcut * dcut / 12.0 * d2e_c
    if r <= z_in:
        s = shift
        ds = 0.0
    else:
        # only reached when dcut > 0
        sw_a = (-3.0 * de_c + dcut * d2e_c) / (dcut * dcut)
        sw_b = (2.0 * de_c - dcut * d2e_c) / (dcut * dcut * dcut)
        t = r - z_in
        s = t * t * t * (sw_a / 3.0 + sw_b / 4.0 * t) + shift
        ds = t * t * (sw_a + sw_b * t)
    prefactor = prehc * 0.5 * coulomb_k * z_i * z_j
    bare = prefactor * (e + s)
    dbare = prefactor * (de + ds)
    cutoff_func_poly(r, rcut, dcut, &fc, &dfc)
    v[0] = bare * fc
    dv[0] = dbare * fc + bare * dfc


@cython.cdivision(True)
cdef inline void _finnis_sinclair(double m, double rho, double* F, double* dF,
                                  double* d2F) noexcept nogil:
    """PACE's Fexp: sign(rho)[(1-g)|rho|^m + w^(1-m) g |rho|], g = exp(-(w|rho|)^3), w = 1e6.

    Exactly linear for |rho| <= 1e-10, as in PACE (this also keeps |rho|^(m-2) finite).
    """
    cdef double w_fs = 1.0e6   # PACE's fixed switch scale (not the embedding weight)
    cdef double w3 = w_fs * w_fs * w_fs
    cdef double lam = pow(w_fs, 1.0 - m)   # slope of the linear core
    cdef double a = fabs(rho)
    cdef double sign, am, am_a, am_a2, y, g, one_minus_g, dg, d2g
    if a <= 1.0e-10:
        F[0] = lam * rho
        dF[0] = lam
        d2F[0] = 0.0
        return
    sign = -1.0 if signbit(rho) else 1.0
    am = pow(a, m)
    am_a = am / a          # |rho|^(m-1)
    am_a2 = am_a / a       # |rho|^(m-2); two divisions stay finite where a*a would overflow
    y = w3 * a * a * a
    if y >= 700.0:
        # g = exp(-y) underflows: the pure power law (also avoids inf * 0 for huge |rho|)
        F[0] = sign * am
        dF[0] = m * am_a
        d2F[0] = sign * m * (m - 1.0) * am_a2
        return
    g = exp(-y)
    one_minus_g = -expm1(-y)   # accurate where g ~ 1
    dg = -3.0 * w3 * a * a * g
    d2g = 3.0 * w3 * a * (3.0 * y - 2.0) * g
    F[0] = sign * (one_minus_g * am + lam * g * a)
    dF[0] = m * am_a * one_minus_g - am * dg + lam * (dg * a + g)
    d2F[0] = sign * (m * (m - 1.0) * am_a2 * one_minus_g - 2.0 * m * am_a * dg
                     + (lam * a - am) * d2g + 2.0 * lam * dg)


@cython.cdivision(True)
cdef inline void _finnis_sinclair_shifted_scaled(double m, double rho, double* F, double* dF,
                                                 double* d2F) noexcept nogil:
    """PACE's FexpShiftedScaled: sign(rho)[(x_off + |rho|)^m - y_off], shifts decaying as e^-|rho|.

    The shifts make F(0) = 0 with a finite slope; m = 1 is plain F = rho.
    """
    cdef double a, n, decay, x_off, y_off, base, base_m1, sign
    if fabs(m - 1.0) < 1.0e-10:
        F[0] = rho
        dF[0] = 1.0
        d2F[0] = 0.0
        return
    a = fabs(rho)
    sign = -1.0 if signbit(rho) else 1.0
    if a >= 700.0:
        # the shifts are below 1e-304: the pure power law (also avoids 0 * inf for huge |rho|)
        base_m1 = pow(a, m - 1.0)
        F[0] = sign * base_m1 * a
        dF[0] = m * base_m1
        d2F[0] = sign * m * (m - 1.0) * base_m1 / a
        return
    n = 1.0 / m
    decay = exp(-a)
    x_off = pow(n, n / (1.0 - n)) * decay
    y_off = pow(n, 1.0 / (1.0 - n)) * decay
    base = x_off + a   # > 0 for every rho
    base_m1 = pow(base, m - 1.0)
    F[0] = sign * (pow(base, m) - y_off)
    dF[0] = y_off + m * (1.0 - x_off) * base_m1
    d2F[0] = sign * (-y_off + m * x_off * base_m1
                     + m * (m - 1.0) * (1.0 - x_off) * (1.0 - x_off) * base_m1 / base)


cdef inline void embedding(int npot, double w, double m, double rho,
                           double* F, double* dF, double* d2F) noexcept nogil:
    """One embedding term w * F_m(rho) with dF/drho and d2F/drho2 (docs/model.md, section 6).

    npot: NPOT_FINNIS_SINCLAIR (0) or NPOT_FINNIS_SINCLAIR_SHIFTED_SCALED (1); anything else
    gives NaN.
    """
    if npot == NPOT_FINNIS_SINCLAIR:
        _finnis_sinclair(m, rho, F, dF, d2F)
    elif npot == NPOT_FINNIS_SINCLAIR_SHIFTED_SCALED:
        _finnis_sinclair_shifted_scaled(m, rho, F, dF, d2F)
    else:
        F[0] = NAN
        dF[0] = NAN
        d2F[0] = NAN
        return
    F[0] *= w
    dF[0] *= w
    d2F[0] *= w
