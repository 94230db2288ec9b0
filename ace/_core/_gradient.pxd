# cython: language_level=3
"""Forward-mode tangents and reverse passes on the design tree (the nonlinear-fit kernels),
shared with the basis-tangent kernels of _basis_tangents.pyx."""
cimport numpy as cnp

from ace._core._evaluator cimport Model, Scratch


cdef struct Work:
    Scratch base
    double* DA      # [2 n_a] tangent of A, (re, im), all m
    double* DA1     # [n_a1]
    double* W       # [2 n_a] adjoint (complex) of A
    double* V       # [2 n_a] adjoint (complex) of DA
    double* W1      # [n_a1]
    double* B       # [max functions of an element]
    double* DB
    double* rho     # [n_dens]
    double* drho
    double* lam
    double* mu
    double* P       # [2 n_nodes] tree products (re, im)
    double* DP      # [2 n_nodes] their tangents
    double* GP      # [2 n_nodes] adjoint of P
    double* GDP     # [2 n_nodes] adjoint of DP
    # base-function sums At[mu, k, lm] = sum_j g_k Y_lm and their tangents DAt, (re, im), m >= 0
    double* At      # [n_elements * nradbase * 2 n_ylm]
    double* DAt
    double* yv      # [max_nb, 2 n_ylm] Y_lm per neighbour, (re, im)
    double* dyt     # [max_nb, 2 n_ylm] its derivative along the neighbour's tangent
    double* hk      # [max_nb, nradbase] g_k' (rhat . tangent)
    double* tangent # [max_nb, 3] the pair tangents of one atom
    int* order      # [max_nb] the neighbours of one species
    int* present    # [n_elements] the atom has neighbours of this species


cdef int work_alloc(Work* w, const Model* m, int max_nb, int max_funcs, int n_dens) noexcept nogil
cdef void work_free(Work* w) noexcept nogil
cdef double base_tangent(const Model* m, Work* w, int mu_i, Py_ssize_t n_nb,
                         const double* tangent) noexcept nogil
cdef void forward(const Model* m, Work* w, int mu_i, const int* comb_node,
                  bint tangents) noexcept nogil
cdef void backward(const Model* m, Work* w, int mu_i, const int* comb_node, const double* coefs,
                   int n_dens, bint tangents) noexcept nogil
cdef void clear_adjoints(const Model* m, Work* w) noexcept nogil
cdef int max_functions(const Model* m) noexcept
cdef void pair_tangents(double* out, Py_ssize_t i, Py_ssize_t n_nb, const cnp.int64_t* pair_j,
                        const double* vectors, const double* u,
                        const double* U) noexcept nogil
