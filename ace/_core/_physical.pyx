# cython: language_level=3
"""Physical (traditional) potential forms: per-atom energies, forces, virial and parameter
derivatives by exact automatic differentiation on a per-atom tape (OpenMP over atoms, GIL
released).

Each atomic energy E_i is recorded once, as a graph of elementary operations whose leaves are
the form's parameters p_i and the pair vectors D_q = r_j - r_i + shift @ cell of atom i's
neighbours. Every node stores its value and its first and second local partial derivatives, so
one recording serves three sweeps:
- reverse: dE_i/dD_q (forces, virial) and dE_i/dp_i;
- forward tangents along chosen directions, then a reverse sweep of the tangents
  (Hessian-vector products, forward-over-reverse): d/dp_i of the directional derivative of E_i
  along a displacement (u), and d^2 E_i / dp_i^2 (one tangent per parameter).
No finite differences anywhere. One tape per thread; per-atom results go to per-atom rows and the
force scatter runs serially in atom order, so every output is independent of the thread count.
"""
cimport numpy as cnp
import numpy as np
from cython.parallel cimport parallel, prange
from libc.math cimport exp, sqrt
from libc.stdlib cimport calloc, free, malloc

from ace._core._evaluator cimport max_neighbour_count, scatter_pair_gradients
from ace._core._openmp cimport omp_get_thread_num

cnp.import_array()

# form identifiers (ace.physical.FORM_IDS)
cdef enum:
    FORM_BOP = 0
    FORM_EAM = 1


cdef struct Tape:
    int n
    int capacity
    int n_dir
    int failed
    int* parent     # [capacity, 3]: up to three parents per node (-1: none)
    double* v       # values
    double* d       # [capacity, 3]: first partials by parent
    double* dd      # [capacity, 6]: second partials (00, 01, 02, 11, 12, 22)
    double* adj
    double* tan     # [capacity, n_dir]
    double* tadj    # [capacity, n_dir]
    # per-neighbour node indices used while recording (sized for max_nb)
    int* r_node
    int* fc_node
    int* s_node
    int* cos_node   # [max_nb * max_nb]: cos theta_jk
    int* dist_node  # [max_nb * max_nb]: |D_k - D_j|


cdef int tape_alloc(Tape* t, int capacity, int n_dir, int max_nb) noexcept nogil:
    cdef int nb = max_nb if max_nb > 0 else 1
    cdef size_t slots = capacity + 1  # the last slot takes nodes pushed past the capacity
    t.n = 0
    t.capacity = capacity
    t.n_dir = n_dir if n_dir > 0 else 1
    t.failed = 0
    t.parent = <int*>malloc(slots * 3 * sizeof(int))
    t.v = <double*>malloc(slots * sizeof(double))
    t.d = <double*>malloc(slots * 3 * sizeof(double))
    t.dd = <double*>malloc(slots * 6 * sizeof(double))
    t.adj = <double*>malloc(slots * sizeof(double))
    t.tan = <double*>malloc(slots * t.n_dir * sizeof(double))
    t.tadj = <double*>malloc(slots * t.n_dir * sizeof(double))
    t.r_node = <int*>malloc(nb * sizeof(int))
    t.fc_node = <int*>malloc(nb * sizeof(int))
    t.s_node = <int*>malloc(nb * sizeof(int))
    t.cos_node = <int*>malloc(nb * nb * sizeof(int))
    t.dist_node = <int*>malloc(nb * nb * sizeof(int))
    return (t.parent == NULL or t.v == NULL or t.d == NULL or t.dd == NULL or t.adj == NULL
            or t.tan == NULL or t.tadj == NULL or t.r_node == NULL or t.fc_node == NULL
            or t.s_node == NULL or t.cos_node == NULL or t.dist_node == NULL)


cdef void tape_free(Tape* t) noexcept nogil:
    free(t.parent); free(t.v); free(t.d); free(t.dd); free(t.adj); free(t.tan); free(t.tadj)
    free(t.r_node); free(t.fc_node); free(t.s_node); free(t.cos_node); free(t.dist_node)


cdef inline int push3(Tape* t, int a, int b, int c, double value, double da, double db,
                      double dc, double daa, double dab, double dac, double dbb, double dbc,
                      double dcc) noexcept nogil:
    cdef int k = t.n
    if k >= t.capacity:
        t.failed = 1
        k = t.capacity
    else:
        t.n += 1
    t.parent[3 * k] = a
    t.parent[3 * k + 1] = b
    t.parent[3 * k + 2] = c
    t.v[k] = value
    t.d[3 * k] = da
    t.d[3 * k + 1] = db
    t.d[3 * k + 2] = dc
    t.dd[6 * k] = daa
    t.dd[6 * k + 1] = dab
    t.dd[6 * k + 2] = dac
    t.dd[6 * k + 3] = dbb
    t.dd[6 * k + 4] = dbc
    t.dd[6 * k + 5] = dcc
    return k


cdef inline int leaf(Tape* t, double value) noexcept nogil:
    return push3(t, -1, -1, -1, value, 0, 0, 0, 0, 0, 0, 0, 0, 0)


cdef inline int unary(Tape* t, int x, double value, double d, double dd) noexcept nogil:
    return push3(t, x, -1, -1, value, d, 0, 0, dd, 0, 0, 0, 0, 0)


cdef inline int binary(Tape* t, int x, int y, double value, double dx, double dy, double dxx,
                       double dxy, double dyy) noexcept nogil:
    return push3(t, x, y, -1, value, dx, dy, 0, dxx, dxy, 0, dyy, 0, 0)


cdef inline int add(Tape* t, int x, int y) noexcept nogil:
    return binary(t, x, y, t.v[x] + t.v[y], 1, 1, 0, 0, 0)


cdef inline int sub(Tape* t, int x, int y) noexcept nogil:
    return binary(t, x, y, t.v[x] - t.v[y], 1, -1, 0, 0, 0)


cdef inline int mul(Tape* t, int x, int y) noexcept nogil:
    return binary(t, x, y, t.v[x] * t.v[y], t.v[y], t.v[x], 0, 1, 0)


cdef inline int scale(Tape* t, int x, double c) noexcept nogil:
    return unary(t, x, c * t.v[x], c, 0)


cdef inline int shift(Tape* t, int x, double c) noexcept nogil:
    return unary(t, x, t.v[x] + c, 1, 0)


cdef inline int square(Tape* t, int x) noexcept nogil:
    return unary(t, x, t.v[x] * t.v[x], 2 * t.v[x], 2)


cdef inline int square_root(Tape* t, int x) noexcept nogil:
    # sqrt(0) = 0 with zero derivatives: an atom without bonds has no embedding energy (its
    # argument vanishes like f_c, faster than the square root's slope grows)
    cdef double s
    if t.v[x] <= 0:
        return unary(t, x, 0, 0, 0)
    s = sqrt(t.v[x])
    return unary(t, x, s, 0.5 / s, -0.25 / (s * t.v[x]))


cdef inline int inverse_sqrt(Tape* t, int x) noexcept nogil:
    """(x)^(-1/2) for x > 0."""
    cdef double q = 1 / sqrt(t.v[x])
    return unary(t, x, q, -0.5 * q / t.v[x], 0.75 * q / (t.v[x] * t.v[x]))


cdef inline void cutoff_value(double r, double rc, double width, double* f, double* df,
                              double* ddf) noexcept nogil:
    """f_c(r) = (rc - r)^4 / (d^4 + (rc - r)^4) for r < rc, else 0; and its r-derivatives."""
    cdef double y, y3, y4, d4, m
    if r >= rc:
        f[0] = 0
        df[0] = 0
        ddf[0] = 0
        return
    y = rc - r
    y3 = y * y * y
    y4 = y3 * y
    d4 = width * width * width * width
    m = d4 + y4
    f[0] = y4 / m
    df[0] = -4 * d4 * y3 / (m * m)  # d/dr = -d/dy
    ddf[0] = d4 * (12 * y * y * m - 32 * y3 * y3) / (m * m * m)


cdef inline int cutoff_function(Tape* t, int x, double rc, double width) noexcept nogil:
    cdef double f, df, ddf
    cutoff_value(t.v[x], rc, width, &f, &df, &ddf)
    return unary(t, x, f, df, ddf)


cdef inline int norm(Tape* t, int x, int y, int z) noexcept nogil:
    """|(x, y, z)|: partials u_a = x_a / r, second (delta_ab - u_a u_b) / r."""
    cdef double a = t.v[x], b = t.v[y], c = t.v[z], r = sqrt(a * a + b * b + c * c)
    cdef double ua = a / r, ub = b / r, uc = c / r
    return push3(t, x, y, z, r, ua, ub, uc, (1 - ua * ua) / r, -ua * ub / r, -ua * uc / r,
                 (1 - ub * ub) / r, -ub * uc / r, (1 - uc * uc) / r)


cdef inline int cosine(Tape* t, int rj, int rk, int rjk) noexcept nogil:
    """cos theta_jk = (r_j^2 + r_k^2 - r_jk^2) / (2 r_j r_k) (law of cosines)."""
    cdef double a = t.v[rj], b = t.v[rk], e = t.v[rjk]
    cdef double c = (a * a + b * b - e * e) / (2 * a * b), ab = a * b
    return push3(t, rj, rk, rjk, c, 1 / b - c / a, 1 / a - c / b, -e / ab,
                 -1 / ab + 2 * c / (a * a), -1 / (b * b) - 1 / (a * a) + c / ab, e / (a * ab),
                 -1 / ab + 2 * c / (b * b), e / (b * ab), -1 / ab)


cdef inline int exp_decay(Tape* t, int prefactor, int rate, int r, double offset) noexcept nogil:
    """exp(P - q (r - offset)) with P, q parameters."""
    cdef double q = t.v[rate], x = t.v[r] - offset, e = exp(t.v[prefactor] - q * x)
    return push3(t, prefactor, rate, r, e, e, -x * e, -q * e,
                 e, -x * e, -q * e, x * x * e, (q * x - 1) * e, q * q * e)


cdef inline int screening_factor(Tape* t, int xi, int lam, double rc, double width) noexcept nogil:
    """S_ijk = 1 - f_c(xi) exp(-lambda xi)."""
    cdef double x = t.v[xi], l = t.v[lam], f, df, ddf, e, g1
    cutoff_value(x, rc, width, &f, &df, &ddf)
    e = exp(-l * x)
    g1 = df - l * f
    return binary(t, xi, lam, 1 - f * e, -e * g1, x * f * e,
                  -e * (ddf - 2 * l * df + l * l * f), e * (x * g1 + f), -x * x * f * e)


cdef inline int angular_term(Tape* t, int c, int h, int w) noexcept nogil:
    """w (c - h)^2."""
    cdef double q = t.v[c] - t.v[h], ww = t.v[w]
    return push3(t, c, h, w, ww * q * q, 2 * ww * q, -2 * ww * q, q * q,
                 2 * ww, -2 * ww, 2 * q, 2 * ww, -2 * q, 0)


cdef inline int excess_length(Tape* t, int rk, int rjk, int rj) noexcept nogil:
    """xi = r_k + r_jk - r_j."""
    return push3(t, rk, rjk, rj, t.v[rk] + t.v[rjk] - t.v[rj], 1, 1, -1, 0, 0, 0, 0, 0, 0)


cdef inline int sum_or_first(Tape* t, int total, int term) noexcept nogil:
    return term if total < 0 else add(t, total, term)


cdef int record_bop(Tape* t, int n_nb, double rc, double width, int p0, int c0) noexcept nogil:
    """E_i of the bond-order form; parameters at leaves p0..p0+7 (A, alpha, B, beta, h, sigma,
    a, lambda), coordinates at leaves c0.. (x, y, z per neighbour). Returns the energy node."""
    cdef int j, k, A = p0, alpha = p0 + 1, B = p0 + 2, beta = p0 + 3, h = p0 + 4
    cdef int sigma = p0 + 5, a = p0 + 6, lam = p0 + 7
    cdef int s, prod, z, term, bond, w, total_pair = -1, total_w = -1, one = leaf(t, 1.0)
    cdef int* rn = t.r_node
    cdef int* fcn = t.fc_node
    cdef int* sfc = t.s_node
    for j in range(n_nb):
        rn[j] = norm(t, c0 + 3 * j, c0 + 3 * j + 1, c0 + 3 * j + 2)
        fcn[j] = cutoff_function(t, rn[j], rc, width)
    # r_jk and cos theta_jk for each unordered pair of neighbours
    for j in range(n_nb):
        for k in range(j + 1, n_nb):
            t.dist_node[j * n_nb + k] = norm(t, sub(t, c0 + 3 * k, c0 + 3 * j),
                                             sub(t, c0 + 3 * k + 1, c0 + 3 * j + 1),
                                             sub(t, c0 + 3 * k + 2, c0 + 3 * j + 2))
            t.dist_node[k * n_nb + j] = t.dist_node[j * n_nb + k]
            t.cos_node[j * n_nb + k] = cosine(t, rn[j], rn[k], t.dist_node[j * n_nb + k])
            t.cos_node[k * n_nb + j] = t.cos_node[j * n_nb + k]
    # screening S_j = prod_{k != j} S_ijk, S_ijk = 1 - f_c(r_k) f_c(xi) exp(-lambda xi),
    # xi = r_k + r_jk - r_j; a factor with xi >= rc is exactly 1 (f_c and its derivatives vanish
    # there) and is skipped
    for j in range(n_nb):
        prod = -1
        for k in range(n_nb):
            if k == j or t.v[rn[k]] + t.v[t.dist_node[j * n_nb + k]] - t.v[rn[j]] >= rc:
                continue
            s = screening_factor(t, excess_length(t, rn[k], t.dist_node[j * n_nb + k], rn[j]),
                                 lam, rc, width)
            # faded by f_c(r_k): a screening atom enters i's neighbourhood smoothly (without
            # it E_i jumps when k crosses r_c with r_jk < r_j, by ~1 meV on a Mo crystal)
            s = shift(t, mul(t, fcn[k], shift(t, s, -1.0)), 1.0)
            prod = s if prod < 0 else mul(t, prod, s)
        sfc[j] = mul(t, prod, fcn[j]) if prod >= 0 else fcn[j]  # S_j f_c(r_j)
    for j in range(n_nb):
        # z_j = a sum_{k != j} S_k (cos theta_jk - h)^2 f_c(r_k); b_j = (1 + z_j)^(-1/2)
        z = -1
        for k in range(n_nb):
            if k != j:
                z = sum_or_first(t, z, angular_term(t, t.cos_node[j * n_nb + k], h, sfc[k]))
        bond = inverse_sqrt(t, shift(t, mul(t, a, z), 1.0)) if z >= 0 else one
        w = mul(t, sfc[j], bond)  # S_j b_j f_c(r_j)
        total_w = sum_or_first(t, total_w, w)
        term = sub(t, mul(t, exp_decay(t, A, alpha, rn[j], 0), fcn[j]),
                   mul(t, w, exp_decay(t, B, beta, rn[j], 0)))
        total_pair = sum_or_first(t, total_pair, term)
    return sub(t, scale(t, total_pair, 0.5), mul(t, sigma, square_root(t, total_w)))


cdef int record_eam(Tape* t, int n_nb, double rc, double width, int p0, int c0) noexcept nogil:
    """E_i of the Finnis-Sinclair/EAM form; parameters A, alpha, B, beta, gamma, sigma, c1, c2.
    E_i = 1/2 sum_j [exp(A - alpha r) - exp(B - beta r)] f_c(r) + F(rho_i),
    rho_i = sum_j exp(-gamma (r - r_c / 2)) f_c(r) (of order the number of near neighbours),
    F = -sigma sqrt(rho) + c1 rho + c2 rho^2."""
    cdef int j, A = p0, alpha = p0 + 1, B = p0 + 2, beta = p0 + 3, gamma = p0 + 4
    cdef int sigma = p0 + 5, c1 = p0 + 6, c2 = p0 + 7
    cdef int r, fc, pair, dens, total_pair = -1, rho = -1, embed, zero = leaf(t, 0.0)
    for j in range(n_nb):
        r = norm(t, c0 + 3 * j, c0 + 3 * j + 1, c0 + 3 * j + 2)
        fc = cutoff_function(t, r, rc, width)
        pair = mul(t, sub(t, exp_decay(t, A, alpha, r, 0), exp_decay(t, B, beta, r, 0)), fc)
        total_pair = sum_or_first(t, total_pair, pair)
        rho = sum_or_first(t, rho, mul(t, exp_decay(t, zero, gamma, r, 0.5 * rc), fc))
    embed = add(t, sub(t, mul(t, c1, rho), mul(t, sigma, square_root(t, rho))),
                mul(t, c2, square(t, rho)))
    return add(t, scale(t, total_pair, 0.5), embed)


cdef int record_atom(Tape* t, int form, int n_params, int n_nb, const double* vectors,
                     const double* params, double rc, double width) noexcept nogil:
    """Leaves: parameters 0..n_params-1, then 3 coordinates per neighbour. Returns the energy
    node, or -1 for an atom without neighbours (E_i = 0)."""
    cdef int k
    t.n = 0
    for k in range(n_params):
        leaf(t, params[k])
    for k in range(3 * n_nb):
        leaf(t, vectors[k])
    if n_nb == 0:
        return -1
    if form == FORM_BOP:
        return record_bop(t, n_nb, rc, width, 0, n_params)
    return record_eam(t, n_nb, rc, width, 0, n_params)


cdef void reverse(Tape* t, int out) noexcept nogil:
    cdef int k, s, p
    cdef double a
    for k in range(t.n):
        t.adj[k] = 0
    t.adj[out] = 1
    for k in range(out, -1, -1):
        a = t.adj[k]
        if a == 0:
            continue
        for s in range(3):
            p = t.parent[3 * k + s]
            if p >= 0:
                t.adj[p] += t.d[3 * k + s] * a


cdef void tangent_reverse(Tape* t, int out, int n_dir) noexcept nogil:
    """Tangents of the leaves are set in t.tan; propagate them forward, then reverse the
    tangent adjoints (needs t.adj from reverse): tadj[leaf, c] = (H tangent_c)[leaf]."""
    cdef int k, c, s, r, p, q, nd = t.n_dir
    cdef double a_k, ta, value
    cdef double* dd
    for k in range(t.n):
        if t.parent[3 * k] < 0:
            continue  # a leaf keeps the tangent it was given
        for c in range(n_dir):
            value = 0
            for s in range(3):
                p = t.parent[3 * k + s]
                if p >= 0:
                    value = value + t.d[3 * k + s] * t.tan[p * nd + c]
            t.tan[k * nd + c] = value
    for k in range(t.n * nd):
        t.tadj[k] = 0
    for k in range(out, -1, -1):
        if t.parent[3 * k] < 0:
            continue
        a_k = t.adj[k]
        dd = &t.dd[6 * k]
        for c in range(n_dir):
            ta = t.tadj[k * nd + c]
            for s in range(3):
                p = t.parent[3 * k + s]
                if p < 0:
                    continue
                value = t.d[3 * k + s] * ta
                if a_k != 0:
                    for r in range(3):
                        q = t.parent[3 * k + r]
                        if q >= 0:
                            value = value + a_k * dd[SECOND[3 * s + r]] * t.tan[q * nd + c]
                t.tadj[p * nd + c] += value


# index into a node's six second partials of parents (s, r)
cdef int[9] SECOND
SECOND[:] = [0, 1, 2, 1, 3, 4, 2, 4, 5]


cdef int capacity_for(int form, int max_nb, int n_params):
    """An upper bound of the nodes one atom records (counted from record_bop/record_eam)."""
    if form == FORM_BOP:
        return n_params + 8 + 3 * max_nb + 20 * max_nb + 10 * max_nb * max_nb
    return n_params + 8 + 3 * max_nb + 20 * max_nb


cdef Tape* thread_tapes(int n_threads, int form, int max_nb, int n_params, int n_dir) except NULL:
    cdef Tape* tapes = <Tape*>calloc(n_threads, sizeof(Tape))
    cdef int t, failed = tapes == NULL
    if not failed:
        for t in range(n_threads):
            failed |= tape_alloc(&tapes[t], capacity_for(form, max_nb, n_params), n_dir, max_nb)
    if failed:
        if tapes != NULL:
            for t in range(n_threads):
                tape_free(&tapes[t])
            free(tapes)
        raise MemoryError("could not allocate the per-thread tapes of the physical-form kernel")
    return tapes


cdef void free_tapes(Tape* tapes, int n_threads) noexcept nogil:
    cdef int t
    for t in range(n_threads):
        tape_free(&tapes[t])
    free(tapes)


cdef void release_tapes(Tape* tapes, int n_threads) except *:
    """Free the per-thread tapes; raise if one overflowed its node bound."""
    cdef int t, failed = 0
    for t in range(n_threads):
        failed |= tapes[t].failed
    free_tapes(tapes, n_threads)
    if failed:
        raise RuntimeError("the physical-form tape overflowed its node bound (a bug: "
                           "capacity_for undercounts)")


def physical_per_atom(int form, const cnp.int64_t[::1] first, const cnp.int64_t[::1] pair_j,
                      const double[:, ::1] vectors, const double[:, ::1] params, double rc,
                      double width, int n_threads):
    """Per-atom energies [n], forces [n, 3], strain derivative sum_q D_q (x) dE/dD_q [3, 3] and
    dE_i/dp_i [n, n_params]."""
    cdef Py_ssize_t n_atoms = params.shape[0], i, q
    cdef int n_params = params.shape[1], max_nb = max_neighbour_count(first), k, out, a
    n_threads = max(1, n_threads)
    energies_np = np.zeros(n_atoms)
    gradient_np = np.zeros((n_atoms, n_params))
    pair_gradient_np = np.zeros((max(vectors.shape[0], 1), 3))
    cdef double[::1] energies = energies_np
    cdef double[:, ::1] gradient = gradient_np
    cdef double[:, ::1] pair_gradient = pair_gradient_np
    cdef Tape* tapes = thread_tapes(n_threads, form, max_nb, n_params, 1)
    cdef Tape* tp
    cdef Py_ssize_t n_nb
    with nogil, parallel(num_threads=n_threads):
        tp = tapes + omp_get_thread_num()
        for i in prange(n_atoms, schedule="dynamic", chunksize=4):
            n_nb = first[i + 1] - first[i]
            out = record_atom(tp, form, n_params, <int>n_nb,
                              &vectors[first[i], 0] if n_nb > 0 else NULL,
                              &params[i, 0], rc, width)
            if out < 0:
                continue
            reverse(tp, out)
            energies[i] = tp.v[out]
            for k in range(n_params):
                gradient[i, k] = tp.adj[k]
            for q in range(n_nb):
                for a in range(3):
                    pair_gradient[first[i] + q, a] = tp.adj[n_params + 3 * q + a]
    release_tapes(tapes, n_threads)
    forces_np, strain_np = scatter_pair_gradients(first, pair_j, vectors, pair_gradient,
                                                  n_threads)
    return energies_np, forces_np, strain_np, gradient_np


def physical_adjoint(int form, const cnp.int64_t[::1] first, const cnp.int64_t[::1] pair_j,
                     const double[:, ::1] vectors, const double[:, ::1] params, double rc,
                     double width, const double[:, ::1] displacement, const double[:, ::1] strain,
                     const double[:, ::1] parameter_tangent, bint want_hessian, int n_threads):
    """u [n, n_params] = d/dp_i (sum_q delta_q . dE_i/dD_q), delta_q = g[j] - g[i] + strain @ D_q,
    plus H_i v_i if a parameter tangent v [n, n_params] is given (else [0, n_params]): the
    displacement and v share one tangent direction, so the Hessian-vector product costs no
    extra direction; and, if asked, hessian [n, n_params, n_params] = d^2 E_i / dp_i^2."""
    cdef Py_ssize_t n_atoms = params.shape[0], i, q, jn
    cdef int n_params = params.shape[1], max_nb = max_neighbour_count(first), k, c, out, a, b
    cdef int n_dir = 1 + (n_params if want_hessian else 0)
    cdef bint with_tangent = parameter_tangent.shape[0] > 0
    if with_tangent and (parameter_tangent.shape[0] != n_atoms
                         or parameter_tangent.shape[1] != n_params):
        raise ValueError(f"parameter_tangent must have shape ({n_atoms}, {n_params})")
    n_threads = max(1, n_threads)
    u_np = np.zeros((n_atoms, n_params))
    hessian_shape = [n_atoms, n_params, n_params] if want_hessian else [0, 0, 0]
    hessian_np = np.zeros(hessian_shape)
    cdef double[:, ::1] u = u_np
    cdef double[:, :, ::1] hessian = hessian_np
    cdef Tape* tapes = thread_tapes(n_threads, form, max_nb, n_params, n_dir)
    cdef Tape* tp
    cdef int nd
    cdef Py_ssize_t n_nb
    cdef double value
    with nogil, parallel(num_threads=n_threads):
        tp = tapes + omp_get_thread_num()
        for i in prange(n_atoms, schedule="dynamic", chunksize=4):
            n_nb = first[i + 1] - first[i]
            out = record_atom(tp, form, n_params, <int>n_nb,
                              &vectors[first[i], 0] if n_nb > 0 else NULL,
                              &params[i, 0], rc, width)
            if out < 0:
                continue
            reverse(tp, out)
            nd = tp.n_dir
            # leaf tangents: direction 0 is the displacement, 1 + k the unit vector of p_k
            for k in range(tp.n):
                if tp.parent[3 * k] < 0:
                    for c in range(nd):
                        tp.tan[k * nd + c] = 0  # parameters, coordinates and constants
            for q in range(n_nb):
                jn = pair_j[first[i] + q]
                for a in range(3):
                    value = displacement[jn, a] - displacement[i, a]
                    for b in range(3):
                        value = value + strain[a, b] * vectors[first[i] + q, b]
                    tp.tan[(n_params + 3 * q + a) * nd] = value
            if with_tangent:
                for k in range(n_params):
                    tp.tan[k * nd] = parameter_tangent[i, k]
            if nd > 1:
                for k in range(n_params):
                    tp.tan[k * nd + 1 + k] = 1
            tangent_reverse(tp, out, nd)
            for k in range(n_params):
                u[i, k] = tp.tadj[k * nd]
            if nd > 1:
                for k in range(n_params):
                    for c in range(n_params):
                        hessian[i, c, k] = tp.tadj[k * nd + 1 + c]
    release_tapes(tapes, n_threads)
    return u_np, hessian_np
