# cython: language_level=3
"""A linear ACE basis as a descriptor: per-atom B-functions, their tangents along a displacement,
and the forces of a per-atom weighted sum of them (OpenMP over atoms, GIL released).

For atom i of element mu, column f - func_first[mu] holds function f (as atom_projections in
linear mode). B is the raw B-function, without the core-repulsion blending of a potential:
  tangents:  T_if = sum_j delta_ij . dB_if/dD_ij,   delta_ij = g_j - g_i + D D_ij
             (D_ij = r_j - r_i + shift, the pair vector; g a displacement per atom, D a strain)
  weighted:  E_W = sum_i sum_f W_if B_if  with its per-atom values, forces -dE_W/dr and the
             strain derivative sum_ij D_ij (x) dE_W/dD_ij (ace.evaluator's convention).
The tangents run the design tree forward with tangents (the nonlinear-fit kernels' forward
pass, _gradient.pxd), the weighted forces its reverse pass seeded with W, then the evaluator's
per-neighbour gradient and pair scatter.
"""
import numpy as np

cimport numpy as cnp
from cython.parallel cimport parallel, prange
from libc.stdlib cimport calloc, free

from ace._core._evaluator cimport (CompiledModel, Model, atomic_base, design_tree,
                                   max_neighbour_count, neighbour_base, neighbour_gradient,
                                   scatter_pair_gradients)
from ace._core._gradient cimport (Work, backward, base_tangent, clear_adjoints, forward,
                                  max_functions, pair_tangents, work_alloc, work_free)
from ace._core._openmp cimport omp_get_thread_num
from ace._core._product_tree cimport negative_m


cdef Model design_model(CompiledModel compiled) except *:
    if "comb_node" not in compiled._arrays or compiled.model.n_coef != 1:
        raise ValueError("the basis kernels need a model compiled for the design rows "
                         "(ace.evaluator.compile_model(potential, design=True))")
    return compiled.model


cdef int row_width(const Model* m) noexcept:
    """Columns of a per-atom row: the largest number of functions of an element."""
    return max(max_functions(m), 1)


cdef Work* thread_works(const Model* m, int n_threads, int max_nb) except NULL:
    cdef Work* works = <Work*>calloc(n_threads, sizeof(Work))
    cdef int t, failed = works == NULL
    if not failed:
        for t in range(n_threads):
            if work_alloc(works + t, m, max_nb, row_width(m), 1):
                failed = 1
    if failed:
        free_works(works, n_threads)
        raise MemoryError(f"could not allocate the basis-kernel scratch ({n_threads} threads, "
                          f"{max_nb} neighbours)")
    return works


cdef void free_works(Work* works, int n_threads) noexcept nogil:
    cdef int t
    if works == NULL:
        return
    for t in range(n_threads):
        work_free(works + t)
    free(works)


def basis_tangents(CompiledModel compiled, const int[::1] species, const cnp.int64_t[::1] first,
                   const cnp.int64_t[::1] pair_j, const double[:, ::1] vectors,
                   const double[:, ::1] displacement, const double[:, ::1] strain,
                   int n_threads):
    """(B, T), each [n_atoms, width]: the B-functions of each atom and their tangents
    T_if = sum_j delta_ij . dB_if/dD_ij, delta_ij = g_j - g_i + D @ D_ij (g = displacement
    [n_atoms, 3], D = strain [3, 3])."""
    cdef Model m = design_model(compiled)
    cdef const int* comb_node = design_tree(compiled)
    cdef Py_ssize_t n_atoms = species.shape[0], n_pairs = pair_j.shape[0], i, jj, n_nb
    cdef int width = row_width(&m), max_nb = max_neighbour_count(first), mu_i, f, n_f
    if displacement.shape[0] != n_atoms or displacement.shape[1] != 3:
        raise ValueError(f"the displacement must be [{n_atoms}, 3], got "
                         f"({displacement.shape[0]}, {displacement.shape[1]})")
    if strain.shape[0] != 3 or strain.shape[1] != 3:
        raise ValueError(f"the strain must be [3, 3], got ({strain.shape[0]}, {strain.shape[1]})")
    # pair_tangents gives u_i - u_j + D_ij U (D_ij a row): u = -g and U = D^T
    u_np = -np.asarray(displacement)
    U_np = np.ascontiguousarray(np.asarray(strain).T).reshape(9)
    cdef const double[:, ::1] u = u_np
    cdef const double[::1] U = U_np
    b_np = np.zeros((n_atoms, width))
    t_np = np.zeros((n_atoms, width))
    cdef double[:, ::1] b_out = b_np
    cdef double[:, ::1] t_out = t_np
    cdef int[::1] nb_species = (np.asarray(species)[np.asarray(pair_j)].astype(np.int32)
                                if n_pairs else np.zeros(1, np.int32))
    n_threads = max(1, min(n_threads, max(n_atoms, 1)))
    cdef Work* works = thread_works(&m, n_threads, max_nb)
    cdef Work* wp
    with nogil, parallel(num_threads=n_threads):
        wp = works + omp_get_thread_num()
        for i in prange(n_atoms, schedule="dynamic", chunksize=4):
            n_nb = first[i + 1] - first[i]
            mu_i = species[i]
            if n_nb > 0:
                for jj in range(n_nb):
                    neighbour_base(&m, &wp.base, mu_i, jj, &vectors[first[i], 0],
                                   &nb_species[first[i]])
                pair_tangents(wp.tangent, i, n_nb, &pair_j[first[i]], &vectors[first[i], 0],
                              &u[0, 0], &U[0])
            # the blend tangent it returns is not used: B carries no core blending
            base_tangent(&m, wp, mu_i, n_nb, wp.tangent)
            forward(&m, wp, mu_i, comb_node, True)
            n_f = m.func_first[mu_i + 1] - m.func_first[mu_i]
            for f in range(n_f):
                b_out[i, f] = wp.B[f]
                t_out[i, f] = wp.DB[f]
    free_works(works, n_threads)
    return b_np, t_np


def weighted_forces(CompiledModel compiled, const int[::1] species, const cnp.int64_t[::1] first,
                    const cnp.int64_t[::1] pair_j, const double[:, ::1] vectors,
                    const double[:, ::1] weights, int n_threads):
    """E_W = sum_if W_if B_if: (per-atom values sum_f W_if B_if [n_atoms], forces -dE_W/dr
    [n_atoms, 3], strain derivative sum_ij D_ij (x) dE_W/dD_ij [3, 3]); W = weights
    [n_atoms, width] in the columns of basis_tangents."""
    cdef Model m = design_model(compiled)
    cdef const int* comb_node = design_tree(compiled)
    cdef Py_ssize_t n_atoms = species.shape[0], n_pairs = pair_j.shape[0], i, jj, n_nb
    cdef int width = row_width(&m), max_nb = max_neighbour_count(first), mu_i, f, n_f
    cdef double value
    if weights.shape[0] != n_atoms or weights.shape[1] < width:
        raise ValueError(f"the weights must be [{n_atoms}, {width}], got "
                         f"({weights.shape[0]}, {weights.shape[1]})")
    values_np = np.zeros(n_atoms)
    pair_gradient_np = np.zeros((n_pairs, 3))
    cdef double[::1] values = values_np
    cdef double[:, ::1] pair_gradient = pair_gradient_np
    cdef int[::1] nb_species = (np.asarray(species)[np.asarray(pair_j)].astype(np.int32)
                                if n_pairs else np.zeros(1, np.int32))
    n_threads = max(1, min(n_threads, max(n_atoms, 1)))
    cdef Work* works = thread_works(&m, n_threads, max_nb)
    cdef Work* wp
    with nogil, parallel(num_threads=n_threads):
        wp = works + omp_get_thread_num()
        for i in prange(n_atoms, schedule="dynamic", chunksize=4):
            n_nb = first[i + 1] - first[i]
            mu_i = species[i]
            atomic_base(&m, &wp.base, mu_i, n_nb, &vectors[first[i], 0] if n_nb > 0 else NULL,
                        &nb_species[first[i]] if n_nb > 0 else NULL)
            forward(&m, wp, mu_i, comb_node, False)
            n_f = m.func_first[mu_i + 1] - m.func_first[mu_i]
            value = 0  # assigned here so that it is private to the thread
            for f in range(n_f):
                value = value + weights[i, f] * wp.B[f]
            values[i] = value
            # the reverse pass reads weights[f * n_dens + p] from the element's first function
            wp.lam[0] = 1.0
            wp.mu[0] = 0.0
            clear_adjoints(&m, wp)
            backward(&m, wp, mu_i, comb_node, &weights[i, 0] - m.func_first[mu_i], 1, False)
            negative_m(&m, wp.W, True)
            for jj in range(n_nb):
                # atomic_base left radial_extra = 0: no core terms in a descriptor
                neighbour_gradient(&m, &wp.base, mu_i, jj, wp.W, wp.W1,
                                   &pair_gradient[first[i] + jj, 0])
    free_works(works, n_threads)
    forces, strain = scatter_pair_gradients(first, pair_j, vectors, pair_gradient, n_threads)
    return values_np, forces, strain
