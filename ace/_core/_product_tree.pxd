# cython: language_level=3
"""The product (prefix) tree: forward and reverse passes shared by every kernel (docs/kernels.md).

Rank >= 2 products prod_t A_t are stored per central element as a prefix tree: node k is its
parent's product times one A (node_factor[k]); roots have parent -1. Per element the inner
nodes come first (parents before children), then the leaves in runs of siblings, which need
only real parts and load their parent once per run. A holds (re, im) pairs over all m.

Two trees use these passes (ace.evaluator builds both):
- the energy tree (n_dens > 0): nodes carry the C-tilde coefficients c_kp (node_coef); the
  forward pass adds sum_k c_kp Re P_k to rho_p, the reverse pass seeds node k with
  sum_p dE/drho_p c_kp; the leaves are stored only with ``store_leaves`` (the energy pass that
  also gives the B-functions, for the extrapolation grade);
- the design tree (n_dens = 0): the caller contracts the products with its own coefficients
  (comb_node maps each coupling row to its node); the forward pass stores Re P of the leaves,
  the reverse pass takes the caller's seeds in G (and H).
function_values contracts the stored node values into the B-functions (model.bcomb_*), on
either tree.
Optional forward-mode tangents DP = D(prod A) along DA, and their adjoint H, serve the
nonlinear-fit gradient. tree_forward2/tree_backward2 run the energy tree for two atoms of one
element at once, one per SSE2 lane (lanes.h), each lane doing tree_forward's operations in the
same order, so the results are identical bit for bit.

The flags (``tangents``, ``store_leaves``, ``n_dens`` = 0 or not) are constants at each call
site, so that the compiler drops the branches they select.
"""
from ace._core._evaluator cimport Model, a_index


cdef extern from "lanes.h":
    # two doubles in one SSE2 register; Cython treats it as a double and emits the C
    ctypedef double ace_v2
    ace_v2 ace_v2_load(const double* p) noexcept nogil
    void ace_v2_store(double* p, ace_v2 v) noexcept nogil
    ace_v2 ace_v2_set(double lane0, double lane1) noexcept nogil
    ace_v2 ace_v2_splat(double x) noexcept nogil
    double ace_v2_lane(ace_v2 v, int lane) noexcept nogil


cdef inline void negative_m(const Model* m, double* A, bint adjoint) noexcept nogil:
    """A[l, -m] = (-1)^m conj(A[l, m]) on a (re, im) array over all m; with ``adjoint`` its
    transpose, which folds an adjoint G onto m > 0: Re(G_- dA_-) = Re((-1)^m conj(G_-) dA_+),
    and clears G[l, -m]."""
    cdef int mu, n, l, mm, pos, neg
    cdef double sign
    for mu in range(m.n_elements):
        for n in range(m.nradmax):
            for l in range(1, m.lmax + 1):
                for mm in range(1, l + 1):
                    pos = a_index(m, mu, n, l, mm)
                    neg = a_index(m, mu, n, l, -mm)
                    sign = -1.0 if mm % 2 else 1.0
                    if adjoint:
                        A[2 * pos] += sign * A[2 * neg]
                        A[2 * pos + 1] -= sign * A[2 * neg + 1]
                        A[2 * neg] = 0
                        A[2 * neg + 1] = 0
                    else:
                        A[2 * neg] = sign * A[2 * pos]
                        A[2 * neg + 1] = -sign * A[2 * pos + 1]


cdef inline double node_seed(const double* dE_drho, const double* c, int n_dens, double d0,
                             double d1) noexcept nogil:
    """A node's adjoint seed sum_p dE/drho_p c_p; (d0, d1) = dE/drho_0,1 held in registers
    for the common two-density case."""
    cdef double g = 0
    cdef int p
    if n_dens == 2:
        return d0 * c[0] + d1 * c[1]
    for p in range(n_dens):
        g = g + dE_drho[p] * c[p]
    return g


cdef inline void tree_forward(const Model* m, int mu_i, const double* A, double* P,
                              const double* DA, double* DP, bint tangents,
                              int n_dens, double* rho, bint store_leaves) noexcept nogil:
    """Products P_k = P_parent A_factor of element mu_i's nodes (and with ``tangents``
    DP_k = DP_parent A + P_parent DA).

    n_dens > 0 (energy tree): rho[p] += sum_k c_kp Re P_k, the leaves' Re P are stored only with
    ``store_leaves``; the sums run in local variables (rho may alias P for the compiler, which
    would force a load and store per node). n_dens == 0 (design tree): the leaves' Re P (and
    Re DP) are stored.
    """
    cdef const double* C = m.node_coef
    cdef int nc = m.n_coef
    cdef int k, parent, f, p
    cdef int leaf_first = m.node_leaf_first[mu_i], last = m.node_first[mu_i + 1]
    cdef double ar, ai, pr, pi, vr, vi, tr = 0, ti = 0, dr, di, r0 = 0, r1 = 0
    for k in range(m.node_first[mu_i], leaf_first):
        parent = m.node_parent[k]
        f = m.node_factor[k]
        ar = A[2 * f]
        ai = A[2 * f + 1]
        if parent < 0:
            vr = ar
            vi = ai
            if tangents:
                DP[2 * k] = DA[2 * f]
                DP[2 * k + 1] = DA[2 * f + 1]
        else:
            pr = P[2 * parent]
            pi = P[2 * parent + 1]
            vr = pr * ar - pi * ai
            vi = pr * ai + pi * ar
            if tangents:
                tr = DP[2 * parent]
                ti = DP[2 * parent + 1]
                dr = DA[2 * f]
                di = DA[2 * f + 1]
                DP[2 * k] = tr * ar - ti * ai + pr * dr - pi * di
                DP[2 * k + 1] = tr * ai + ti * ar + pr * di + pi * dr
        P[2 * k] = vr
        P[2 * k + 1] = vi
        if n_dens > 0 and m.node_terminal[k]:
            if n_dens == 2:
                r0 = r0 + C[k * nc] * vr
                r1 = r1 + C[k * nc + 1] * vr
            else:
                for p in range(n_dens):
                    rho[p] += C[k * nc + p] * vr
    # leaves come in runs of siblings: the parent's value is loaded once per run (a root leaf
    # multiplies P = 1, DP = 0)
    k = leaf_first
    while k < last:
        parent = m.node_parent[k]
        pr = 1.0
        pi = 0.0
        tr = 0.0
        ti = 0.0
        if parent >= 0:
            pr = P[2 * parent]
            pi = P[2 * parent + 1]
            if tangents:
                tr = DP[2 * parent]
                ti = DP[2 * parent + 1]
        while k < last and m.node_parent[k] == parent:
            f = m.node_factor[k]
            ar = A[2 * f]
            ai = A[2 * f + 1]
            vr = pr * ar - pi * ai
            if tangents:
                DP[2 * k] = tr * ar - ti * ai + pr * DA[2 * f] - pi * DA[2 * f + 1]
            if n_dens > 0:
                if n_dens == 2:
                    r0 = r0 + C[k * nc] * vr
                    r1 = r1 + C[k * nc + 1] * vr
                else:
                    for p in range(n_dens):
                        rho[p] += C[k * nc + p] * vr
            if n_dens == 0 or store_leaves:
                P[2 * k] = vr
            k = k + 1
    if n_dens == 2:
        rho[0] += r0
        rho[1] += r1


cdef inline void function_values(const Model* m, int mu_i, const double* node_re, int stride,
                                 const double* A1, double* out) noexcept nogil:
    """B_f of element mu_i's B-functions into out[f - bfunc_first[mu_i]], from the node
    values of a forward pass that stored its leaves: Re P_k at node_re[stride * k] (stride 2 on
    a node_value array, 4 on one lane of tree_forward2's), and the rank-1 rows from A1."""
    cdef int f, c, node, first = m.bfunc_first[mu_i]
    cdef double value
    for f in range(first, m.bfunc_first[mu_i + 1]):
        value = 0
        for c in range(m.bcomb_first[f], m.bcomb_first[f + 1]):
            node = m.bcomb_node[c]
            if node < 0:
                value = value + m.bcomb_coef[c] * A1[-1 - node]
            else:
                value = value + m.bcomb_coef[c] * node_re[stride * node]
        out[f - first] = value


cdef inline void tree_backward(const Model* m, int mu_i, const double* A, const double* P,
                               double* G, double* W, const double* DA, const double* DP,
                               double* H, double* V, bint tangents, int n_dens,
                               const double* dE_drho) noexcept nogil:
    """Reverse pass of Psi = Re sum_k (G_k P_k + H_k DP_k): W += dPsi/dA (before the
    negative-m fold) and with ``tangents`` V += dPsi/dDA.

    n_dens > 0 (energy tree, no tangents): G_k = sum_p dE_drho[p] c_kp is seeded here.
    n_dens == 0 (design tree): G (and H) hold the caller's seeds, real at the leaves; the inner
    nodes' entries become the full adjoints. Leaves have no children, so their adjoints stay
    real, are read once and never stored complex; a run of siblings sums its share of the
    parent's adjoint in registers (siblings have distinct factors, so the W updates are
    independent).
    """
    cdef const double* C = m.node_coef
    cdef int nc = m.n_coef
    cdef int k, parent, f
    cdef int first = m.node_first[mu_i], last = m.node_first[mu_i + 1]
    cdef int leaf_first = m.node_leaf_first[mu_i]
    cdef double gr, gi, hr = 0, hi = 0, pr, pi, ar, ai, tr = 0, ti = 0, dr, di
    cdef double sgr, sgi, shr, shi
    cdef double d0 = dE_drho[0] if n_dens > 0 else 0.0
    cdef double d1 = dE_drho[1] if n_dens > 1 else 0.0
    if n_dens > 0:
        for k in range(first, leaf_first):
            G[2 * k] = node_seed(dE_drho, C + k * nc, n_dens, d0, d1)
            G[2 * k + 1] = 0
    k = leaf_first
    while k < last:
        parent = m.node_parent[k]
        pr = 1.0
        pi = 0.0
        tr = 0.0
        ti = 0.0
        if parent >= 0:
            pr = P[2 * parent]
            pi = P[2 * parent + 1]
            if tangents:
                tr = DP[2 * parent]
                ti = DP[2 * parent + 1]
        sgr = 0.0
        sgi = 0.0
        shr = 0.0
        shi = 0.0
        while k < last and m.node_parent[k] == parent:
            if n_dens > 0:
                gr = node_seed(dE_drho, C + k * nc, n_dens, d0, d1)
            else:
                gr = G[2 * k]
            f = m.node_factor[k]
            ar = A[2 * f]
            ai = A[2 * f + 1]
            if tangents:
                hr = H[2 * k]
                dr = DA[2 * f]
                di = DA[2 * f + 1]
                W[2 * f] += gr * pr + hr * tr
                W[2 * f + 1] += gr * pi + hr * ti
                V[2 * f] += hr * pr
                V[2 * f + 1] += hr * pi
                sgr = sgr + gr * ar + hr * dr
                sgi = sgi + gr * ai + hr * di
                shr = shr + hr * ar
                shi = shi + hr * ai
            else:
                W[2 * f] += gr * pr
                W[2 * f + 1] += gr * pi
                sgr = sgr + gr * ar
                sgi = sgi + gr * ai
            k = k + 1
        if parent >= 0:
            G[2 * parent] += sgr
            G[2 * parent + 1] += sgi
            if tangents:
                H[2 * parent] += shr
                H[2 * parent + 1] += shi
    for k in range(leaf_first - 1, first - 1, -1):
        gr = G[2 * k]
        gi = G[2 * k + 1]
        if tangents:
            hr = H[2 * k]
            hi = H[2 * k + 1]
        parent = m.node_parent[k]
        f = m.node_factor[k]
        if parent < 0:  # P = A, DP = DA
            W[2 * f] += gr
            W[2 * f + 1] += gi
            if tangents:
                V[2 * f] += hr
                V[2 * f + 1] += hi
            continue
        pr = P[2 * parent]
        pi = P[2 * parent + 1]
        ar = A[2 * f]
        ai = A[2 * f + 1]
        # P = P_parent A
        W[2 * f] += gr * pr - gi * pi
        W[2 * f + 1] += gr * pi + gi * pr
        G[2 * parent] += gr * ar - gi * ai
        G[2 * parent + 1] += gr * ai + gi * ar
        if tangents:
            # DP = DP_parent A + P_parent DA
            tr = DP[2 * parent]
            ti = DP[2 * parent + 1]
            dr = DA[2 * f]
            di = DA[2 * f + 1]
            W[2 * f] += hr * tr - hi * ti
            W[2 * f + 1] += hr * ti + hi * tr
            H[2 * parent] += hr * ar - hi * ai
            H[2 * parent + 1] += hr * ai + hi * ar
            V[2 * f] += hr * pr - hi * pi
            V[2 * f + 1] += hr * pi + hi * pr
            G[2 * parent] += hr * dr - hi * di
            G[2 * parent + 1] += hr * di + hi * dr


cdef inline Py_ssize_t tree_lanes_size(const Model* m) noexcept nogil:
    """Doubles of scratch that tree_forward2/tree_backward2 need: A2, W2 [4 n_a] each, then
    the node values and adjoints V2, G2 [4 n_nodes] each, (re_s, re_t, im_s, im_t) per entry."""
    return 8 * m.n_a + 8 * m.n_nodes + 8


cdef inline Py_ssize_t tree_lanes_values(const Model* m) noexcept nogil:
    """Offset of the node values V2 in tree_forward2's scratch."""
    return 8 * m.n_a


cdef inline ace_v2 node_seed2(const double* s_dE_drho, const double* t_dE_drho, const double* c,
                              int n_dens, ace_v2 d0, ace_v2 d1) noexcept nogil:
    """node_seed of both atoms, in the same order per lane."""
    cdef double g0 = 0, g1 = 0
    cdef int p
    if n_dens == 2:
        return d0 * ace_v2_splat(c[0]) + d1 * ace_v2_splat(c[1])
    for p in range(n_dens):
        g0 = g0 + s_dE_drho[p] * c[p]
        g1 = g1 + t_dE_drho[p] * c[p]
    return ace_v2_set(g0, g1)


cdef inline void tree_forward2(const Model* m, int mu_i, int n_dens, const double* sA,
                               const double* tA, double* s_rho, double* t_rho,
                               double* lanes, bint store_leaves) noexcept nogil:
    """tree_forward of the energy tree for two atoms s, t of element mu_i, s in lane 0 and t in
    lane 1; A and the node values are kept in ``lanes`` (tree_lanes_size) for tree_backward2,
    the leaves' Re P only with ``store_leaves`` (Re P_k of atom s at V2[4 k], of t at
    V2[4 k + 1], V2 = lanes + tree_lanes_values)."""
    cdef double* A2 = lanes
    cdef double* V2 = lanes + tree_lanes_values(m)
    cdef const double* C = m.node_coef
    cdef int nc = m.n_coef
    cdef int k, parent, f, p
    cdef int leaf_first = m.node_leaf_first[mu_i], last = m.node_first[mu_i + 1]
    cdef ace_v2 ar, ai, pr, pi, vr, vi
    cdef ace_v2 r0 = ace_v2_splat(0.0), r1 = ace_v2_splat(0.0)
    for k in range(m.n_a):
        A2[4 * k] = sA[2 * k]
        A2[4 * k + 1] = tA[2 * k]
        A2[4 * k + 2] = sA[2 * k + 1]
        A2[4 * k + 3] = tA[2 * k + 1]
    for k in range(m.node_first[mu_i], leaf_first):
        parent = m.node_parent[k]
        f = m.node_factor[k]
        ar = ace_v2_load(A2 + 4 * f)
        ai = ace_v2_load(A2 + 4 * f + 2)
        if parent < 0:
            vr = ar
            vi = ai
        else:
            pr = ace_v2_load(V2 + 4 * parent)
            pi = ace_v2_load(V2 + 4 * parent + 2)
            vr = pr * ar - pi * ai
            vi = pr * ai + pi * ar
        ace_v2_store(V2 + 4 * k, vr)
        ace_v2_store(V2 + 4 * k + 2, vi)
        if m.node_terminal[k]:
            if n_dens == 2:
                r0 = r0 + ace_v2_splat(C[k * nc]) * vr
                r1 = r1 + ace_v2_splat(C[k * nc + 1]) * vr
            else:
                for p in range(n_dens):
                    s_rho[p] += C[k * nc + p] * ace_v2_lane(vr, 0)
                    t_rho[p] += C[k * nc + p] * ace_v2_lane(vr, 1)
    k = leaf_first
    while k < last:
        parent = m.node_parent[k]
        pr = ace_v2_splat(1.0)
        pi = ace_v2_splat(0.0)
        if parent >= 0:
            pr = ace_v2_load(V2 + 4 * parent)
            pi = ace_v2_load(V2 + 4 * parent + 2)
        while k < last and m.node_parent[k] == parent:
            f = m.node_factor[k]
            vr = pr * ace_v2_load(A2 + 4 * f) - pi * ace_v2_load(A2 + 4 * f + 2)
            if store_leaves:
                ace_v2_store(V2 + 4 * k, vr)
            if n_dens == 2:
                r0 = r0 + ace_v2_splat(C[k * nc]) * vr
                r1 = r1 + ace_v2_splat(C[k * nc + 1]) * vr
            else:
                for p in range(n_dens):
                    s_rho[p] += C[k * nc + p] * ace_v2_lane(vr, 0)
                    t_rho[p] += C[k * nc + p] * ace_v2_lane(vr, 1)
            k = k + 1
    if n_dens == 2:
        s_rho[0] += ace_v2_lane(r0, 0)
        t_rho[0] += ace_v2_lane(r0, 1)
        s_rho[1] += ace_v2_lane(r1, 0)
        t_rho[1] += ace_v2_lane(r1, 1)


cdef inline void tree_backward2(const Model* m, int mu_i, int n_dens, const double* s_dE_drho,
                                const double* t_dE_drho, double* sW, double* tW,
                                double* lanes) noexcept nogil:
    """tree_backward of the energy tree for the two atoms of tree_forward2 (the same
    operations per lane); adds the adjoints to sW and tW."""
    cdef double* A2 = lanes
    cdef double* W2 = lanes + 4 * m.n_a
    cdef double* V2 = lanes + tree_lanes_values(m)
    cdef double* G2 = V2 + 4 * m.n_nodes
    cdef const double* C = m.node_coef
    cdef int nc = m.n_coef
    cdef int k, parent, f
    cdef int first = m.node_first[mu_i], last = m.node_first[mu_i + 1]
    cdef int leaf_first = m.node_leaf_first[mu_i]
    cdef ace_v2 gr, gi, pr, pi, ar, ai, sr, si
    cdef ace_v2 d0 = ace_v2_set(s_dE_drho[0], t_dE_drho[0])
    cdef ace_v2 d1 = ace_v2_set(s_dE_drho[1] if n_dens > 1 else 0.0,
                                t_dE_drho[1] if n_dens > 1 else 0.0)
    for k in range(4 * m.n_a):
        W2[k] = 0
    for k in range(first, leaf_first):
        gr = node_seed2(s_dE_drho, t_dE_drho, C + k * nc, n_dens, d0, d1)
        ace_v2_store(G2 + 4 * k, gr)
        ace_v2_store(G2 + 4 * k + 2, ace_v2_splat(0.0))
    k = leaf_first
    while k < last:
        parent = m.node_parent[k]
        pr = ace_v2_splat(1.0)
        pi = ace_v2_splat(0.0)
        if parent >= 0:
            pr = ace_v2_load(V2 + 4 * parent)
            pi = ace_v2_load(V2 + 4 * parent + 2)
        sr = ace_v2_splat(0.0)
        si = ace_v2_splat(0.0)
        while k < last and m.node_parent[k] == parent:
            gr = node_seed2(s_dE_drho, t_dE_drho, C + k * nc, n_dens, d0, d1)
            f = m.node_factor[k]
            ace_v2_store(W2 + 4 * f, ace_v2_load(W2 + 4 * f) + gr * pr)
            ace_v2_store(W2 + 4 * f + 2, ace_v2_load(W2 + 4 * f + 2) + gr * pi)
            sr = sr + gr * ace_v2_load(A2 + 4 * f)
            si = si + gr * ace_v2_load(A2 + 4 * f + 2)
            k = k + 1
        if parent >= 0:
            ace_v2_store(G2 + 4 * parent, ace_v2_load(G2 + 4 * parent) + sr)
            ace_v2_store(G2 + 4 * parent + 2, ace_v2_load(G2 + 4 * parent + 2) + si)
    for k in range(leaf_first - 1, first - 1, -1):
        gr = ace_v2_load(G2 + 4 * k)
        gi = ace_v2_load(G2 + 4 * k + 2)
        parent = m.node_parent[k]
        f = m.node_factor[k]
        if parent < 0:
            ace_v2_store(W2 + 4 * f, ace_v2_load(W2 + 4 * f) + gr)
            ace_v2_store(W2 + 4 * f + 2, ace_v2_load(W2 + 4 * f + 2) + gi)
            continue
        pr = ace_v2_load(V2 + 4 * parent)
        pi = ace_v2_load(V2 + 4 * parent + 2)
        ace_v2_store(W2 + 4 * f, ace_v2_load(W2 + 4 * f) + (gr * pr - gi * pi))
        ace_v2_store(W2 + 4 * f + 2, ace_v2_load(W2 + 4 * f + 2) + (gr * pi + gi * pr))
        ar = ace_v2_load(A2 + 4 * f)
        ai = ace_v2_load(A2 + 4 * f + 2)
        ace_v2_store(G2 + 4 * parent, ace_v2_load(G2 + 4 * parent) + (gr * ar - gi * ai))
        ace_v2_store(G2 + 4 * parent + 2, ace_v2_load(G2 + 4 * parent + 2) + (gr * ai + gi * ar))
    for k in range(m.n_a):
        sW[2 * k] += W2[4 * k]
        tW[2 * k] += W2[4 * k + 1]
        sW[2 * k + 1] += W2[4 * k + 2]
        tW[2 * k + 1] += W2[4 * k + 3]
