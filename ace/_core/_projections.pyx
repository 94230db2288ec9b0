# cython: language_level=3
"""Per-atom projection vectors for the extrapolation grade (OpenMP over atoms, GIL released),
without energies and forces: the kernel that builds active sets. (The calculator gets the same
vectors from its energy pass, ``energy_forces(..., projections=...)``.)

For atom i of element mu the kernel returns, in the columns of its element's functions
(column f - bfunc_first[mu]):
  linear mode:  B_if                      (B-function values, as PACE's "B-projections"; the
                                           design row is s_i B_if, s_i the core blending)
  full mode:    s_i F'_p(rho_ip) B_if     (= dE_i/dc_fp, column (f - bfunc_first[mu]) * nd + p)
with rho_ip = sum_f c_fp B_if. B is evaluated on the design model's product tree
(tree_forward, then function_values: B_f = sum_c coef_c Re(node_c), rank 1: coef_c A1[k]).
"""
import numpy as np

cimport numpy as cnp
from cython.parallel cimport parallel, prange

from ace._core._evaluator cimport (CompiledModel, Model, Scratch, atomic_base, core_and_blend,
                                   expand_full, free_thread_scratches, max_neighbour_count,
                                   projection_row, projection_width, thread_scratches)
from ace._core._openmp cimport omp_get_thread_num
from ace._core._product_tree cimport function_values, tree_forward
from ace._core._radial cimport embedding


def atom_projections(CompiledModel compiled, const int[::1] species,
                     const cnp.int64_t[::1] first, const cnp.int64_t[::1] pair_j,
                     const double[:, ::1] vectors, const double[:, ::1] coefficients,
                     bint full, int n_threads):
    """Projection vectors [n_atoms, width] (see the module doc) on a model compiled with the
    B-functions (its tree's products are all the kernel uses).

    ``coefficients`` [n_funcs, n_coef] are the fitted coefficients (read in full mode only);
    width = the largest number of functions (times densities in full mode) of an element.
    """
    cdef Model* m = &compiled.model
    if not compiled.has_projections:
        raise ValueError("atom_projections needs a model compiled with the B-functions (the "
                         "design model, or an energy model with projections)")
    cdef Py_ssize_t n_atoms = species.shape[0], n_pairs = pair_j.shape[0], i
    cdef int max_nb = max_neighbour_count(first)
    cdef int e, f, p, nd, n_f, mu_i, width = projection_width(m, full), max_nd = 1
    cdef int fs_stride = coefficients.shape[1]  # fs_w, fs_m are [n_elements, ndensity_max]
    for e in range(m.n_elements):
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
            tree_forward(m, mu_i, <const double*>sp.A, sp.node_value, NULL, NULL, False, 0,
                         NULL, False)
            row = &out[i, 0]
            if not full:
                projection_row(m, mu_i, sp.node_value, 2, sp.A1, NULL, False, row)
                continue
            # full: rho_p from the B-functions and the fitted coefficients, then the expansion
            function_values(m, mu_i, sp.node_value, 2, sp.A1, row)
            n_f = m.bfunc_first[mu_i + 1] - m.bfunc_first[mu_i]
            nd = m.ndensity[mu_i]
            for p in range(nd):
                rho = 0
                # assigned here so that they are private to the thread: written only through
                # pointers, Cython would share them between threads (a race on dFp)
                Fp = 0
                dFp = 0
                d2Fp = 0
                for f in range(n_f):
                    rho = rho + coefficients[m.bfunc_first[mu_i] + f, p] * row[f]
                embedding(m.npot[mu_i], m.fs_w[mu_i * fs_stride + p],
                          m.fs_m[mu_i * fs_stride + p],
                          rho, &Fp, &dFp, &d2Fp)
                dfp[p] = blend * dFp
            expand_full(m, mu_i, dfp, row)
    free_thread_scratches(scratches, n_threads)
    return out_np
