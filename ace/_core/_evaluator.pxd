# cython: language_level=3
"""Shared declarations of the evaluator core: the compiled model, the per-thread scratch and the
per-atom building blocks, cimported by the other kernels (e.g. the nonlinear-fit gradients)."""
cimport numpy as cnp

cdef enum:
    MAX_RANK = 8

cdef enum:
    INNER_DENSITY = 0
    INNER_DISTANCE = 1
    INNER_ZBL = 2


cdef struct Model:
    int n_elements, nradbase, nradmax, lmax, n_lm, n_ylm, n_a1, n_a, inner_type
    # bonds, indexed mu_i * n_elements + mu_j
    const int* family
    const double* lam
    const double* rcut
    const double* dcut
    const int* bond_nradbase
    const int* bond_nradmax
    const int* bond_lmax
    const double* r_in
    const double* delta_in
    const double* prehc
    const double* lambdahc
    const double* crad          # [n_bonds, nradmax, lmax + 1, nradbase]
    const double* radial_const  # [n_bonds, nradbase, 4] r-independent factors of g_k (SBessel)
    # elements
    const int* npot
    const int* ndensity
    const double* fs_w          # [n_elements, n_coef]
    const double* fs_m
    const double* rho_core_cut
    const double* drho_core_cut
    const double* e0
    const double* atomic_number
    # products: C-tilde functions (energy) or B-functions (design rows)
    const int* func_first       # [n_elements + 1]
    const int* func_rank        # [n_funcs]
    const int* comb_first       # [n_funcs + 1]
    const int* comb_index       # [n_combs, MAX_RANK]: A1 index (rank 1) or A index (any m)
    const double* comb_coef     # [n_combs, n_coef]
    int n_coef
    # product tree (energy model): rank >= 2 products with shared prefixes; per element the
    # inner nodes come first (parents before children), then the leaves
    const int* node_first       # [n_elements + 1]
    const int* node_leaf_first  # [n_elements] first leaf (childless node) of each element
    const int* node_parent      # [n_nodes], -1 at the root
    const int* node_factor      # [n_nodes] A index multiplied in at this node
    const double* node_coef     # [n_nodes, n_coef] (zero for inner nodes)
    const char* node_terminal   # [n_nodes] has a nonzero coefficient
    int n_nodes
    # B-functions (the linear projection vector of the extrapolation grade), on models compiled
    # with them (design rows, or an energy model with projections): element mu's functions are
    # bfunc_first[mu] .. bfunc_first[mu + 1] - 1, B_f = sum_c bcomb_coef[c] Re(P_bcomb_node[c])
    # over c in bcomb_first[f] .. bcomb_first[f + 1] - 1, a rank-1 row (bcomb_node = -1 - k)
    # reading A1[k] instead of a tree node
    const int* bfunc_first      # [n_elements + 1] (all zero without B-functions)
    const int* bcomb_first      # [n_bfuncs + 1]
    const int* bcomb_node       # [n_bcombs]
    const double* bcomb_coef    # [n_bcombs]
    int n_bfuncs


cdef struct Scratch:
    double* g                   # [max_nb, nradbase]   inner-cut radial base
    double* dg
    double* R                   # [max_nb, nradmax * (lmax + 1)]
    double* dR
    double* yr                  # [max_nb, n_ylm]
    double* yi
    double* dyr                 # [max_nb, n_ylm * 3]
    double* dyi
    double* rhat                # [max_nb, 3]
    double* dist                # [max_nb]
    int* nb_mu                  # [max_nb] neighbour species, -1 outside the bond cutoff
    double* radial_extra        # [max_nb] extra dE/dr along rhat (core terms, blending)
    double complex* A           # [n_a]
    double* A1                  # [n_a1]
    double complex* GA          # [n_coef, n_a]   d rho_p / dA
    double* G1                  # [n_coef, n_a1]
    double* rho                 # [n_coef]
    double* dE_drho             # [n_coef]
    double* grad                # [max_nb * 3]  design: per-neighbour gradient of one function
    int* touched                # [n_a + n_a1]  design: indices with nonzero adjoint
    char* mark                  # [n_a + n_a1]
    double* node_value          # [2 * n_nodes] (re, im) of each tree product
    double* node_adjoint        # [2 * n_nodes]
    # design rows only (NULL unless design_scratch_alloc ran; scratch_free frees them)
    double* dA                  # [n_a, 6, max_nb] d(R_nl Y_lm)/dD per neighbour of the
                                #   A entry's species, (re x, y, z, im x, y, z); m >= 0 only
    int* nb_order               # [max_nb] in-cutoff neighbours grouped by species
    int* species_first          # [n_elements + 1] groups in nb_order
    int* a_fold                 # [n_a] 4 * (index at |m|) + 0 (m >= 0), 1 (conj), 3 (-conj)
    int max_nb



cdef class CompiledModel:
    cdef Model model
    cdef object _arrays
    cdef bint _has_projections


cdef inline int a_index(const Model* m, int mu, int n, int l, int mm) noexcept nogil:
    return (mu * m.nradmax + n) * m.n_lm + l * l + l + mm


cdef int scratch_alloc(Scratch* s, const Model* m, int max_neighbours) noexcept nogil
cdef int design_scratch_alloc(Scratch* s, const Model* m, int max_neighbours) noexcept nogil
cdef void scratch_free(Scratch* s) noexcept nogil
cdef Scratch* thread_scratches(const Model* m, int n_threads, int max_neighbours,
                               bint design) except NULL
cdef void free_thread_scratches(Scratch* scratches, int n_threads) noexcept nogil
cdef bint neighbour_base(const Model* m, Scratch* s, int mu_i, Py_ssize_t jj,
                         const double* vectors, const int* nb_species) noexcept nogil
cdef void atomic_base(const Model* m, Scratch* s, int mu_i, Py_ssize_t n_nb,
                      const double* vectors, const int* nb_species) noexcept nogil
cdef void neighbour_gradient(const Model* m, const Scratch* s, int mu_i, Py_ssize_t jj,
                             const double* W, const double* W1, double* out) noexcept nogil
cdef double core_and_blend(const Model* m, Scratch* s, int mu_i, Py_ssize_t n_nb,
                           double* blend) noexcept nogil
cdef const int* design_tree(CompiledModel compiled) except NULL
cdef void expand_full(const Model* m, int mu_i, const double* dfp, double* row) noexcept nogil
cdef int projection_width(const Model* m, bint full) noexcept nogil
cdef void projection_row(const Model* m, int mu_i, const double* node_re, int stride,
                         const double* A1, const double* dfp, bint full,
                         double* row) noexcept nogil
cdef tuple scatter_pair_gradients(const cnp.int64_t[::1] first, const cnp.int64_t[::1] pair_j,
                                  const double[:, ::1] vectors,
                                  const double[:, ::1] pair_gradient, int n_threads)
cdef int max_neighbour_count(const cnp.int64_t[::1] first) noexcept
