# cython: language_level=3
"""Loss terms and exact parameter gradients for the nonlinear fit (OpenMP, GIL released).

The model is the design form of ace._core._evaluator (one coupling list per B-function), with
the fitted parameters passed in: basis coefficients c[f, p] and radial coefficients crad, so
that an optimiser step needs no recompilation.

``model_values`` gives per-atom energies and pair gradients dE_i/dD_ij (forces, stress).

``parameter_gradient`` gives d/dtheta of  sum_i  alpha_i E_i + D_delta E_i,  where
D_delta E_i = sum_j delta_ij . dE_i/dD_ij is the derivative of E_i along the per-pair tangents
delta_ij = u_i - u_j + D_ij U_s (u per atom, U per structure s of atom i), built per atom in
the kernel. With alpha the energy residual weights, u the force and U the stress residual
directions (ace.fitting.nonlinear) this is the exact gradient of the loss. Forward-mode tangents
(DA, DB, D rho) run beside the values and the reverse pass carries the adjoint W of A and the
adjoint V of DA:
  E_i = s F(rho),  rho_p = sum_f c[f, p] B_f(A),  A_nlm = sum_k crad_nlk At_klm,
      At_klm = sum_j g_k(r_ij) Y_lm(r_ij)  (the base-function sums)
  dPhi/dc[f, p]   = lambda_p B_f + mu_p DB_f,
      lambda_p = alpha s F'_p + Ds F'_p + s F''_p D rho_p,   mu_p = s F'_p
  dPhi/dcrad_nlk = Re sum_m W_nlm At_klm + V_nlm DAt_klm
      W = sum_p lambda_p drho_p/dA + mu_p D(drho_p/dA),  V = sum_p mu_p drho_p/dA
(s: the core blending factor, Ds its tangent). The products and their tangents are the design
tree's, through the shared passes of _product_tree.pxd (docs/kernels.md); the pair gradients
come from the energy kernel's neighbour_gradient. The gradient pass sums the neighbours into At
and DAt only (no R_nl per neighbour); A, DA and dPhi/dcrad are contractions once per atom.
Gradients accumulate into a fixed number of atom blocks summed in order, so results do not
depend on the thread count.
"""
import numpy as np

cimport numpy as cnp
from cython.parallel cimport parallel, prange
from libc.stdlib cimport calloc, free

from ace._core._evaluator cimport (MAX_RANK, CompiledModel, Model, Scratch, a_index,
                                   atomic_base, core_and_blend, design_tree,
                                   max_neighbour_count, neighbour_base, neighbour_gradient,
                                   scratch_alloc, scratch_free)
from ace._core._harmonics cimport ylm_count, ylm_index
from ace._core._openmp cimport omp_get_thread_num
from ace._core._product_tree cimport (ace_v2, ace_v2_load, ace_v2_splat, ace_v2_store,
                                      negative_m, tree_backward, tree_forward)
from ace._core._radial cimport embedding

cdef enum:
    GRADIENT_BLOCKS = 64  # fixed, so that the summation order is thread-independent


cdef int work_alloc(Work* w, const Model* m, int max_nb, int max_funcs, int n_dens) noexcept nogil:
    cdef int nb
    w.DA = <double*>calloc(2 * m.n_a + 2, sizeof(double))
    w.DA1 = <double*>calloc(m.n_a1 + 1, sizeof(double))
    w.W = <double*>calloc(2 * m.n_a + 2, sizeof(double))
    w.V = <double*>calloc(2 * m.n_a + 2, sizeof(double))
    w.W1 = <double*>calloc(m.n_a1 + 1, sizeof(double))
    w.B = <double*>calloc(max_funcs + 1, sizeof(double))
    w.DB = <double*>calloc(max_funcs + 1, sizeof(double))
    w.rho = <double*>calloc(4 * n_dens + 4, sizeof(double))
    w.drho = w.rho + n_dens + 1
    w.lam = w.drho + n_dens + 1
    w.mu = w.lam + n_dens + 1
    w.P = <double*>calloc(8 * m.n_nodes + 8, sizeof(double))
    w.DP = w.P + 2 * m.n_nodes + 2
    w.GP = w.DP + 2 * m.n_nodes + 2
    w.GDP = w.GP + 2 * m.n_nodes + 2
    nb = max(max_nb, 1)
    w.At = <double*>calloc(4 * (m.n_a1 + nb) * m.n_ylm + nb * m.nradbase + 2, sizeof(double))
    w.DAt = w.At + 2 * m.n_a1 * m.n_ylm
    w.yv = w.DAt + 2 * m.n_a1 * m.n_ylm
    w.dyt = w.yv + 2 * nb * m.n_ylm
    w.hk = w.dyt + 2 * nb * m.n_ylm
    w.order = <int*>calloc(nb, sizeof(int))
    w.tangent = <double*>calloc(3 * nb, sizeof(double))
    w.present = <int*>calloc(m.n_elements + 1, sizeof(int))
    return (scratch_alloc(&w.base, m, max_nb) or w.DA == NULL or w.DA1 == NULL or w.W == NULL
            or w.V == NULL or w.W1 == NULL or w.B == NULL or w.DB == NULL or w.rho == NULL
            or w.P == NULL or w.At == NULL or w.order == NULL or w.tangent == NULL
            or w.present == NULL)


cdef void work_free(Work* w) noexcept nogil:
    scratch_free(&w.base)
    free(w.DA); free(w.DA1); free(w.W); free(w.V); free(w.W1); free(w.B); free(w.DB); free(w.rho)
    free(w.P); free(w.At); free(w.order); free(w.tangent); free(w.present)


cdef inline void accumulate_sums(const Model* m, Work* w, int mu, int nrb, int nq,
                                 const int* nbs, int n) noexcept nogil:
    """At_klm += g_k Y_lm, DAt_klm += D(g_k Y_lm) = g_k' (rhat . t) Y_lm + g_k DY_lm over the
    n (1 or 4) neighbours nbs of species mu, on (re, im) pairs."""
    cdef int k, q, i, stride = 2 * m.n_ylm
    cdef const double* g = w.base.g
    cdef const double* y0 = w.yv + nbs[0] * stride
    cdef const double* y1
    cdef const double* y2
    cdef const double* y3
    cdef const double* d0 = w.dyt + nbs[0] * stride
    cdef const double* d1
    cdef const double* d2
    cdef const double* d3
    cdef double* row
    cdef double* drow
    cdef ace_v2 g0, g1, g2, g3, h0, h1, h2, h3, yq, acc, dacc
    if n == 1:
        for k in range(nrb):
            g0 = ace_v2_splat(g[nbs[0] * m.nradbase + k])
            h0 = ace_v2_splat(w.hk[nbs[0] * m.nradbase + k])
            row = w.At + (mu * m.nradbase + k) * stride
            drow = w.DAt + (mu * m.nradbase + k) * stride
            for q in range(nq):
                yq = ace_v2_load(y0 + 2 * q)
                ace_v2_store(row + 2 * q, ace_v2_load(row + 2 * q) + g0 * yq)
                ace_v2_store(drow + 2 * q, ace_v2_load(drow + 2 * q) + h0 * yq
                             + g0 * ace_v2_load(d0 + 2 * q))
        return
    y1 = w.yv + nbs[1] * stride
    y2 = w.yv + nbs[2] * stride
    y3 = w.yv + nbs[3] * stride
    d1 = w.dyt + nbs[1] * stride
    d2 = w.dyt + nbs[2] * stride
    d3 = w.dyt + nbs[3] * stride
    for k in range(nrb):
        g0 = ace_v2_splat(g[nbs[0] * m.nradbase + k])
        g1 = ace_v2_splat(g[nbs[1] * m.nradbase + k])
        g2 = ace_v2_splat(g[nbs[2] * m.nradbase + k])
        g3 = ace_v2_splat(g[nbs[3] * m.nradbase + k])
        h0 = ace_v2_splat(w.hk[nbs[0] * m.nradbase + k])
        h1 = ace_v2_splat(w.hk[nbs[1] * m.nradbase + k])
        h2 = ace_v2_splat(w.hk[nbs[2] * m.nradbase + k])
        h3 = ace_v2_splat(w.hk[nbs[3] * m.nradbase + k])
        row = w.At + (mu * m.nradbase + k) * stride
        drow = w.DAt + (mu * m.nradbase + k) * stride
        for q in range(nq):
            i = 2 * q
            acc = ace_v2_load(row + i)
            dacc = ace_v2_load(drow + i)
            yq = ace_v2_load(y0 + i)
            acc = acc + g0 * yq
            dacc = dacc + h0 * yq + g0 * ace_v2_load(d0 + i)
            yq = ace_v2_load(y1 + i)
            acc = acc + g1 * yq
            dacc = dacc + h1 * yq + g1 * ace_v2_load(d1 + i)
            yq = ace_v2_load(y2 + i)
            acc = acc + g2 * yq
            dacc = dacc + h2 * yq + g2 * ace_v2_load(d2 + i)
            yq = ace_v2_load(y3 + i)
            acc = acc + g3 * yq
            dacc = dacc + h3 * yq + g3 * ace_v2_load(d3 + i)
            ace_v2_store(row + i, acc)
            ace_v2_store(drow + i, dacc)


cdef double base_tangent(const Model* m, Work* w, int mu_i, Py_ssize_t n_nb,
                         const double* tangent) noexcept nogil:
    """A, A1 and their tangents DA, DA1 along the pair tangents; returns D(blend).

    neighbour_base and core_and_blend must have run. The neighbours are summed into the
    base-function sums At_klm = sum_j g_k Y_lm and DAt, and A_nlm = sum_k crad_nlk At_klm follows
    once per atom: cheaper than R_nl per neighbour when there are many neighbours, and the same
    sums give the radial-coefficient gradient (crad_gradient) without another neighbour loop.
    """
    cdef Scratch* s = &w.base
    cdef Py_ssize_t jj
    cdef int mu, k, n, l, q, y, nq, bond, nrb, row, a, q0, width, count, b
    cdef int stride = 2 * m.n_ylm
    cdef double t0, t1, t2, rd, c, dblend = 0
    cdef double* A = <double*>s.A
    cdef double* At = w.At
    cdef double* DAt = w.DAt
    cdef double* yv
    cdef double* dyt
    cdef const double* crad
    for k in range(m.n_a1 * stride):
        At[k] = 0
        DAt[k] = 0
    for k in range(m.n_a1):
        s.A1[k] = 0
        w.DA1[k] = 0
    for jj in range(n_nb):
        mu = s.nb_mu[jj]
        if mu < 0:
            continue
        t0 = tangent[3 * jj]
        t1 = tangent[3 * jj + 1]
        t2 = tangent[3 * jj + 2]
        rd = s.rhat[3 * jj] * t0 + s.rhat[3 * jj + 1] * t1 + s.rhat[3 * jj + 2] * t2
        dblend += s.grad[3 * jj] * rd
        bond = mu_i * m.n_elements + mu
        for k in range(m.bond_nradbase[bond]):
            s.A1[mu * m.nradbase + k] += s.g[jj * m.nradbase + k]
            w.hk[jj * m.nradbase + k] = s.dg[jj * m.nradbase + k] * rd
            w.DA1[mu * m.nradbase + k] += w.hk[jj * m.nradbase + k]
        if m.bond_lmax[bond] < 0 or m.bond_nradmax[bond] == 0:
            continue
        yv = w.yv + jj * stride
        dyt = w.dyt + jj * stride
        for q in range(ylm_count(m.bond_lmax[bond])):
            y = jj * m.n_ylm + q
            yv[2 * q] = s.yr[y]
            yv[2 * q + 1] = s.yi[y]
            dyt[2 * q] = s.dyr[3 * y] * t0 + s.dyr[3 * y + 1] * t1 + s.dyr[3 * y + 2] * t2
            dyt[2 * q + 1] = s.dyi[3 * y] * t0 + s.dyi[3 * y + 1] * t1 + s.dyi[3 * y + 2] * t2
    for mu in range(m.n_elements):
        count = 0
        for jj in range(n_nb):
            if s.nb_mu[jj] == mu:
                w.order[count] = jj
                count += 1
        w.present[mu] = count > 0
        bond = mu_i * m.n_elements + mu
        if count == 0 or m.bond_lmax[bond] < 0 or m.bond_nradmax[bond] == 0:
            continue
        nq = ylm_count(m.bond_lmax[bond])
        # four neighbours at a time: one load and store of At, DAt per four updates
        b = 0
        while b + 4 <= count:
            accumulate_sums(m, w, mu, m.bond_nradbase[bond], nq, w.order + b, 4)
            b += 4
        while b < count:
            accumulate_sums(m, w, mu, m.bond_nradbase[bond], nq, w.order + b, 1)
            b += 1
    for k in range(2 * m.n_a):
        A[k] = 0
        w.DA[k] = 0
    for mu in range(m.n_elements):
        if not w.present[mu]:
            continue
        bond = mu_i * m.n_elements + mu
        nrb = m.bond_nradbase[bond]
        for n in range(m.bond_nradmax[bond]):
            for l in range(m.bond_lmax[bond] + 1):
                crad = m.crad + ((bond * m.nradmax + n) * (m.lmax + 1) + l) * m.nradbase
                a = 2 * a_index(m, mu, n, l, 0)
                q0 = 2 * ylm_index(l, 0)
                width = 2 * (l + 1)
                for k in range(nrb):
                    c = crad[k]
                    row = (mu * m.nradbase + k) * stride + q0
                    for q in range(width):
                        A[a + q] += c * At[row + q]
                        w.DA[a + q] += c * DAt[row + q]
    negative_m(m, A, False)
    negative_m(m, w.DA, False)
    return dblend


cdef void crad_gradient(const Model* m, Work* w, int mu_i, double* grad_crad) noexcept nogil:
    """Adds dPsi/dcrad_nlk = sum_m Re(W_nlm At_klm + V_nlm DAt_klm) (W, V folded onto m >= 0)."""
    cdef int mu, n, l, k, q, bond, nrb, a, q0, width, row
    cdef int stride = 2 * m.n_ylm
    cdef double acc
    cdef double* gc
    cdef const double* At = w.At
    cdef const double* DAt = w.DAt
    for mu in range(m.n_elements):
        if not w.present[mu]:
            continue
        bond = mu_i * m.n_elements + mu
        nrb = m.bond_nradbase[bond]
        for n in range(m.bond_nradmax[bond]):
            for l in range(m.bond_lmax[bond] + 1):
                gc = grad_crad + ((bond * m.nradmax + n) * (m.lmax + 1) + l) * m.nradbase
                a = 2 * a_index(m, mu, n, l, 0)
                q0 = 2 * ylm_index(l, 0)
                width = l + 1
                for k in range(nrb):
                    row = (mu * m.nradbase + k) * stride + q0
                    acc = 0
                    for q in range(width):
                        acc = acc + (w.W[a + 2 * q] * At[row + 2 * q]
                                     - w.W[a + 2 * q + 1] * At[row + 2 * q + 1]
                                     + w.V[a + 2 * q] * DAt[row + 2 * q]
                                     - w.V[a + 2 * q + 1] * DAt[row + 2 * q + 1])
                    gc[k] += acc


cdef void forward(const Model* m, Work* w, int mu_i, const int* comb_node,
                  bint tangents) noexcept nogil:
    """Tree products P (and tangents DP) of element mu_i, then B_f (and DB_f) indexed from its
    first function: B_f = sum_combs coef Re P[node of the comb]."""
    cdef const double* P = w.P
    cdef const double* DP = w.DP
    cdef int f, c, k, first = m.func_first[mu_i]
    cdef double coef, b, db
    if tangents:
        tree_forward(m, mu_i, <const double*>w.base.A, w.P, w.DA, w.DP, True, 0, NULL, False)
    else:
        tree_forward(m, mu_i, <const double*>w.base.A, w.P, w.DA, w.DP, False, 0, NULL, False)
    for f in range(first, m.func_first[mu_i + 1]):
        b = 0
        db = 0
        for c in range(m.comb_first[f], m.comb_first[f + 1]):
            coef = m.comb_coef[c * m.n_coef]
            k = comb_node[c]
            if k < 0:  # rank 1
                b += coef * w.base.A1[m.comb_index[c * MAX_RANK]]
                if tangents:
                    db += coef * w.DA1[m.comb_index[c * MAX_RANK]]
            else:
                b += coef * P[2 * k]
                if tangents:
                    db += coef * DP[2 * k]
        w.B[f - first] = b
        w.DB[f - first] = db


cdef void backward(const Model* m, Work* w, int mu_i, const int* comb_node, const double* coefs,
                   int n_dens, bint tangents) noexcept nogil:
    """Reverse pass of Psi = Re sum_nodes (wn P + vn DP), wn = sum_p lam_p drho_p/dP and
    vn = sum_p mu_p drho_p/dP: W += dPsi/dA, V += dPsi/dDA; without tangents W1 += the rank-1
    adjoint (with tangents rank 1 is skipped: it has no radial coefficients). The nodes are
    seeded here (G, H), the product tree's reverse pass does the rest."""
    cdef const double* A = <const double*>w.base.A
    cdef double* G = w.GP
    cdef double* H = w.GDP
    cdef int f, c, k, p
    cdef int first = m.node_first[mu_i], last = m.node_first[mu_i + 1]
    cdef double coef, wc, vc
    for k in range(2 * first, 2 * last):
        G[k] = 0
        H[k] = 0
    for f in range(m.func_first[mu_i], m.func_first[mu_i + 1]):
        wc = 0
        vc = 0
        for p in range(n_dens):
            wc = wc + w.lam[p] * coefs[f * n_dens + p]
            vc = vc + w.mu[p] * coefs[f * n_dens + p]
        for c in range(m.comb_first[f], m.comb_first[f + 1]):
            coef = m.comb_coef[c * m.n_coef]
            k = comb_node[c]
            if k < 0:
                if not tangents:
                    w.W1[m.comb_index[c * MAX_RANK]] += coef * wc
                continue
            G[2 * k] += coef * wc
            H[2 * k] += coef * vc
    if tangents:
        tree_backward(m, mu_i, A, w.P, G, w.W, w.DA, w.DP, H, w.V, True, 0, NULL)
    else:
        tree_backward(m, mu_i, A, w.P, G, w.W, w.DA, w.DP, H, w.V, False, 0, NULL)


cdef void clear_adjoints(const Model* m, Work* w) noexcept nogil:
    cdef int k
    for k in range(2 * m.n_a):
        w.W[k] = 0
        w.V[k] = 0
    for k in range(m.n_a1):
        w.W1[k] = 0


cdef double densities_and_embedding(const Model* m, Work* w, int mu_i, const double* coefs,
                                    int n_dens, double blend, double dblend, double alpha,
                                    bint tangents) noexcept nogil:
    """rho_p (and D rho_p), the embedding, and the adjoint weights lam_p, mu_p; returns F."""
    cdef int f, p, first = m.func_first[mu_i], n_f = m.func_first[mu_i + 1] - first
    cdef int nd = m.ndensity[mu_i]
    cdef double F = 0, Fp, dFp, d2Fp, r0, r1, d0, d1
    cdef const double* c = coefs + first * n_dens
    for p in range(n_dens):
        w.rho[p] = 0
        w.drho[p] = 0
        w.lam[p] = 0
        w.mu[p] = 0
    # sums in registers, two partial sums each: a sum into w.rho[p] would be a chain of
    # dependent loads and stores (the compiler cannot rule out aliasing)
    for p in range(nd):
        r0 = 0
        r1 = 0
        d0 = 0
        d1 = 0
        for f in range(0, n_f - 1, 2):
            r0 = r0 + c[f * n_dens + p] * w.B[f]
            r1 = r1 + c[(f + 1) * n_dens + p] * w.B[f + 1]
            if tangents:
                d0 = d0 + c[f * n_dens + p] * w.DB[f]
                d1 = d1 + c[(f + 1) * n_dens + p] * w.DB[f + 1]
        if n_f % 2:
            r0 = r0 + c[(n_f - 1) * n_dens + p] * w.B[n_f - 1]
            if tangents:
                d0 = d0 + c[(n_f - 1) * n_dens + p] * w.DB[n_f - 1]
        w.rho[p] = r0 + r1
        w.drho[p] = d0 + d1
    for p in range(nd):
        embedding(m.npot[mu_i], m.fs_w[mu_i * n_dens + p], m.fs_m[mu_i * n_dens + p],
                  w.rho[p], &Fp, &dFp, &d2Fp)
        F += Fp
        if tangents:
            w.lam[p] = alpha * blend * dFp + dblend * dFp + blend * d2Fp * w.drho[p]
            w.mu[p] = blend * dFp
        else:
            w.lam[p] = blend * dFp
    return F


cdef double atom_values(const Model* m, Work* w, int mu_i, Py_ssize_t n_nb,
                        const double* vectors, const int* nb_species, const int* comb_node,
                        const double* coefs, int n_dens, double* pair_gradient) noexcept nogil:
    """E_i (without E0) and dE_i/dD_ij per neighbour."""
    cdef Scratch* s = &w.base
    cdef double blend = 1, core, F
    cdef Py_ssize_t jj
    atomic_base(m, s, mu_i, n_nb, vectors, nb_species)
    core = core_and_blend(m, s, mu_i, n_nb, &blend)
    forward(m, w, mu_i, comb_node, False)
    F = densities_and_embedding(m, w, mu_i, coefs, n_dens, blend, 0, 0, False)
    clear_adjoints(m, w)
    backward(m, w, mu_i, comb_node, coefs, n_dens, False)
    negative_m(m, w.W, True)
    for jj in range(n_nb):
        # the blend factor multiplies F: its derivative adds F * d(blend)/dr radially
        s.radial_extra[jj] += F * s.grad[3 * jj]
        neighbour_gradient(m, s, mu_i, jj, w.W, w.W1, pair_gradient + 3 * jj)
    return F * blend + core


cdef void atom_gradient(const Model* m, Work* w, int mu_i, Py_ssize_t n_nb,
                        const double* vectors, const int* nb_species, const int* comb_node,
                        const double* coefs,
                        int n_dens, double alpha, const double* tangent, bint want_crad,
                        double* grad_coefs, double* grad_crad) noexcept nogil:
    """Adds d/dtheta (alpha E_i + D_delta E_i) to grad_coefs [n_funcs, n_dens], grad_crad."""
    cdef Scratch* s = &w.base
    cdef double blend = 1, dblend
    cdef Py_ssize_t jj
    cdef int f, p, first = m.func_first[mu_i], nd = m.ndensity[mu_i]
    for jj in range(n_nb):
        neighbour_base(m, s, mu_i, jj, vectors, nb_species)
    core_and_blend(m, s, mu_i, n_nb, &blend)
    dblend = base_tangent(m, w, mu_i, n_nb, tangent)
    forward(m, w, mu_i, comb_node, True)
    densities_and_embedding(m, w, mu_i, coefs, n_dens, blend, dblend, alpha, True)
    for f in range(first, m.func_first[mu_i + 1]):
        for p in range(nd):
            grad_coefs[f * n_dens + p] += w.lam[p] * w.B[f - first] + w.mu[p] * w.DB[f - first]
    if not want_crad:
        return
    clear_adjoints(m, w)
    backward(m, w, mu_i, comb_node, coefs, n_dens, True)
    negative_m(m, w.W, True)
    negative_m(m, w.V, True)
    crad_gradient(m, w, mu_i, grad_crad)


cdef Model with_parameters(CompiledModel compiled, const double[:, ::1] coefs,
                           const double[::1] crad) except *:
    cdef Model m = compiled.model
    cdef Py_ssize_t n_crad = m.n_elements * m.n_elements * m.nradmax * (m.lmax + 1) * m.nradbase
    if coefs.shape[0] != compiled.n_functions:
        raise ValueError(f"coefs has {coefs.shape[0]} rows, the model {compiled.n_functions} "
                         "functions")
    if crad.shape[0] != n_crad:
        raise ValueError(f"crad has {crad.shape[0]} entries, the model {n_crad}")
    if m.n_coef != 1:
        raise ValueError("the nonlinear-fit kernels take the design form of the model")
    if coefs.shape[1] < 1:
        raise ValueError("coefs needs at least one density column")
    if n_crad:
        m.crad = &crad[0]
    return m


cdef int max_functions(const Model* m) noexcept:
    cdef int mu, best = 0
    for mu in range(m.n_elements):
        best = max(best, m.func_first[mu + 1] - m.func_first[mu])
    return best


def model_values(CompiledModel compiled, const double[:, ::1] coefs, const double[::1] crad,
                 const int[::1] species, const cnp.int64_t[::1] first,
                 const cnp.int64_t[::1] pair_j, const double[:, ::1] vectors, int n_threads):
    """Per-atom energies (without E0) [n] and pair gradients dE_i/dD_ij [n_pairs, 3].

    ``coefs`` [n_funcs, n_dens] (n_dens = the model's largest ndensity), ``crad`` flat
    [n_elements^2 * nradmax * (lmax + 1) * nradbase]."""
    n_pairs = pair_j.shape[0]
    energies = np.zeros(species.shape[0])
    pair_gradient = np.zeros((max(n_pairs, 1), 3))
    run_atoms(compiled, coefs, crad, species, first, pair_j, vectors, n_threads, False,
              energies, pair_gradient, energies, pair_gradient, np.zeros((1, 9)),
              np.zeros(1, np.int64), False, np.zeros((1, 1)))
    return energies, pair_gradient[:n_pairs]


def parameter_gradient(CompiledModel compiled, const double[:, ::1] coefs,
                       const double[::1] crad, const int[::1] species,
                       const cnp.int64_t[::1] first, const cnp.int64_t[::1] pair_j,
                       const double[:, ::1] vectors, const double[::1] alpha,
                       const double[:, ::1] u, const double[:, ::1] U,
                       const cnp.int64_t[::1] group, bint want_crad, int n_threads):
    """d/dtheta sum_i (alpha_i E_i + sum_j delta_ij . dE_i/dD_ij), delta_ij = u_i - u_j
    + D_ij U_(group_i) (u [n_atoms, 3], U [n_groups, 9] row-major 3 x 3, group [n_atoms]):
    (d coefs [n_funcs, n_dens], d crad [flat]); d crad is zero unless ``want_crad``."""
    cdef Py_ssize_t n_atoms = species.shape[0], n_coefs = coefs.shape[0] * coefs.shape[1], k
    if alpha.shape[0] != n_atoms or u.shape[0] != n_atoms or group.shape[0] != n_atoms:
        raise ValueError("alpha, u and group need one entry per atom")
    if u.shape[1] != 3 or U.shape[1] != 9:
        raise ValueError("u has rows of 3 and U rows of 9 (a 3 x 3 matrix)")
    if n_atoms and (np.min(group) < 0 or np.max(group) >= U.shape[0]):
        raise ValueError("group indexes the rows of U")
    blocks = np.zeros((max(1, min(<Py_ssize_t>GRADIENT_BLOCKS, n_atoms)),
                       n_coefs + crad.shape[0] + 1))
    run_atoms(compiled, coefs, crad, species, first, pair_j, vectors, n_threads, True,
              np.zeros(1), np.zeros((1, 3)), alpha, u, U, group, want_crad, blocks)
    total = np.zeros(blocks.shape[1] - 1)
    for k in range(blocks.shape[0]):  # in order: thread-count independent
        total += blocks[k, :-1]
    return total[:n_coefs].reshape(coefs.shape[0], coefs.shape[1]), total[n_coefs:]


cdef void pair_tangents(double* out, Py_ssize_t i, Py_ssize_t n_nb, const cnp.int64_t* pair_j,
                        const double* vectors, const double* u,
                        const double* U) noexcept nogil:
    """out[jj] = u_i - u_j + D_ij U for the n_nb neighbours of atom i."""
    cdef Py_ssize_t jj, j
    cdef int b
    for jj in range(n_nb):
        j = pair_j[jj]
        for b in range(3):
            out[3 * jj + b] = (u[3 * i + b] - u[3 * j + b] + vectors[3 * jj] * U[b]
                               + vectors[3 * jj + 1] * U[3 + b] + vectors[3 * jj + 2] * U[6 + b])


cdef void run_atoms(CompiledModel compiled, const double[:, ::1] coefs, const double[::1] crad,
                    const int[::1] species, const cnp.int64_t[::1] first,
                    const cnp.int64_t[::1] pair_j, const double[:, ::1] vectors, int n_threads,
                    bint gradient, double[::1] energies, double[:, ::1] pair_gradient,
                    const double[::1] alpha, const double[:, ::1] u, const double[:, ::1] U,
                    const cnp.int64_t[::1] group, bint want_crad,
                    double[:, ::1] blocks) except *:
    """Every atom in fixed blocks, OpenMP over the blocks: values (energies, pair_gradient) or
    the gradient (one row of ``blocks`` per block: d coefs then d crad)."""
    cdef Model m = with_parameters(compiled, coefs, crad)
    cdef const int* comb_node = design_tree(compiled)
    cdef Py_ssize_t n_atoms = species.shape[0], n_pairs = pair_j.shape[0], i, blk
    cdef Py_ssize_t n_coefs = coefs.shape[0] * coefs.shape[1]
    cdef Py_ssize_t n_blocks = max(1, min(<Py_ssize_t>GRADIENT_BLOCKS, n_atoms))
    cdef int n_dens = coefs.shape[1], max_nb = max_neighbour_count(first)
    cdef int max_funcs = max_functions(&m), thread
    cdef int[::1] nb_species = (np.asarray(species)[np.asarray(pair_j)].astype(np.int32)
                                if n_pairs else np.zeros(1, np.int32))
    cdef int[::1] failed = np.zeros(max(n_threads, 1), dtype=np.int32)
    cdef Work* works = <Work*>calloc(max(n_threads, 1), sizeof(Work))
    cdef Work* wp
    cdef Py_ssize_t n_nb
    if works == NULL:
        raise MemoryError("could not allocate the nonlinear-fit scratch")
    with nogil, parallel(num_threads=n_threads):
        thread = omp_get_thread_num()
        wp = works + thread
        if work_alloc(wp, &m, max_nb, max_funcs, n_dens):
            failed[thread] = 1
        else:
            for blk in prange(n_blocks, schedule="dynamic"):
                for i in range(blk * n_atoms // n_blocks, (blk + 1) * n_atoms // n_blocks):
                    n_nb = first[i + 1] - first[i]
                    if gradient:
                        if n_nb > 0:
                            pair_tangents(wp.tangent, i, n_nb, &pair_j[first[i]],
                                          &vectors[first[i], 0], &u[0, 0], &U[group[i], 0])
                        atom_gradient(&m, wp, species[i], n_nb,
                                      &vectors[first[i], 0] if n_nb > 0 else NULL,
                                      &nb_species[first[i]] if n_nb > 0 else NULL,
                                      comb_node, &coefs[0, 0], n_dens, alpha[i], wp.tangent,
                                      want_crad, &blocks[blk, 0], &blocks[blk, n_coefs])
                    else:
                        energies[i] = atom_values(
                            &m, wp, species[i], n_nb,
                            &vectors[first[i], 0] if n_nb > 0 else NULL,
                            &nb_species[first[i]] if n_nb > 0 else NULL,
                            comb_node, &coefs[0, 0], n_dens,
                            &pair_gradient[first[i], 0] if n_nb > 0 else NULL)
        work_free(wp)
    free(works)
    if np.any(np.asarray(failed)):
        raise MemoryError("could not allocate the nonlinear-fit scratch")
