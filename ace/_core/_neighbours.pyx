# cython: language_level=3
"""Cell-list neighbour search over periodic images, and the pair vectors.

Input positions are already wrapped into the cell along periodic axes (``wrap`` holds the
integer lattice shift that wrapped each atom) and the candidate image shifts are chosen by the
Python wrapper (ace.neighbours), which owns all the geometry checks. Pairs come out sorted by i
with their full lattice shift and D = r[j] - r[i] + shift @ cell computed here, so that no
(n_pairs x 3) @ (3 x 3) product goes through numpy's multi-threaded BLAS (its spinning workers
take a core from the OpenMP kernels on small machines).
"""
import numpy as np
from cython.parallel cimport parallel, prange
from libc.math cimport floor
from libc.stdlib cimport calloc, free, realloc
from libc.string cimport memcpy

from ace._core._openmp cimport omp_get_thread_num

cimport numpy as cnp


cdef struct Search:
    const double* xyz           # [n_binned, 3] image positions sorted by bin
    const cnp.int64_t* entry    # [n_binned] image * n_atoms + atom
    const cnp.int64_t* bin_start  # [n_bins + 1]
    const double* box_lo
    const double* inv_width
    const int* nbins
    Py_ssize_t n_atoms
    int zero_image
    double cutoff2


cdef inline int clamp_bin(double x, double lo, double inv_width, int nbins) noexcept nogil:
    cdef int b = <int>floor((x - lo) * inv_width)
    if b < 0:
        return 0
    if b >= nbins:
        return nbins - 1
    return b


def neighbour_pairs(const double[:, ::1] wrapped, const double[:, ::1] lattice,
                    const cnp.int64_t[:, ::1] image_shifts, double cutoff,
                    const double[:, ::1] positions, const double[:, ::1] cell,
                    const cnp.int64_t[:, ::1] wrap, int n_threads):
    """All pairs (i, j, image) with |w_j + image @ lattice - w_i| < cutoff (w: wrapped positions),
    excluding i == j at image 0.

    Returns first [n_atoms + 1], j [n_pairs], shift [n_pairs, 3] (image + wrap[j] - wrap[i]) and
    vectors [n_pairs, 3] = positions[j] - positions[i] + shift @ cell, pairs of atom i at
    first[i]:first[i+1].
    """
    cdef Py_ssize_t n_atoms = wrapped.shape[0], n_images = image_shifts.shape[0]
    cdef Py_ssize_t n_entries = n_atoms * n_images
    cdef Py_ssize_t a, s, c, e, k, i
    cdef double shift_c
    cdef double[:, ::1] image_positions = np.empty((n_entries, 3))
    for s in range(n_images):
        for c in range(3):
            shift_c = (image_shifts[s, 0] * lattice[0, c] + image_shifts[s, 1] * lattice[1, c]
                       + image_shifts[s, 2] * lattice[2, c])
            for a in range(n_atoms):
                image_positions[s * n_atoms + a, c] = wrapped[a, c] + shift_c

    # Bins of width >= cutoff over the atoms' bounding box; image atoms farther than the cutoff
    # from that box can never be neighbours, the rest are clamped into the edge bins. The
    # entries are counting-sorted by bin (CSR) and copied contiguously, so that the search
    # streams through memory.
    # an empty structure still gets a box of positive width (no division by zero below)
    lo = np.min(wrapped, axis=0) - cutoff if n_atoms else np.full(3, -cutoff)
    hi = np.max(wrapped, axis=0) + cutoff if n_atoms else np.full(3, cutoff)
    cdef double[3] box_lo, box_hi, inv_width
    cdef int[3] nbins
    for c in range(3):
        box_lo[c] = lo[c]
        box_hi[c] = hi[c]
        nbins[c] = max(1, min(int((hi[c] - lo[c]) / cutoff), 200))
        inv_width[c] = nbins[c] / (hi[c] - lo[c])
    cdef Py_ssize_t total_bins = <Py_ssize_t>nbins[0] * nbins[1] * nbins[2]
    cdef cnp.int64_t[::1] bin_start = np.zeros(total_bins + 1, dtype=np.int64)
    cdef cnp.int64_t[::1] entry_bin = np.empty(n_entries, dtype=np.int64)
    cdef Py_ssize_t flat
    with nogil:
        for e in range(n_entries):
            if not (box_lo[0] <= image_positions[e, 0] <= box_hi[0]
                    and box_lo[1] <= image_positions[e, 1] <= box_hi[1]
                    and box_lo[2] <= image_positions[e, 2] <= box_hi[2]):
                entry_bin[e] = -1
                continue
            flat = ((clamp_bin(image_positions[e, 0], box_lo[0], inv_width[0], nbins[0]) * nbins[1]
                     + clamp_bin(image_positions[e, 1], box_lo[1], inv_width[1], nbins[1])) * nbins[2]
                    + clamp_bin(image_positions[e, 2], box_lo[2], inv_width[2], nbins[2]))
            entry_bin[e] = flat
            bin_start[flat + 1] += 1
        for k in range(total_bins):
            bin_start[k + 1] += bin_start[k]
    cdef Py_ssize_t n_binned = bin_start[total_bins]
    cdef double[:, ::1] sorted_xyz = np.empty((max(n_binned, 1), 3))
    cdef cnp.int64_t[::1] sorted_entry = np.empty(max(n_binned, 1), dtype=np.int64)
    cdef cnp.int64_t[::1] fill = np.array(bin_start[:total_bins], dtype=np.int64)
    with nogil:
        for e in range(n_entries):  # ascending e within a bin: the pair order of the old lists
            if entry_bin[e] >= 0:
                k = fill[entry_bin[e]]
                fill[entry_bin[e]] += 1
                sorted_entry[k] = e
                sorted_xyz[k, 0] = image_positions[e, 0]
                sorted_xyz[k, 1] = image_positions[e, 1]
                sorted_xyz[k, 2] = image_positions[e, 2]

    cdef int zero_image = -1
    for s in range(n_images):
        if image_shifts[s, 0] == 0 and image_shifts[s, 1] == 0 and image_shifts[s, 2] == 0:
            zero_image = s
    cdef cnp.int64_t[::1] counts = np.zeros(n_atoms, dtype=np.int64)
    cdef int[3] nb3 = [nbins[0], nbins[1], nbins[2]]
    cdef Search search
    search.xyz = &sorted_xyz[0, 0]
    search.entry = &sorted_entry[0]
    search.bin_start = &bin_start[0]
    search.box_lo = box_lo
    search.inv_width = inv_width
    search.nbins = nb3
    search.n_atoms = n_atoms
    search.zero_image = zero_image
    search.cutoff2 = cutoff * cutoff
    # One search pass: each thread appends the entries of its atoms to its own buffer (grown
    # to the candidate count of the atom's 27 bins before each atom), then the buffers are
    # copied into place; no separate counting pass.
    n_threads = max(1, n_threads)
    cdef cnp.int64_t** buffers = <cnp.int64_t**>calloc(n_threads, sizeof(cnp.int64_t*))
    cdef Py_ssize_t* capacity = <Py_ssize_t*>calloc(n_threads, sizeof(Py_ssize_t))
    cdef Py_ssize_t* used = <Py_ssize_t*>calloc(n_threads, sizeof(Py_ssize_t))
    cdef Py_ssize_t* start_atom = <Py_ssize_t*>calloc(n_threads, sizeof(Py_ssize_t))
    cdef int* failed = <int*>calloc(n_threads, sizeof(int))
    cdef int tid, t
    cdef Py_ssize_t need, grown
    cdef cnp.int64_t* buffer
    if buffers == NULL or capacity == NULL or used == NULL or start_atom == NULL or failed == NULL:
        free(buffers); free(capacity); free(used); free(start_atom); free(failed)
        raise MemoryError("could not allocate the neighbour search buffers")
    for t in range(n_threads):
        start_atom[t] = -1
    with nogil, parallel(num_threads=n_threads):
        tid = omp_get_thread_num()
        for i in prange(n_atoms, schedule="static"):
            if failed[tid]:
                continue
            if start_atom[tid] < 0:
                start_atom[tid] = i
            need = used[tid] + candidate_count(&search, &wrapped[i, 0])
            if need > capacity[tid]:
                grown = max(need, 2 * capacity[tid])
                buffer = <cnp.int64_t*>realloc(buffers[tid], grown * sizeof(cnp.int64_t))
                if buffer == NULL:
                    failed[tid] = 1
                    continue
                buffers[tid] = buffer
                capacity[tid] = grown
            counts[i] = visit_neighbours(&search, i, &wrapped[i, 0], buffers[tid] + used[tid])
            used[tid] = used[tid] + counts[i]
    first_np = np.zeros(n_atoms + 1, dtype=np.int64)
    np.cumsum(counts, out=first_np[1:])
    cdef cnp.int64_t[::1] first = first_np
    cdef Py_ssize_t n_pairs = first_np[n_atoms]
    j_np = np.empty(n_pairs, dtype=np.int64)
    cdef cnp.int64_t[::1] j_out = j_np
    cdef int any_failed = 0
    for t in range(n_threads):
        any_failed = any_failed or failed[t]
        if not failed[t] and used[t] > 0:
            memcpy(&j_out[first[start_atom[t]]], buffers[t], used[t] * sizeof(cnp.int64_t))
        free(buffers[t])
    free(buffers); free(capacity); free(used); free(start_atom); free(failed)
    if any_failed:
        raise MemoryError("could not allocate the neighbour search buffers")
    shift_np = np.empty((n_pairs, 3), dtype=np.int64)
    vectors_np = np.empty((n_pairs, 3))
    cdef cnp.int64_t[:, ::1] shift_out = shift_np
    cdef double[:, ::1] vectors = vectors_np
    cdef Py_ssize_t q, jn, img
    for i in prange(n_atoms, nogil=True, schedule="static", num_threads=n_threads):
        # j_out holds the entry index e = image * n_atoms + j; split it up
        for q in range(first[i], first[i + 1]):
            jn = j_out[q] % n_atoms
            img = j_out[q] // n_atoms
            j_out[q] = jn
            for c in range(3):
                shift_out[q, c] = image_shifts[img, c] + wrap[jn, c] - wrap[i, c]
            pair_vector(&positions[0, 0], &cell[0, 0], i, jn, &shift_out[q, 0], &vectors[q, 0])
    return first_np, j_np, shift_np, vectors_np


def pair_vectors(const double[:, ::1] positions, const double[:, ::1] cell,
                 const cnp.int64_t[::1] first, const cnp.int64_t[::1] j,
                 const cnp.int64_t[:, ::1] shift, double[:, ::1] out, int n_threads):
    """out[q] = positions[j[q]] - positions[i] + shift[q] @ cell for the pairs q of each atom i
    (CSR ``first``); the calculator's update when only positions changed."""
    cdef Py_ssize_t n_atoms = first.shape[0] - 1, i, q
    if j.shape[0] == 0:
        return
    for i in prange(n_atoms, nogil=True, schedule="static", num_threads=n_threads):
        for q in range(first[i], first[i + 1]):
            pair_vector(&positions[0, 0], &cell[0, 0], i, j[q], &shift[q, 0], &out[q, 0])


def shortest_pair(const double[:, ::1] vectors):
    """(index, length) of the shortest pair vector; (-1, inf) without pairs."""
    cdef Py_ssize_t q, best = -1
    cdef double d2, best2 = np.inf
    with nogil:
        for q in range(vectors.shape[0]):
            d2 = vectors[q, 0] * vectors[q, 0] + vectors[q, 1] * vectors[q, 1] + vectors[q, 2] * vectors[q, 2]
            if d2 < best2:
                best2 = d2
                best = q
    return best, float(np.sqrt(best2))


cdef inline void pair_vector(const double* positions, const double* cell, Py_ssize_t i,
                             Py_ssize_t j, const cnp.int64_t* shift, double* out) noexcept nogil:
    cdef int c
    for c in range(3):
        out[c] = (positions[3 * j + c] - positions[3 * i + c]) + (
            shift[0] * cell[c] + shift[1] * cell[3 + c] + shift[2] * cell[6 + c])


cdef Py_ssize_t candidate_count(const Search* s, const double* ri) noexcept nogil:
    """Number of binned entries in the 27 bins around ri (an upper bound of its neighbours)."""
    cdef int bx0 = clamp_bin(ri[0], s.box_lo[0], s.inv_width[0], s.nbins[0])
    cdef int by0 = clamp_bin(ri[1], s.box_lo[1], s.inv_width[1], s.nbins[1])
    cdef int bz0 = clamp_bin(ri[2], s.box_lo[2], s.inv_width[2], s.nbins[2])
    cdef int bx, by
    cdef Py_ssize_t row, total = 0
    for bx in range(max(bx0 - 1, 0), min(bx0 + 2, s.nbins[0])):
        for by in range(max(by0 - 1, 0), min(by0 + 2, s.nbins[1])):
            row = (bx * s.nbins[1] + by) * s.nbins[2]
            total += (s.bin_start[row + min(bz0 + 2, s.nbins[2])]
                      - s.bin_start[row + max(bz0 - 1, 0)])
    return total


cdef Py_ssize_t visit_neighbours(const Search* s, Py_ssize_t i, const double* ri,
                                 cnp.int64_t* entry_out) noexcept nogil:
    """Count (and, given entry_out, write the entries of) the neighbours of atom i."""
    cdef int bx0 = clamp_bin(ri[0], s.box_lo[0], s.inv_width[0], s.nbins[0])
    cdef int by0 = clamp_bin(ri[1], s.box_lo[1], s.inv_width[1], s.nbins[1])
    cdef int bz0 = clamp_bin(ri[2], s.box_lo[2], s.inv_width[2], s.nbins[2])
    cdef int bx, by, bz
    cdef Py_ssize_t k, row, found = 0
    cdef Py_ssize_t self_entry = s.zero_image * s.n_atoms + i
    cdef double dx, dy, dz
    for bx in range(max(bx0 - 1, 0), min(bx0 + 2, s.nbins[0])):
        for by in range(max(by0 - 1, 0), min(by0 + 2, s.nbins[1])):
            # bins along z are contiguous in the CSR order: one range per (bx, by)
            row = (bx * s.nbins[1] + by) * s.nbins[2]
            for k in range(s.bin_start[row + max(bz0 - 1, 0)],
                           s.bin_start[row + min(bz0 + 2, s.nbins[2])]):
                dx = s.xyz[3 * k] - ri[0]
                dy = s.xyz[3 * k + 1] - ri[1]
                dz = s.xyz[3 * k + 2] - ri[2]
                if dx * dx + dy * dy + dz * dz < s.cutoff2 and s.entry[k] != self_entry:
                    if entry_out != NULL:
                        entry_out[found] = s.entry[k]
                    found = found + 1
    return found
