# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Vectorised Python wrappers around the inline kernels declared in _radial.pxd.

Meant for tests and pure-Python callers; compiled code should cimport the kernels instead.
Every function accepts array-likes and returns float64 arrays.
"""
import numpy as np

RADBASE_IDS = {"SBessel": RADBASE_SBESSEL, "ChebExpCos": RADBASE_CHEBEXPCOS,
               "ChebPow": RADBASE_CHEBPOW}
NPOT_IDS = {"FinnisSinclair": NPOT_FINNIS_SINCLAIR,
            "FinnisSinclairShiftedScaled": NPOT_FINNIS_SINCLAIR_SHIFTED_SCALED}


def _lookup_id(key, ids, what):
    """Accept a name from `ids` or one of its integer ids."""
    if isinstance(key, str):
        if key not in ids:
            raise ValueError(f"unknown {what} {key!r}; known: {sorted(ids)}")
        return ids[key]
    key = int(key)
    if key not in ids.values():
        raise ValueError(f"unknown {what} id {key}")
    return key


def _as_flat_float(values):
    """(contiguous 1-D float64 copy-or-view, original shape)."""
    arr = np.asarray(values, dtype=np.float64)
    return np.ascontiguousarray(arr.reshape(-1)), arr.shape


def radial_base_values(family, double lam, double rcut, double dcut, int nradbase, r):
    """g_k(r) and dg_k/dr for k = 0..nradbase-1: two arrays of shape [r.size, nradbase].

    family: "SBessel", "ChebExpCos", "ChebPow" or its RADBASE_IDS id. No inner cutoff.
    """
    cdef int family_id = _lookup_id(family, RADBASE_IDS, "radial basis")
    if nradbase < 1:
        raise ValueError("nradbase must be >= 1")
    if not rcut > 0:
        raise ValueError("rcut must be > 0")
    r_flat, _ = _as_flat_float(r)
    cdef double[::1] r_view = r_flat
    cdef Py_ssize_t n = r_view.shape[0], i
    g = np.zeros((n, nradbase))
    dg = np.zeros((n, nradbase))
    cdef double[:, ::1] g_view = g
    cdef double[:, ::1] dg_view = dg
    if n == 0:
        return g, dg
    with nogil:
        for i in range(n):
            radial_base(family_id, lam, rcut, dcut, nradbase, r_view[i],
                        &g_view[i, 0], &dg_view[i, 0])
    return g, dg


def cutoff_poly_values(r, double r_in, double delta):
    """PACE cutoff_func_poly f(r; r_in, delta) and df/dr, shaped like r."""
    r_flat, shape = _as_flat_float(r)
    cdef double[::1] r_view = r_flat
    cdef Py_ssize_t n = r_view.shape[0], i
    f = np.empty(n)
    df = np.empty(n)
    cdef double[::1] f_view = f
    cdef double[::1] df_view = df
    with nogil:
        for i in range(n):
            cutoff_func_poly(r_view[i], r_in, delta, &f_view[i], &df_view[i])
    return f.reshape(shape), df.reshape(shape)


def core_exponential_values(r, double prehc, double lambdahc, double rcut):
    """Exponential core repulsion phi(r) and dphi/dr, shaped like r."""
    r_flat, shape = _as_flat_float(r)
    cdef double[::1] r_view = r_flat
    cdef Py_ssize_t n = r_view.shape[0], i
    phi = np.empty(n)
    dphi = np.empty(n)
    cdef double[::1] phi_view = phi
    cdef double[::1] dphi_view = dphi
    with nogil:
        for i in range(n):
            core_exponential(r_view[i], prehc, lambdahc, rcut, &phi_view[i], &dphi_view[i])
    return phi.reshape(shape), dphi.reshape(shape)


def zbl_values(r, double z_i, double z_j, double prehc, double rcut, double dcut):
    """PACE ZBL pair term V(r) and dV/dr, shaped like r (z_i, z_j: atomic numbers)."""
    r_flat, shape = _as_flat_float(r)
    cdef double[::1] r_view = r_flat
    cdef Py_ssize_t n = r_view.shape[0], i
    v = np.empty(n)
    dv = np.empty(n)
    cdef double[::1] v_view = v
    cdef double[::1] dv_view = dv
    with nogil:
        for i in range(n):
            zbl_pair(r_view[i], z_i, z_j, prehc, rcut, dcut, &v_view[i], &dv_view[i])
    return v.reshape(shape), dv.reshape(shape)


def embedding_values(npot, double w, double m, rho):
    """w * F_m(rho), its first and second rho-derivatives, shaped like rho.

    npot: "FinnisSinclair", "FinnisSinclairShiftedScaled" or its NPOT_IDS id.
    """
    cdef int npot_id = _lookup_id(npot, NPOT_IDS, "embedding")
    rho_flat, shape = _as_flat_float(rho)
    cdef double[::1] rho_view = rho_flat
    cdef Py_ssize_t n = rho_view.shape[0], i
    F = np.empty(n)
    dF = np.empty(n)
    d2F = np.empty(n)
    cdef double[::1] F_view = F
    cdef double[::1] dF_view = dF
    cdef double[::1] d2F_view = d2F
    with nogil:
        for i in range(n):
            embedding(npot_id, w, m, rho_view[i], &F_view[i], &dF_view[i], &d2F_view[i])
    return F.reshape(shape), dF.reshape(shape), d2F.reshape(shape)
