# cython: language_level=3
"""Cell-list neighbour search over periodic images.

Input positions are already wrapped into the cell along periodic axes and the candidate image
shifts are chosen by the Python wrapper (ace.neighbours), which owns all the geometry checks.
Pairs come out sorted by i; the shift returned is the image shift only (the wrapper adds the
wrapping shifts back).
"""
import numpy as np
from cython.parallel cimport prange
from libc.math cimport floor

cimport numpy as cnp


cdef inline int clamp_bin(double x, double lo, double inv_width, int nbins) noexcept nogil:
    cdef int b = <int>floor((x - lo) * inv_width)
    if b < 0:
        return 0
    if b >= nbins:
        return nbins - 1
    return b


def neighbour_pairs(const double[:, ::1] positions, const double[:, ::1] cell,
                    const cnp.int64_t[:, ::1] image_shifts, double cutoff, int n_threads):
    """All pairs (i, j, image) with |r_j + image @ cell - r_i| < cutoff, excluding i == j at image 0.

    Returns (first [n_atoms + 1], j [n_pairs], image_index [n_pairs]) with pairs of atom i at
    first[i]:first[i+1].
    """
    cdef Py_ssize_t n_atoms = positions.shape[0], n_images = image_shifts.shape[0]
    cdef Py_ssize_t n_entries = n_atoms * n_images
    cdef double[:, ::1] image_positions = np.empty((n_entries, 3))
    cdef Py_ssize_t a, s, c, e
    cdef double shift_c
    for s in range(n_images):
        for c in range(3):
            shift_c = (image_shifts[s, 0] * cell[0, c] + image_shifts[s, 1] * cell[1, c]
                       + image_shifts[s, 2] * cell[2, c])
            for a in range(n_atoms):
                image_positions[s * n_atoms + a, c] = positions[a, c] + shift_c

    # Bins of width >= cutoff over the atoms' bounding box; image atoms farther than the cutoff
    # from that box can never be neighbours, the rest are clamped into the edge bins.
    lo = np.min(positions, axis=0) - cutoff if n_atoms else np.zeros(3)
    hi = np.max(positions, axis=0) + cutoff if n_atoms else np.zeros(3)
    cdef double[3] box_lo, inv_width
    cdef int[3] nbins
    for c in range(3):
        box_lo[c] = lo[c]
        nbins[c] = max(1, min(int((hi[c] - lo[c]) / cutoff), 200))
        inv_width[c] = nbins[c] / (hi[c] - lo[c])
    cdef Py_ssize_t total_bins = <Py_ssize_t>nbins[0] * nbins[1] * nbins[2]
    cdef cnp.int64_t[::1] bin_head = np.full(total_bins, -1, dtype=np.int64)
    cdef cnp.int64_t[::1] next_entry = np.full(n_entries, -1, dtype=np.int64)
    cdef int bx, by, bz
    cdef Py_ssize_t flat
    for e in range(n_entries):
        if not (lo[0] <= image_positions[e, 0] <= hi[0] and lo[1] <= image_positions[e, 1] <= hi[1]
                and lo[2] <= image_positions[e, 2] <= hi[2]):
            continue
        bx = clamp_bin(image_positions[e, 0], box_lo[0], inv_width[0], nbins[0])
        by = clamp_bin(image_positions[e, 1], box_lo[1], inv_width[1], nbins[1])
        bz = clamp_bin(image_positions[e, 2], box_lo[2], inv_width[2], nbins[2])
        flat = (bx * nbins[1] + by) * nbins[2] + bz
        next_entry[e] = bin_head[flat]
        bin_head[flat] = e

    cdef cnp.int64_t[::1] counts = np.zeros(n_atoms, dtype=np.int64)
    cdef Py_ssize_t i
    cdef int zero_image = -1
    for s in range(n_images):
        if image_shifts[s, 0] == 0 and image_shifts[s, 1] == 0 and image_shifts[s, 2] == 0:
            zero_image = s
    cdef int[3] nb3 = [nbins[0], nbins[1], nbins[2]]
    for i in prange(n_atoms, nogil=True, schedule="static", num_threads=n_threads):
        counts[i] = visit_neighbours(i, positions, image_positions, bin_head, next_entry, box_lo,
                                     inv_width, nb3, n_atoms, zero_image, cutoff * cutoff,
                                     NULL, NULL)
    first_np = np.zeros(n_atoms + 1, dtype=np.int64)
    np.cumsum(counts, out=first_np[1:])
    cdef cnp.int64_t[::1] first = first_np
    cdef Py_ssize_t n_pairs = first_np[n_atoms]
    j_np = np.empty(n_pairs, dtype=np.int64)
    image_np = np.empty(n_pairs, dtype=np.int64)
    cdef cnp.int64_t[::1] j_out = j_np, image_out = image_np
    for i in prange(n_atoms, nogil=True, schedule="static", num_threads=n_threads):
        visit_neighbours(i, positions, image_positions, bin_head, next_entry, box_lo, inv_width,
                         nb3, n_atoms, zero_image, cutoff * cutoff,
                         &j_out[first[i]] if n_pairs > 0 else NULL,
                         &image_out[first[i]] if n_pairs > 0 else NULL)
    return first_np, j_np, image_np


cdef Py_ssize_t visit_neighbours(Py_ssize_t i, const double[:, ::1] positions,
                                 const double[:, ::1] image_positions,
                                 const cnp.int64_t[::1] bin_head, const cnp.int64_t[::1] next_entry,
                                 double* box_lo, double* inv_width, int* nbins, Py_ssize_t n_atoms,
                                 int zero_image, double cutoff2,
                                 cnp.int64_t* j_out, cnp.int64_t* image_out) noexcept nogil:
    """Count (and, given output pointers, write) the neighbours of atom i."""
    cdef int bx0 = clamp_bin(positions[i, 0], box_lo[0], inv_width[0], nbins[0])
    cdef int by0 = clamp_bin(positions[i, 1], box_lo[1], inv_width[1], nbins[1])
    cdef int bz0 = clamp_bin(positions[i, 2], box_lo[2], inv_width[2], nbins[2])
    cdef int bx, by, bz
    cdef Py_ssize_t e, found = 0
    cdef double dx, dy, dz
    for bx in range(max(bx0 - 1, 0), min(bx0 + 2, nbins[0])):
        for by in range(max(by0 - 1, 0), min(by0 + 2, nbins[1])):
            for bz in range(max(bz0 - 1, 0), min(bz0 + 2, nbins[2])):
                e = bin_head[(bx * nbins[1] + by) * nbins[2] + bz]
                while e >= 0:
                    dx = image_positions[e, 0] - positions[i, 0]
                    dy = image_positions[e, 1] - positions[i, 1]
                    dz = image_positions[e, 2] - positions[i, 2]
                    if dx * dx + dy * dy + dz * dz < cutoff2 and not (
                            e % n_atoms == i and e // n_atoms == zero_image):
                        if j_out != NULL:
                            j_out[found] = e % n_atoms
                            image_out[found] = e // n_atoms
                        found = found + 1
                    e = next_entry[e]
    return found
