# cython: language_level=3
"""Per-atom projection vectors for the extrapolation grade (OpenMP over atoms, GIL released).

For atom i of element mu the kernel returns, in the columns of its element's functions
(column f - func_first[mu]):
  linear mode:  B_if                      (B-function values, as PACE's "B-projections"; the
                                           design row is s_i B_if, s_i the core blending)
  full mode:    s_i F'_p(rho_ip) B_if     (= dE_i/dc_fp, column (f - func_first[mu]) * nd + p)
with rho_ip = sum_f c_fp B_if. B is evaluated on the design model's product tree: each node
is its parent times one A, and B_f = sum_c coef_c Re(node_c) (rank 1: coef_c A1[k]).
"""
import numpy as np

cimport numpy as cnp
from cython.parallel cimport parallel, prange

from ace._core._evaluator cimport (CompiledModel, Model, Scratch, atomic_base, core_and_blend,
                                   free_thread_scratches, max_neighbour_count, thread_scratches,
                                   MAX_RANK)
from ace._core._openmp cimport omp_get_thread_num
from ace._core._radial cimport embedding


cdef void tree_values(const Model* m, Scratch* s, int mu_i) noexcept nogil:
    """(re, im) of every product-tree node of element mu_i into s.node_value."""
    cdef const double* A = <const double*>s.A
    cdef double* V = s.node_value
    cdef int k, parent, f
    cdef double ar, ai, pr, pi
    for k in range(m.node_first[mu_i], m.node_first[mu_i + 1]):
        f = m.node_factor[k]
        ar = A[2 * f]
        ai = A[2 * f + 1]
        parent = m.node_parent[k]
        if parent < 0:
            V[2 * k] = ar
            V[2 * k + 1] = ai
        else:
            pr = V[2 * parent]
            pi = V[2 * parent + 1]
            V[2 * k] = pr * ar - pi * ai
            V[2 * k + 1] = pr * ai + pi * ar


cdef void function_values(const Model* m, const Scratch* s, int mu_i, const int* comb_node,
                          double* out) noexcept nogil:
    """B_f of the functions of element mu_i (from the node values) into out[f - first]."""
    cdef int f, c, first = m.func_first[mu_i]
    cdef double value
    for f in range(first, m.func_first[mu_i + 1]):
        value = 0
        for c in range(m.comb_first[f], m.comb_first[f + 1]):
            if comb_node[c] < 0:
                value = value + m.comb_coef[c] * s.A1[m.comb_index[c * MAX_RANK]]
            else:
                value = value + m.comb_coef[c] * s.node_value[2 * comb_node[c]]
        out[f - first] = value


def atom_projections(CompiledModel compiled, const int[::1] species,
                     const cnp.int64_t[::1] first, const cnp.int64_t[::1] pair_j,
                     const double[:, ::1] vectors, const double[:, ::1] coefficients,
                     bint full, int n_threads):
    """Projection vectors [n_atoms, width] (see the module doc) on a design-compiled model.

    ``coefficients`` [n_funcs, n_coef] are the fitted coefficients (read in full mode only);
    width = the largest number of functions (times densities in full mode) of an element.
    """
    cdef Model* m = &compiled.model
    if "comb_node" not in compiled._arrays:
        raise ValueError("atom_projections needs a model compiled for the design rows")
    cdef const int[::1] comb_node = compiled._arrays["comb_node"]
    cdef Py_ssize_t n_atoms = species.shape[0], n_pairs = pair_j.shape[0], i
    cdef int max_nb = max_neighbour_count(first)
    cdef int e, f, p, nd, n_f, mu_i, width = 0, max_nd = 1
    cdef int fs_stride = coefficients.shape[1]  # fs_w, fs_m are [n_elements, ndensity_max]
    for e in range(m.n_elements):
        n_f = m.func_first[e + 1] - m.func_first[e]
        width = max(width, n_f * (m.ndensity[e] if full else 1))
        max_nd = max(max_nd, m.ndensity[e])
    if full and fs_stride < max_nd:
        raise ValueError(f"full mode needs coefficients for {max_nd} densities, got {fs_stride}")
    out_np = np.zeros((n_atoms, width))
    cdef double[:, ::1] out = out_np
    cdef int[::1] nb_species = (np.asarray(species)[np.asarray(pair_j)].astype(np.int32)
                                if n_pairs else np.zeros(1, np.int32))
    n_threads = max(1, min(n_threads, max(n_atoms, 1)))
    dfp_np = np.zeros((n_threads, max_nd))  # per thread: blend * F'_p(rho_p)
    cdef double[:, ::1] dfp_all = dfp_np
    cdef double* dfp
    cdef Scratch* scratches = thread_scratches(m, n_threads, max_nb, False)
    cdef Scratch* sp
    cdef double blend, rho, Fp, dFp, d2Fp
    cdef double* row
    cdef Py_ssize_t n_nb
    with nogil, parallel(num_threads=n_threads):
        sp = scratches + omp_get_thread_num()
        dfp = &dfp_all[omp_get_thread_num(), 0]
        for i in prange(n_atoms, schedule="static"):
            n_nb = first[i + 1] - first[i]
            mu_i = species[i]
            atomic_base(m, sp, mu_i, n_nb, &vectors[first[i], 0] if n_nb > 0 else NULL,
                        &nb_species[first[i]] if n_nb > 0 else NULL)
            blend = 1.0  # assigned here so that it is private to the thread
            core_and_blend(m, sp, mu_i, n_nb, &blend)
            tree_values(m, sp, mu_i)
            row = &out[i, 0]
            function_values(m, sp, mu_i, &comb_node[0] if comb_node.shape[0] else NULL, row)
            n_f = m.func_first[mu_i + 1] - m.func_first[mu_i]
            if not full:
                continue
            # full: expand in place from the back, B_f -> blend F'_p(rho_p) B_f at f * nd + p
            nd = m.ndensity[mu_i]
            for p in range(nd):
                rho = 0
                # assigned here so that they are private to the thread: written only through
                # pointers, Cython would share them between threads (a race on dFp)
                Fp = 0
                dFp = 0
                d2Fp = 0
                for f in range(n_f):
                    rho = rho + coefficients[m.func_first[mu_i] + f, p] * row[f]
                embedding(m.npot[mu_i], m.fs_w[mu_i * fs_stride + p],
                          m.fs_m[mu_i * fs_stride + p],
                          rho, &Fp, &dFp, &d2Fp)
                dfp[p] = blend * dFp
            for f in range(n_f - 1, -1, -1):
                for p in range(nd - 1, -1, -1):
                    row[f * nd + p] = dfp[p] * row[f]
    free_thread_scratches(scratches, n_threads)
    return out_np
