# cython: language_level=3
"""ACE energy/force/virial and design-matrix kernels (OpenMP over atoms, GIL released).

Per atom i (notation of docs/model.md; the kernels' structure in docs/kernels.md):
  A1[mu, k]      = sum_{j: mu_j = mu} g_k(r_ij)                       (rank-1 base, real)
  A[mu, n, l, m] = sum_{j: mu_j = mu} R_nl(r_ij) Ytilde_lm(r_ij)       (complex, m >= 0 stored,
                   A[l, -m] = (-1)^m conj(A[l, m]))
  rho_p          = sum_products c_p Re(prod_t A_t)                      (C-tilde products)
  E_i            = F(rho) * s + core + E0                               (s: core blending factor)
Forces by the adjoint: W = dE_i/dA (folded onto m >= 0), then for each neighbour
  dE_i/dD_ij = sum_nlm Re(W_nlm grad(R_nl Ytilde_lm)) + sum_k W1_k g_k' rhat + core terms,
stored per pair; a parallel pass scatters them into per-thread buffers of forces and the strain
derivative, which are then summed in thread order:
  sum_ij D_ij (x) dE_i/dD_ij   (= volume * stress in ASE's convention).
The compiled model arrays are built and validated by ace.evaluator; here nothing is checked.
"""
import numpy as np

cimport numpy as cnp
from cython.parallel cimport parallel, prange
from libc.math cimport sqrt
from libc.stdlib cimport calloc, free, malloc

from ace._core._harmonics cimport ylm_count, ylm_index, ylm_with_gradient
from ace._core._openmp cimport omp_get_thread_num
from ace._core._product_tree cimport (function_values, negative_m, tree_backward,
                                      tree_backward2, tree_forward, tree_forward2,
                                      tree_lanes_size, tree_lanes_values)


from ace._core._radial cimport (RADBASE_SBESSEL, core_exponential, cutoff_func_poly, embedding,
                                radial_base_tabulated, sbessel_constants, zbl_pair)

cdef class CompiledModel:
    """Holds the arrays of a compiled model alive and exposes them as a C struct."""

    def __init__(self, dict arrays, dict sizes):
        self._arrays = {}
        self._has_projections = "bcomb_node" in arrays
        for key, value in arrays.items():
            dtype = np.int32 if np.asarray(value).dtype.kind in "iub" else np.float64
            self._arrays[key] = np.ascontiguousarray(value, dtype=dtype)
        a = self._arrays
        m = &self.model
        m.n_elements = sizes["n_elements"]
        m.nradbase = sizes["nradbase"]
        m.nradmax = sizes["nradmax"]
        m.lmax = sizes["lmax"]
        m.n_lm = (m.lmax + 1) * (m.lmax + 1)
        m.n_ylm = ylm_count(m.lmax)
        m.n_a1 = m.n_elements * m.nradbase
        m.n_a = m.n_elements * m.nradmax * m.n_lm
        m.inner_type = sizes["inner_type"]
        m.n_coef = sizes["n_coef"]
        if a["comb_index"].size and a["comb_index"].shape[1] != MAX_RANK:
            raise ValueError(f"comb_index must have {MAX_RANK} columns")
        m.family = int_ptr(a["family"])
        m.lam = dbl_ptr(a["lam"])
        m.rcut = dbl_ptr(a["rcut"])
        m.dcut = dbl_ptr(a["dcut"])
        m.bond_nradbase = int_ptr(a["bond_nradbase"])
        m.bond_nradmax = int_ptr(a["bond_nradmax"])
        m.bond_lmax = int_ptr(a["bond_lmax"])
        m.r_in = dbl_ptr(a["r_in"])
        m.delta_in = dbl_ptr(a["delta_in"])
        m.prehc = dbl_ptr(a["prehc"])
        m.lambdahc = dbl_ptr(a["lambdahc"])
        m.crad = dbl_ptr(a["crad"])
        n_bonds = m.n_elements * m.n_elements
        radial_const = np.zeros(n_bonds * max(m.nradbase, 1) * 4)
        for bond in range(n_bonds):
            if m.family[bond] == RADBASE_SBESSEL and 0 < m.bond_nradbase[bond] <= m.nradbase:
                fill_sbessel_constants(radial_const, bond * m.nradbase * 4, m.rcut[bond],
                                       m.bond_nradbase[bond])
        self._arrays["radial_const"] = radial_const
        m.radial_const = dbl_ptr(radial_const)
        m.npot = int_ptr(a["npot"])
        m.ndensity = int_ptr(a["ndensity"])
        m.fs_w = dbl_ptr(a["fs_w"])
        m.fs_m = dbl_ptr(a["fs_m"])
        m.rho_core_cut = dbl_ptr(a["rho_core_cut"])
        m.drho_core_cut = dbl_ptr(a["drho_core_cut"])
        m.e0 = dbl_ptr(a["e0"])
        m.atomic_number = dbl_ptr(a["atomic_number"])
        m.func_first = int_ptr(a["func_first"])
        m.func_rank = int_ptr(a["func_rank"])
        m.comb_first = int_ptr(a["comb_first"])
        m.comb_index = int_ptr(a["comb_index"])
        m.comb_coef = dbl_ptr(a["comb_coef"])
        for key, size in (("node_first", m.n_elements + 1), ("node_leaf_first", m.n_elements),
                          ("node_parent", 0), ("node_factor", 0), ("node_coef", 0),
                          ("node_terminal", 0)):
            if key not in self._arrays:
                self._arrays[key] = np.zeros(size, dtype=np.float64 if key == "node_coef" else np.int32)
        self._arrays["node_terminal"] = self._arrays["node_terminal"].astype(np.int8)
        m.node_first = int_ptr(a["node_first"])
        m.node_leaf_first = int_ptr(a["node_leaf_first"])
        m.node_parent = int_ptr(a["node_parent"])
        m.node_factor = int_ptr(a["node_factor"])
        m.node_coef = dbl_ptr(a["node_coef"])
        m.node_terminal = <const char*>cnp.PyArray_DATA(a["node_terminal"])
        m.n_nodes = len(a["node_parent"])
        for key, size in (("bfunc_first", m.n_elements + 1), ("bcomb_first", 1),
                          ("bcomb_node", 0), ("bcomb_coef", 0)):
            if key not in self._arrays:
                self._arrays[key] = np.zeros(size, dtype=np.float64 if key == "bcomb_coef" else np.int32)
        m.bfunc_first = int_ptr(a["bfunc_first"])
        m.bcomb_first = int_ptr(a["bcomb_first"])
        m.bcomb_node = int_ptr(a["bcomb_node"])
        m.bcomb_coef = dbl_ptr(a["bcomb_coef"])
        m.n_bfuncs = len(a["bcomb_first"]) - 1

    @property
    def n_functions(self):
        return len(self._arrays["func_rank"])

    @property
    def has_projections(self):
        """Compiled with the B-function tables (projection_row can be used)."""
        return self._has_projections

    def projection_width(self, bint full):
        """Columns of the projection array: the longest projection vector of an element."""
        return projection_width(&self.model, full)


cdef void fill_sbessel_constants(double[::1] out, Py_ssize_t offset, double rcut, int nradbase):
    sbessel_constants(rcut, nradbase, &out[offset])


cdef const int* int_ptr(cnp.ndarray array):
    return <const int*>cnp.PyArray_DATA(array)


cdef const double* dbl_ptr(cnp.ndarray array):
    return <const double*>cnp.PyArray_DATA(array)


cdef int scratch_alloc(Scratch* s, const Model* m, int max_neighbours) noexcept nogil:
    cdef int nb = max_neighbours if max_neighbours > 0 else 1
    s.g = <double*>calloc(nb * m.nradbase, sizeof(double))
    s.dg = <double*>calloc(nb * m.nradbase, sizeof(double))
    s.R = <double*>calloc(nb * m.nradmax * (m.lmax + 1), sizeof(double))
    s.dR = <double*>calloc(nb * m.nradmax * (m.lmax + 1), sizeof(double))
    s.yr = <double*>calloc(nb * m.n_ylm, sizeof(double))
    s.yi = <double*>calloc(nb * m.n_ylm, sizeof(double))
    s.dyr = <double*>calloc(nb * m.n_ylm * 3, sizeof(double))
    s.dyi = <double*>calloc(nb * m.n_ylm * 3, sizeof(double))
    s.rhat = <double*>calloc(nb * 3, sizeof(double))
    s.dist = <double*>calloc(nb, sizeof(double))
    s.nb_mu = <int*>calloc(nb, sizeof(int))
    s.radial_extra = <double*>calloc(nb, sizeof(double))
    s.A = <double complex*>calloc(m.n_a + 1, sizeof(double complex))
    s.A1 = <double*>calloc(m.n_a1 + 1, sizeof(double))
    s.GA = <double complex*>calloc(m.n_coef * m.n_a + 1, sizeof(double complex))
    s.G1 = <double*>calloc(m.n_coef * m.n_a1 + 1, sizeof(double))
    s.rho = <double*>calloc(m.n_coef + 1, sizeof(double))
    s.dE_drho = <double*>calloc(m.n_coef + 1, sizeof(double))
    s.grad = <double*>calloc(nb * 3, sizeof(double))
    s.touched = <int*>calloc(m.n_a + m.n_a1 + 1, sizeof(int))
    s.mark = <char*>calloc(m.n_a + m.n_a1 + 1, sizeof(char))
    s.node_value = <double*>calloc(2 * m.n_nodes + 2, sizeof(double))
    s.node_adjoint = <double*>calloc(2 * m.n_nodes + 2, sizeof(double))
    s.dA = NULL
    s.nb_order = NULL
    s.species_first = NULL
    s.a_fold = NULL
    s.max_nb = nb
    return (s.g == NULL or s.dg == NULL or s.R == NULL or s.dR == NULL or s.yr == NULL
            or s.yi == NULL or s.dyr == NULL or s.dyi == NULL or s.rhat == NULL or s.dist == NULL
            or s.nb_mu == NULL or s.radial_extra == NULL or s.A == NULL or s.A1 == NULL
            or s.GA == NULL or s.G1 == NULL or s.rho == NULL or s.dE_drho == NULL
            or s.grad == NULL or s.touched == NULL or s.mark == NULL or s.node_value == NULL
            or s.node_adjoint == NULL)


cdef int design_scratch_alloc(Scratch* s, const Model* m, int max_neighbours) noexcept nogil:
    """The extra buffers of the design rows (after scratch_alloc)."""
    cdef int nb = max_neighbours if max_neighbours > 0 else 1
    s.dA = <double*>malloc(<size_t>m.n_a * nb * 6 * sizeof(double) + 8)
    s.nb_order = <int*>calloc(nb, sizeof(int))
    s.species_first = <int*>calloc(m.n_elements + 1, sizeof(int))
    s.a_fold = <int*>calloc(m.n_a + 1, sizeof(int))
    if s.dA == NULL or s.nb_order == NULL or s.species_first == NULL or s.a_fold == NULL:
        return 1
    # A[l, -m] = (-1)^m conj(A[l, m]): where the adjoint of an entry goes, decoded once
    cdef int mu, n, l, mm
    for mu in range(m.n_elements):
        for n in range(m.nradmax):
            for l in range(m.lmax + 1):
                for mm in range(-l, l + 1):
                    s.a_fold[a_index(m, mu, n, l, mm)] = 4 * a_index(m, mu, n, l, mm if mm >= 0 else -mm) + (
                        0 if mm >= 0 else (3 if mm % 2 else 1))
    return 0


cdef void scratch_free(Scratch* s) noexcept nogil:
    free(s.g); free(s.dg); free(s.R); free(s.dR); free(s.yr); free(s.yi); free(s.dyr)
    free(s.dyi); free(s.rhat); free(s.dist); free(s.nb_mu); free(s.radial_extra); free(s.A)
    free(s.A1); free(s.GA); free(s.G1); free(s.rho); free(s.dE_drho); free(s.grad)
    free(s.touched); free(s.mark); free(s.node_value); free(s.node_adjoint)
    free(s.dA); free(s.nb_order); free(s.species_first); free(s.a_fold)


cdef Scratch* thread_scratches(const Model* m, int n_threads, int max_neighbours,
                               bint design) except NULL:
    """One scratch per OpenMP thread, indexed by omp_get_thread_num() inside parallel().

    Allocated here, before the parallel region (calloc'd pages are first touched, hence
    placed, by the thread that uses them); free with free_thread_scratches.
    """
    cdef Scratch* scratches = <Scratch*>calloc(n_threads, sizeof(Scratch))
    cdef int t, failed = scratches == NULL
    if not failed:
        for t in range(n_threads):
            if scratch_alloc(scratches + t, m, max_neighbours) or (
                    design and design_scratch_alloc(scratches + t, m, max_neighbours)):
                failed = 1
    if failed:
        free_thread_scratches(scratches, n_threads)
        raise MemoryError("could not allocate the per-thread scratch of the ACE kernels "
                          f"({n_threads} threads, {max_neighbours} neighbours)")
    return scratches


cdef void free_thread_scratches(Scratch* scratches, int n_threads) noexcept nogil:
    cdef int t
    if scratches == NULL:
        return
    for t in range(n_threads):
        scratch_free(scratches + t)
    free(scratches)


cdef bint neighbour_base(const Model* m, Scratch* s, int mu_i, Py_ssize_t jj,
                         const double* vectors, const int* nb_species) noexcept nogil:
    """Distance, direction, radial base g_k, g_k' (inner cutoff applied) and Ytilde_lm with
    gradients of neighbour jj; False (nb_mu = -1) outside the bond cutoff."""
    cdef int k, mu = nb_species[jj], bond = mu_i * m.n_elements + mu, nrb
    cdef double r, f_in, df_in
    cdef double* g
    cdef double* dg
    r = sqrt(vectors[3 * jj] ** 2 + vectors[3 * jj + 1] ** 2 + vectors[3 * jj + 2] ** 2)
    s.dist[jj] = r
    s.radial_extra[jj] = 0
    if r >= m.rcut[bond]:
        s.nb_mu[jj] = -1
        return False
    s.nb_mu[jj] = mu
    for k in range(3):
        s.rhat[3 * jj + k] = vectors[3 * jj + k] / r
    nrb = m.bond_nradbase[bond]
    g = s.g + jj * m.nradbase
    dg = s.dg + jj * m.nradbase
    radial_base_tabulated(m.family[bond], m.lam[bond], m.rcut[bond], m.dcut[bond], nrb, r,
                          g, dg, m.radial_const + bond * m.nradbase * 4)
    if m.inner_type == INNER_DISTANCE:
        cutoff_func_poly(r, m.r_in[bond], m.delta_in[bond], &f_in, &df_in)
        for k in range(nrb):
            dg[k] = dg[k] * (1 - f_in) - g[k] * df_in
            g[k] = g[k] * (1 - f_in)
    if m.bond_lmax[bond] >= 0 and m.bond_nradmax[bond] > 0:
        ylm_with_gradient(vectors[3 * jj], vectors[3 * jj + 1], vectors[3 * jj + 2],
                          m.bond_lmax[bond], s.yr + jj * m.n_ylm, s.yi + jj * m.n_ylm,
                          s.dyr + jj * m.n_ylm * 3, s.dyi + jj * m.n_ylm * 3)
    return True


cdef void atomic_base(const Model* m, Scratch* s, int mu_i, Py_ssize_t n_nb,
                      const double* vectors, const int* nb_species) noexcept nogil:
    """Radial and angular parts per neighbour, and the atomic bases A1 and A (all m)."""
    cdef Py_ssize_t jj
    cdef int k, n, l, mm, mu, bond, nrb, nrm, lmb, idx, y
    cdef double value, dvalue
    cdef double* g
    cdef double* dg
    cdef double* R
    cdef double* dR
    cdef const double* crad
    cdef double* Ad = <double*>s.A
    cdef int n_rl = m.nradmax * (m.lmax + 1)
    for k in range(m.n_a):
        s.A[k] = 0
    for k in range(m.n_a1):
        s.A1[k] = 0
    for jj in range(n_nb):
        if not neighbour_base(m, s, mu_i, jj, vectors, nb_species):
            continue
        mu = nb_species[jj]
        bond = mu_i * m.n_elements + mu
        nrb = m.bond_nradbase[bond]
        nrm = m.bond_nradmax[bond]
        lmb = m.bond_lmax[bond]
        g = s.g + jj * m.nradbase
        dg = s.dg + jj * m.nradbase
        for k in range(nrb):
            s.A1[mu * m.nradbase + k] += g[k]
        R = s.R + jj * n_rl
        dR = s.dR + jj * n_rl
        for n in range(nrm):
            for l in range(lmb + 1):
                value = 0
                dvalue = 0
                crad = m.crad + ((bond * m.nradmax + n) * (m.lmax + 1) + l) * m.nradbase
                for k in range(nrb):
                    value = value + crad[k] * g[k]
                    dvalue = dvalue + crad[k] * dg[k]
                R[n * (m.lmax + 1) + l] = value
                dR[n * (m.lmax + 1) + l] = dvalue
        for n in range(nrm):
            for l in range(lmb + 1):
                value = R[n * (m.lmax + 1) + l]
                for mm in range(l + 1):
                    y = jj * m.n_ylm + ylm_index(l, mm)
                    idx = a_index(m, mu, n, l, mm)
                    Ad[2 * idx] += value * s.yr[y]
                    Ad[2 * idx + 1] += value * s.yi[y]
    negative_m(m, Ad, False)


cdef double core_and_blend(const Model* m, Scratch* s, int mu_i, Py_ssize_t n_nb,
                           double* blend) noexcept nogil:
    """Core-repulsion energy and the factor s multiplying F(rho); per-neighbour radial derivatives.

    On return s.radial_extra[jj] holds d(core)/dr_jj, and the caller adds
    F * d(blend)/dr via the blend derivative stored in s.grad[3 * jj] (radial component).
    """
    cdef Py_ssize_t jj, nearest = -1
    cdef int bond
    cdef double r, phi, dphi, f_in, df_in, rho_core = 0, best = 1e300, key
    cdef double f, df
    for jj in range(n_nb):
        s.grad[3 * jj] = 0
    blend[0] = 1
    if m.inner_type == INNER_ZBL:
        for jj in range(n_nb):
            if s.nb_mu[jj] < 0:
                continue
            bond = mu_i * m.n_elements + s.nb_mu[jj]
            r = s.dist[jj]
            zbl_pair(r, m.atomic_number[mu_i], m.atomic_number[s.nb_mu[jj]], m.prehc[bond],
                     m.rcut[bond], m.dcut[bond], &phi, &dphi)
            rho_core += phi
            s.radial_extra[jj] = dphi
            key = r - (m.r_in[bond] - m.delta_in[bond])
            if key < best:
                best = key
                nearest = jj
        if nearest < 0:
            return 0
        bond = mu_i * m.n_elements + s.nb_mu[nearest]
        cutoff_func_poly(m.r_in[bond] - s.dist[nearest], m.delta_in[bond], m.delta_in[bond], &f, &df)
        blend[0] = f
        for jj in range(n_nb):
            s.radial_extra[jj] *= (1 - f)
        # d blend / dr_nearest = -df; core energy (1 - f) rho_core gives +rho_core * df
        s.grad[3 * nearest] = -df
        s.radial_extra[nearest] += rho_core * df
        return (1 - f) * rho_core
    for jj in range(n_nb):
        if s.nb_mu[jj] < 0:
            continue
        bond = mu_i * m.n_elements + s.nb_mu[jj]
        r = s.dist[jj]
        core_exponential(r, m.prehc[bond], m.lambdahc[bond], m.rcut[bond], &phi, &dphi)
        if m.inner_type == INNER_DISTANCE:
            cutoff_func_poly(r, m.r_in[bond], m.delta_in[bond], &f_in, &df_in)
            dphi = dphi * f_in + phi * df_in
            phi = phi * f_in
        rho_core += phi
        s.radial_extra[jj] = dphi
    cutoff_func_poly(rho_core, m.rho_core_cut[mu_i], m.drho_core_cut[mu_i], &f, &df)
    blend[0] = f
    for jj in range(n_nb):
        s.grad[3 * jj] = df * s.radial_extra[jj]
    return rho_core


cdef void rank1_products(const Model* m, Scratch* s, int func, int n_coef) noexcept nogil:
    """Add a rank-1 function's share of rho_p, sum_c coef_cp A1[k_c], and its adjoint to G1
    (rank >= 2 products are on the product tree)."""
    cdef int c, k, p
    cdef const double* coef
    cdef double value
    for c in range(m.comb_first[func], m.comb_first[func + 1]):
        k = m.comb_index[c * MAX_RANK]
        coef = m.comb_coef + c * m.n_coef
        value = s.A1[k]
        for p in range(n_coef):
            s.rho[p] += coef[p] * value
            s.G1[p * m.n_a1 + k] += coef[p]


cdef void neighbour_gradient(const Model* m, const Scratch* s, int mu_i, Py_ssize_t jj,
                             const double* W, const double* W1, double* out) noexcept nogil:
    """out = d/dD_ij of Re(sum W A) + sum W1 A1 for neighbour jj (W folded onto m >= 0).

    Contracts over n first: X_lm = sum_n W_nlm R_nl and Z_lm = sum_n W_nlm dR_nl, then
    grad = Re(X . grad Y) + Re(Z . Y) rhat (fewer multiplies and loads of grad Y).
    """
    cdef int mu = s.nb_mu[jj], bond, k, n, l, mm, y, base, nrm
    cdef int n_l = m.lmax + 1, stride = m.n_lm
    cdef int n_rl = m.nradmax * n_l
    cdef double radial = s.radial_extra[jj], wre, wim, xr, xi, zr, zi, rv, drv
    cdef double gx = 0, gy = 0, gz = 0
    cdef const double* Wd = W
    cdef const double* Rj
    cdef const double* dRj
    cdef const double* yr
    cdef const double* yi
    cdef const double* dyr
    cdef const double* dyi
    out[0] = 0
    out[1] = 0
    out[2] = 0
    if mu < 0:
        return
    bond = mu_i * m.n_elements + mu
    nrm = m.bond_nradmax[bond]
    Rj = s.R + jj * n_rl
    dRj = s.dR + jj * n_rl
    yr = s.yr + jj * m.n_ylm
    yi = s.yi + jj * m.n_ylm
    dyr = s.dyr + jj * m.n_ylm * 3
    dyi = s.dyi + jj * m.n_ylm * 3
    for k in range(m.bond_nradbase[bond]):
        radial += W1[mu * m.nradbase + k] * s.dg[jj * m.nradbase + k]
    for l in range(m.bond_lmax[bond] + 1):
        for mm in range(l + 1):
            xr = 0
            xi = 0
            zr = 0
            zi = 0
            base = a_index(m, mu, 0, l, mm)
            for n in range(nrm):
                rv = Rj[n * n_l + l]
                drv = dRj[n * n_l + l]
                wre = Wd[2 * (base + n * stride)]
                wim = Wd[2 * (base + n * stride) + 1]
                xr = xr + rv * wre
                xi = xi + rv * wim
                zr = zr + drv * wre
                zi = zi + drv * wim
            y = ylm_index(l, mm)
            radial += zr * yr[y] - zi * yi[y]
            gx += xr * dyr[3 * y] - xi * dyi[3 * y]
            gy += xr * dyr[3 * y + 1] - xi * dyi[3 * y + 1]
            gz += xr * dyr[3 * y + 2] - xi * dyi[3 * y + 2]
    out[0] = gx + radial * s.rhat[3 * jj]
    out[1] = gy + radial * s.rhat[3 * jj + 1]
    out[2] = gz + radial * s.rhat[3 * jj + 2]


cdef void atom_forward(const Model* m, Scratch* s, int mu_i, Py_ssize_t n_nb,
                       const double* vectors, const int* nb_species) noexcept nogil:
    """Atomic bases, cleared adjoints, and rho from the rank-1 functions (the tree adds the rest)."""
    cdef int f, p, k
    atomic_base(m, s, mu_i, n_nb, vectors, nb_species)
    for k in range(m.n_a):
        s.GA[k] = 0
    for k in range(m.n_coef * m.n_a1):
        s.G1[k] = 0
    for p in range(m.n_coef):
        s.rho[p] = 0
    for f in range(m.func_first[mu_i], m.func_first[mu_i + 1]):
        if m.func_rank[f] == 1:
            rank1_products(m, s, f, m.ndensity[mu_i])


cdef double atom_embed(const Model* m, Scratch* s, int mu_i, Py_ssize_t n_nb,
                       double* densities) noexcept nogil:
    """E_i from rho; dE/drho (blend included) in s.dE_drho, the rank-1 adjoint W1 in s.G1."""
    cdef int p, k, nd = m.ndensity[mu_i]
    cdef double blend, core, F = 0, Fp, dFp, d2Fp
    cdef Py_ssize_t jj
    cdef double* W1 = s.G1
    for p in range(nd):
        embedding(m.npot[mu_i], m.fs_w[mu_i * m.n_coef + p], m.fs_m[mu_i * m.n_coef + p],
                  s.rho[p], &Fp, &dFp, &d2Fp)
        F += Fp
        s.dE_drho[p] = dFp
        if densities != NULL:
            densities[p] = s.rho[p]
    core = core_and_blend(m, s, mu_i, n_nb, &blend)
    # the blend factor multiplies F: its derivative adds F * d(blend)/dr radially
    for jj in range(n_nb):
        s.radial_extra[jj] += F * s.grad[3 * jj]
    for p in range(nd):
        s.dE_drho[p] *= blend
    for k in range(m.n_a1):
        W1[k] = s.dE_drho[0] * s.G1[k]
        for p in range(1, nd):
            W1[k] = W1[k] + s.dE_drho[p] * s.G1[p * m.n_a1 + k]
    return F * blend + core + m.e0[mu_i]


cdef void atom_pair_gradients(const Model* m, Scratch* s, int mu_i, Py_ssize_t n_nb,
                              double* pair_gradient) noexcept nogil:
    """dE_i/dD_ij for each neighbour into pair_gradient[3 * jj], from the adjoint in s.GA."""
    cdef Py_ssize_t jj
    negative_m(m, <double*>s.GA, True)
    for jj in range(n_nb):
        neighbour_gradient(m, s, mu_i, jj, <const double*>s.GA, s.G1, pair_gradient + 3 * jj)


cdef void projection_row(const Model* m, int mu_i, const double* node_re, int stride,
                         const double* A1, const double* dfp, bint full,
                         double* row) noexcept nogil:
    """The projection vector of one atom (ace.uncertainty.projections) into row: the
    B-functions (function_values on node values stored with a stride, see there), when ``full``
    expanded with dfp[p] = s F'_p(rho_p) (expand_full)."""
    function_values(m, mu_i, node_re, stride, A1, row)
    if full:
        expand_full(m, mu_i, dfp, row)


cdef void expand_full(const Model* m, int mu_i, const double* dfp, double* row) noexcept nogil:
    """Full-mode projections from the B-functions in row: B_f -> dfp[p] B_f at f * nd + p (in
    place, from the back)."""
    cdef int f, p, nd = m.ndensity[mu_i], n_f = m.bfunc_first[mu_i + 1] - m.bfunc_first[mu_i]
    for f in range(n_f - 1, -1, -1):
        for p in range(nd - 1, -1, -1):
            row[f * nd + p] = dfp[p] * row[f]


cdef int projection_width(const Model* m, bint full) noexcept nogil:
    """Length of the longest projection vector over the elements (rows are padded to it)."""
    cdef int e, width = 0, n_f
    for e in range(m.n_elements):
        n_f = m.bfunc_first[e + 1] - m.bfunc_first[e]
        width = max(width, n_f * (m.ndensity[e] if full else 1))
    return width


cdef double atom_energy_gradient(const Model* m, Scratch* s, int mu_i, Py_ssize_t n_nb,
                                 const double* vectors, const int* nb_species,
                                 double* pair_gradient, double* densities, double* projection,
                                 bint full) noexcept nogil:
    """E_i, and dE_i/dD_ij for each neighbour written to pair_gradient[3 * jj]; with a
    ``projection`` row (not NULL), the atom's projection vector from the same pass."""
    cdef double energy
    atom_forward(m, s, mu_i, n_nb, vectors, nb_species)
    if projection != NULL:
        tree_forward(m, mu_i, <const double*>s.A, s.node_value, NULL, NULL, False,
                     m.ndensity[mu_i], s.rho, True)
    else:
        tree_forward(m, mu_i, <const double*>s.A, s.node_value, NULL, NULL, False,
                     m.ndensity[mu_i], s.rho, False)
    energy = atom_embed(m, s, mu_i, n_nb, densities)
    if projection != NULL:
        projection_row(m, mu_i, s.node_value, 2, s.A1, s.dE_drho, full, projection)
    tree_backward(m, mu_i, <const double*>s.A, s.node_value, s.node_adjoint, <double*>s.GA,
                  NULL, NULL, NULL, NULL, False, m.ndensity[mu_i], s.dE_drho)
    atom_pair_gradients(m, s, mu_i, n_nb, pair_gradient)
    return energy


def energy_forces(CompiledModel compiled, const int[::1] species, const cnp.int64_t[::1] first,
                  const cnp.int64_t[::1] pair_i, const cnp.int64_t[::1] pair_j,
                  const double[:, ::1] vectors, int n_threads, double[:, ::1] projections=None,
                  bint full=False):
    """Per-atom energies [n], forces [n, 3], strain derivative sum D (x) dE/dD [3, 3],
    densities [n, n_coef].

    With ``projections`` (zeros [n, >= projection_width], on a model compiled with the
    B-functions) also each atom's projection vector for the extrapolation grade, in linear or
    (``full``) full mode, from the same pass: the leaves of the energy tree are stored and
    contracted into the B-functions (ace.uncertainty.projections; rows padded with zeros).
    """
    cdef Model* m = &compiled.model
    cdef Py_ssize_t n_atoms = species.shape[0], n_pairs = pair_j.shape[0], i
    cdef int max_nb = max_neighbour_count(first)
    cdef bint project = projections is not None
    cdef double* proj = NULL
    cdef Py_ssize_t proj_stride = 0
    if project:
        if not compiled._has_projections:
            raise ValueError("projections need a model compiled with the B-functions")
        if projections.shape[0] != n_atoms or projections.shape[1] < projection_width(m, full):
            raise ValueError(f"projections must be [{n_atoms}, >= {projection_width(m, full)}], "
                             f"got [{projections.shape[0]}, {projections.shape[1]}]")
        proj_stride = projections.shape[1]
        if n_atoms and proj_stride:  # width 0: elements without functions, nothing to write
            proj = &projections[0, 0]
    energies_np = np.zeros(n_atoms)
    pair_gradient_np = np.zeros((n_pairs, 3))
    densities_np = np.zeros((n_atoms, max(m.n_coef, 1)))
    cdef double[::1] energies = energies_np
    cdef double[:, ::1] pair_gradient = pair_gradient_np
    cdef double[:, ::1] densities = densities_np
    cdef int[::1] nb_species = np.asarray(species)[np.asarray(pair_j)].astype(np.int32) if n_pairs else np.zeros(1, np.int32)
    # one scratch per thread, found by thread number (a struct declared outside the parallel
    # block would be shared between threads)
    # Atoms go in pairs (2 ip, 2 ip + 1): two of the same species share one pass over the
    # product tree (tree_forward2/tree_backward2, one SSE2 lane each); otherwise one at a time.
    n_threads = max(1, n_threads)
    cdef Scratch* scratches = thread_scratches(m, 2 * n_threads, max_nb, False)
    cdef Py_ssize_t lane_size = tree_lanes_size(m)
    cdef double* lanes = <double*>malloc(n_threads * lane_size * sizeof(double))
    if lanes == NULL:
        free_thread_scratches(scratches, 2 * n_threads)
        raise MemoryError("could not allocate the per-thread scratch of the ACE evaluator")
    cdef Scratch* sp
    cdef Scratch* tp
    cdef double* lp
    cdef Py_ssize_t ip, a0, a1, n_pairs_of_atoms = (n_atoms + 1) // 2
    with nogil, parallel(num_threads=n_threads):
        sp = scratches + 2 * omp_get_thread_num()
        tp = sp + 1
        lp = lanes + omp_get_thread_num() * lane_size
        for ip in prange(n_pairs_of_atoms, schedule="dynamic", chunksize=2):
            a0 = 2 * ip
            a1 = 2 * ip + 1
            if a1 < n_atoms and species[a0] == species[a1]:
                atom_forward(m, sp, species[a0], first[a0 + 1] - first[a0],
                             &vectors[first[a0], 0] if first[a0 + 1] > first[a0] else NULL,
                             &nb_species[first[a0]] if first[a0 + 1] > first[a0] else NULL)
                atom_forward(m, tp, species[a1], first[a1 + 1] - first[a1],
                             &vectors[first[a1], 0] if first[a1 + 1] > first[a1] else NULL,
                             &nb_species[first[a1]] if first[a1 + 1] > first[a1] else NULL)
                if project:
                    tree_forward2(m, species[a0], m.ndensity[species[a0]], <const double*>sp.A,
                                  <const double*>tp.A, sp.rho, tp.rho, lp, True)
                else:
                    tree_forward2(m, species[a0], m.ndensity[species[a0]], <const double*>sp.A,
                                  <const double*>tp.A, sp.rho, tp.rho, lp, False)
                energies[a0] = atom_embed(m, sp, species[a0], first[a0 + 1] - first[a0],
                                          &densities[a0, 0])
                energies[a1] = atom_embed(m, tp, species[a1], first[a1 + 1] - first[a1],
                                          &densities[a1, 0])
                if project:
                    projection_row(m, species[a0], lp + tree_lanes_values(m), 4, sp.A1,
                                   sp.dE_drho, full, proj + a0 * proj_stride)
                    projection_row(m, species[a1], lp + tree_lanes_values(m) + 1, 4, tp.A1,
                                   tp.dE_drho, full, proj + a1 * proj_stride)
                tree_backward2(m, species[a0], m.ndensity[species[a0]], sp.dE_drho, tp.dE_drho,
                               <double*>sp.GA, <double*>tp.GA, lp)
                atom_pair_gradients(m, sp, species[a0], first[a0 + 1] - first[a0],
                                    &pair_gradient[first[a0], 0] if first[a0 + 1] > first[a0] else NULL)
                atom_pair_gradients(m, tp, species[a1], first[a1 + 1] - first[a1],
                                    &pair_gradient[first[a1], 0] if first[a1 + 1] > first[a1] else NULL)
            else:
                for i in range(a0, min(a0 + 2, n_atoms)):
                    energies[i] = atom_energy_gradient(
                        m, sp, species[i], first[i + 1] - first[i],
                        &vectors[first[i], 0] if first[i + 1] > first[i] else NULL,
                        &nb_species[first[i]] if first[i + 1] > first[i] else NULL,
                        &pair_gradient[first[i], 0] if first[i + 1] > first[i] else NULL,
                        &densities[i, 0], proj + i * proj_stride if project else NULL, full)
    free(lanes)
    free_thread_scratches(scratches, 2 * n_threads)
    forces_np, strain_np = scatter_pair_gradients(first, pair_j, vectors, pair_gradient, n_threads)
    return energies_np, forces_np, strain_np, densities_np[:, :m.n_coef]


cdef tuple scatter_pair_gradients(const cnp.int64_t[::1] first, const cnp.int64_t[::1] pair_j,
                                  const double[:, ::1] vectors,
                                  const double[:, ::1] pair_gradient, int n_threads):
    """Forces F_i = sum_j dE/dD_ij - sum_(k: j = i) dE/dD_ki [n_atoms, 3] and the strain
    derivative sum_ij D_ij (x) dE/dD_ij [3, 3] from the pair gradients dE/dD_ij.

    Each thread scatters its atoms in order into its own buffer, then the buffers are summed
    (one thread: exactly the serial loop's sums, bit for bit).
    """
    cdef Py_ssize_t n_atoms = first.shape[0] - 1, i, q, jn
    cdef int a, b, t
    n_threads = max(1, min(n_threads, max(n_atoms, 1)))
    forces_np = np.zeros((n_atoms, 3))
    strain_np = np.zeros((3, 3))
    buffers_np = np.zeros((n_threads, n_atoms * 3 + 9))
    cdef double[:, ::1] forces = forces_np
    cdef double[:, ::1] strain = strain_np
    cdef double[:, ::1] buffers = buffers_np
    cdef double* fb
    if n_atoms:
        with nogil, parallel(num_threads=n_threads):
            fb = &buffers[omp_get_thread_num(), 0]
            for i in prange(n_atoms, schedule="static"):
                for q in range(first[i], first[i + 1]):
                    jn = pair_j[q]
                    for a in range(3):
                        fb[3 * i + a] += pair_gradient[q, a]
                        fb[3 * jn + a] -= pair_gradient[q, a]
                        for b in range(3):
                            fb[3 * n_atoms + 3 * a + b] += vectors[q, a] * pair_gradient[q, b]
            for i in prange(n_atoms, schedule="static"):
                for a in range(3):
                    for t in range(n_threads):
                        forces[i, a] += buffers[t, 3 * i + a]
        for t in range(n_threads):
            for a in range(3):
                for b in range(3):
                    strain[a, b] += buffers[t, 3 * n_atoms + 3 * a + b]
    return forces_np, strain_np


cdef const int* design_tree(CompiledModel compiled) except NULL:
    """The design tree's node of each coupling row (ace.evaluator._design_tree; -1 for rank 1)."""
    cdef cnp.ndarray comb_node = compiled._arrays.get("comb_node")
    if comb_node is None or comb_node.shape[0] != compiled.model.comb_first[compiled.n_functions]:
        raise ValueError("the model lacks its product tree (compile it with design=True)")
    if comb_node.shape[0] == 0:
        return &NO_NODE
    return <const int*>cnp.PyArray_DATA(comb_node)


cdef int NO_NODE = -1


cdef int max_neighbour_count(const cnp.int64_t[::1] first) noexcept:
    cdef Py_ssize_t i
    cdef cnp.int64_t best = 0
    for i in range(first.shape[0] - 1):
        if first[i + 1] - first[i] > best:
            best = first[i + 1] - first[i]
    return <int>best


cdef void neighbour_derivatives(const Model* m, Scratch* s, int mu_i, Py_ssize_t n_nb) noexcept nogil:
    """Group the in-cutoff neighbours by species (s.nb_order, s.species_first) and tabulate
    dA[idx, c, k] = d(R_nl Y_lm)/dD for the k-th neighbour of idx's species (m >= 0), with
    c = re x, y, z, im x, y, z (contiguous in k, so that the per-function loops vectorise).

    Each function's gradient is then 6 multiply-adds per (touched A entry, neighbour), instead
    of rebuilding R_nl grad(Y) + R'_nl Y rhat for every function that touches the entry.
    """
    cdef Py_ssize_t jj
    cdef int mu, k, kk, n, l, mm, y, bond, idx
    cdef int n_l = m.lmax + 1, n_rl = m.nradmax * (m.lmax + 1), nb = s.max_nb
    cdef double Rv, dRv, yr, yi
    cdef double* d
    cdef const double* rh
    cdef const double* dyr
    cdef const double* dyi
    for mu in range(m.n_elements + 1):
        s.species_first[mu] = 0
    for jj in range(n_nb):
        if s.nb_mu[jj] >= 0:
            s.species_first[s.nb_mu[jj] + 1] += 1
    for mu in range(m.n_elements):
        s.species_first[mu + 1] += s.species_first[mu]
    for mu in range(m.n_elements):
        k = s.species_first[mu]
        for jj in range(n_nb):
            if s.nb_mu[jj] == mu:
                s.nb_order[k] = <int>jj
                k = k + 1
    for mu in range(m.n_elements):
        bond = mu_i * m.n_elements + mu
        for kk in range(s.species_first[mu + 1] - s.species_first[mu]):
            jj = s.nb_order[s.species_first[mu] + kk]
            rh = s.rhat + 3 * jj
            for n in range(m.bond_nradmax[bond]):
                for l in range(m.bond_lmax[bond] + 1):
                    Rv = s.R[jj * n_rl + n * n_l + l]
                    dRv = s.dR[jj * n_rl + n * n_l + l]
                    for mm in range(l + 1):
                        y = <int>jj * m.n_ylm + ylm_index(l, mm)
                        yr = dRv * s.yr[y]
                        yi = dRv * s.yi[y]
                        dyr = s.dyr + 3 * y
                        dyi = s.dyi + 3 * y
                        idx = a_index(m, mu, n, l, mm)
                        d = s.dA + <Py_ssize_t>idx * 6 * nb + kk
                        d[0] = yr * rh[0] + Rv * dyr[0]
                        d[nb] = yr * rh[1] + Rv * dyr[1]
                        d[2 * nb] = yr * rh[2] + Rv * dyr[2]
                        d[3 * nb] = yi * rh[0] + Rv * dyi[0]
                        d[4 * nb] = yi * rh[1] + Rv * dyi[1]
                        d[5 * nb] = yi * rh[2] + Rv * dyi[2]


cdef inline void axpy2(Py_ssize_t n, double a, const double* x, double b, const double* y,
                       double* out) noexcept nogil:
    """out[k] += a x[k] + b y[k] (a separate function: the compiler can vectorise it)."""
    cdef Py_ssize_t k
    for k in range(n):
        out[k] += a * x[k] + b * y[k]


cdef void function_rows(const Model* m, Scratch* s, const int* comb_node, int mu_i, int func,
                        double blend, Py_ssize_t i, const cnp.int64_t* nb_j,
                        const double* vectors, double* b_value, double* force_rows,
                        double* strain_rows, Py_ssize_t n_funcs) noexcept nogil:
    """Value and position derivatives of one basis function of atom i, scattered into the rows.

    The products come from the design tree (tree_forward once per atom, s.node_value); the
    adjoint of coef * P_k walks the node's path to the root: at each node the factor A_f gets
    coef * (product below it) * P_parent, in explicit (re, im) arithmetic (C99 complex
    multiplication calls __muldc3 with its inf/NaN recovery).
    """
    cdef int c, idx, n_touched = 0, mu, k, a, b, t, node, parent
    cdef int nb = s.max_nb, code
    cdef Py_ssize_t kk, n_k
    cdef const double* A = <const double*>s.A
    cdef const double* P = s.node_value
    cdef double* GA = <double*>s.GA
    cdef double coef, value = 0, ar, ai, wr, wi, qr, gr, gi, pr, pi
    cdef double total[3]
    cdef double si[3]
    cdef double strain[9]
    cdef double* gx = s.grad
    cdef double* gy = s.grad + nb
    cdef double* gz = s.grad + 2 * nb
    cdef const double* d
    cdef Py_ssize_t jj
    cdef int n_group = s.species_first[m.n_elements]
    # adjoint of this function only (reuses the energy scratch: GA, G1 stay zero between calls)
    for c in range(m.comb_first[func], m.comb_first[func + 1]):
        coef = m.comb_coef[c]
        node = comb_node[c]
        if node < 0:  # rank 1
            idx = m.comb_index[c * MAX_RANK]
            value += coef * s.A1[idx]
            s.G1[idx] += coef
            if not s.mark[m.n_a + idx]:
                s.mark[m.n_a + idx] = 1
                s.touched[n_touched] = m.n_a + idx
                n_touched += 1
            continue
        value += coef * P[2 * node]
        # negative m stays unfolded here and is folded once per touched entry below
        gr = coef
        gi = 0
        while node >= 0:
            parent = m.node_parent[node]
            idx = m.node_factor[node]
            if parent >= 0:
                pr = P[2 * parent]
                pi = P[2 * parent + 1]
                GA[2 * idx] += pr * gr - pi * gi
                GA[2 * idx + 1] += pr * gi + pi * gr
                ar = A[2 * idx]
                ai = A[2 * idx + 1]
                qr = gr * ar - gi * ai
                gi = gr * ai + gi * ar
                gr = qr
            else:
                GA[2 * idx] += gr
                GA[2 * idx + 1] += gi
            if not s.mark[idx]:
                s.mark[idx] = 1
                s.touched[n_touched] = idx
                n_touched += 1
            node = parent
    b_value[0] = blend * value
    for kk in range(n_group):  # gradient per grouped neighbour, [3][max_nb]
        gx[kk] = 0
        gy[kk] = 0
        gz[kk] = 0
    for t in range(n_touched):
        idx = s.touched[t]
        s.mark[idx] = 0
        if idx >= m.n_a:
            k = idx - m.n_a
            mu = k // m.nradbase
            k = k % m.nradbase
            wr = s.G1[idx - m.n_a]
            s.G1[idx - m.n_a] = 0
            for kk in range(s.species_first[mu], s.species_first[mu + 1]):
                jj = s.nb_order[kk]
                qr = wr * s.dg[jj * m.nradbase + k]
                gx[kk] += qr * s.rhat[3 * jj]
                gy[kk] += qr * s.rhat[3 * jj + 1]
                gz[kk] += qr * s.rhat[3 * jj + 2]
            continue
        wr = GA[2 * idx]
        wi = GA[2 * idx + 1]
        GA[2 * idx] = 0
        GA[2 * idx + 1] = 0
        mu = idx // (m.nradmax * m.n_lm)
        # Re(w dA[l, -m]) = Re((-1)^m conj(w) dA[l, m])
        code = s.a_fold[idx] & 3
        idx = s.a_fold[idx] >> 2
        if code:
            wi = -wi
            if code == 3:
                wr = -wr
                wi = -wi
        d = s.dA + <Py_ssize_t>idx * 6 * nb
        k = s.species_first[mu]
        n_k = s.species_first[mu + 1] - k
        axpy2(n_k, wr, d, -wi, d + 3 * nb, gx + k)
        axpy2(n_k, wr, d + nb, -wi, d + 4 * nb, gy + k)
        axpy2(n_k, wr, d + 2 * nb, -wi, d + 5 * nb, gz + k)
    # scatter: atom i and the strain once per function, each neighbour j once
    for a in range(3):
        si[a] = 0
    for a in range(9):
        strain[a] = 0
    for kk in range(n_group):
        jj = s.nb_order[kk]
        for a in range(3):
            # blend * dB/dD + B * d(blend)/dD (radial, stored in radial_extra by the caller)
            total[a] = blend * s.grad[a * nb + kk] + value * s.radial_extra[jj] * s.rhat[3 * jj + a]
        for a in range(3):
            si[a] += total[a]
            force_rows[(nb_j[jj] * 3 + a) * n_funcs] -= total[a]
            for b in range(3):
                strain[3 * a + b] += vectors[3 * jj + a] * total[b]
    for a in range(3):
        force_rows[(i * 3 + a) * n_funcs] += si[a]
    for a in range(9):
        strain_rows[a * n_funcs] += strain[a]


def design_rows(CompiledModel compiled, const int[::1] species, const cnp.int64_t[::1] first,
                const cnp.int64_t[::1] pair_j, const double[:, ::1] vectors, int n_threads):
    """Rows of the linear design matrix of one structure, for the model's B-functions (n_coef 1).

    Returns B per atom [n_atoms, n_funcs] (times the core blending factor), force rows
    -d(sum_i B_i)/dr_k [n_atoms, 3, n_funcs] and the strain derivative rows
    sum_ij D_ij (x) d(sum_i B_i)/dD_ij [3, 3, n_funcs].
    """
    cdef Model* m = &compiled.model
    cdef Py_ssize_t n_atoms = species.shape[0], n_pairs = pair_j.shape[0], i, f
    cdef Py_ssize_t n_funcs = compiled.n_functions
    cdef int max_nb = max_neighbour_count(first)
    n_threads = max(1, min(n_threads, n_atoms))
    b_np = np.zeros((n_atoms, n_funcs))
    force_np = np.zeros((n_threads, n_atoms * 3 * n_funcs))
    strain_np = np.zeros((n_threads, 9 * n_funcs))
    cdef double[:, ::1] b_atoms = b_np
    cdef double[:, ::1] force_rows = force_np
    cdef double[:, ::1] strain_rows = strain_np
    cdef int[::1] nb_species = np.asarray(species)[np.asarray(pair_j)].astype(np.int32) if n_pairs else np.zeros(1, np.int32)
    cdef const int* comb_node = design_tree(compiled)
    cdef Scratch* scratches = thread_scratches(m, n_threads, max_nb, True)
    cdef Scratch* sp
    cdef int thread = 0, mu_i
    cdef double blend
    cdef Py_ssize_t n_nb, jj
    with nogil, parallel(num_threads=n_threads):
        thread = omp_get_thread_num()
        sp = scratches + thread
        for i in prange(n_atoms, schedule="static"):
            n_nb = first[i + 1] - first[i]
            mu_i = species[i]
            atomic_base(m, sp, mu_i, n_nb, &vectors[first[i], 0] if n_nb > 0 else NULL,
                        &nb_species[first[i]] if n_nb > 0 else NULL)
            blend = 1.0  # assigned here so that it is private to the thread
            core_and_blend(m, sp, mu_i, n_nb, &blend)
            for jj in range(n_nb):
                sp.radial_extra[jj] = sp.grad[3 * jj]
            neighbour_derivatives(m, sp, mu_i, n_nb)
            tree_forward(m, mu_i, <const double*>sp.A, sp.node_value, NULL, NULL, False, 0,
                         NULL, False)
            for f in range(m.func_first[mu_i], m.func_first[mu_i + 1]):
                function_rows(m, sp, comb_node, mu_i, f, blend, i,
                              &pair_j[first[i]] if n_nb > 0 else NULL,
                              &vectors[first[i], 0] if n_nb > 0 else NULL,
                              &b_atoms[i, f], &force_rows[thread, f],
                              &strain_rows[thread, f], n_funcs)
    free_thread_scratches(scratches, n_threads)
    forces = force_np.sum(axis=0).reshape(n_atoms, 3, n_funcs)
    strain = strain_np.sum(axis=0).reshape(3, 3, n_funcs)
    return b_np, forces, strain
