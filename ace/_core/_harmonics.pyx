# cython: language_level=3, boundscheck=False, wraparound=False
"""Python access to the spherical-harmonics kernels of _harmonics.pxd (for tests and checks).

Production code cimports ``ylm_with_gradient`` / ``ylm_only`` directly.
"""
import numpy as np

YLM_LMAX = ACE_YLM_LMAX


def spherical_harmonics(vectors, int lmax, bint gradients=False):
    """PACE's Ytilde_lm(r/|r|) = sqrt(4 pi) Y_lm for 0 <= m <= l <= lmax.

    vectors: [n, 3] displacement vectors (any nonzero length).
    Returns Y [n, (lmax+1)(lmax+2)/2] complex, entry (l, m) at l(l+1)/2 + m, and with
    gradients=True also dY [n, count, 3] complex, the Cartesian gradient with respect to r.
    """
    if not 0 <= lmax <= ACE_YLM_LMAX:
        raise ValueError(f"lmax must be between 0 and YLM_LMAX = {ACE_YLM_LMAX}, got {lmax}")
    vectors = np.ascontiguousarray(vectors, dtype=np.float64)
    if vectors.ndim != 2 or vectors.shape[1] != 3:
        raise ValueError(f"vectors must have shape [n, 3], got {vectors.shape}")
    cdef double[:, ::1] points = vectors
    cdef Py_ssize_t n_points = points.shape[0], i
    cdef int count = ylm_count(lmax)
    values_re = np.empty((n_points, count))
    values_im = np.empty((n_points, count))
    n_gradients = n_points if gradients else 0
    grads_re = np.empty((n_gradients, count, 3))
    grads_im = np.empty((n_gradients, count, 3))
    cdef double[:, ::1] yr = values_re, yi = values_im
    cdef double[:, :, ::1] dyr = grads_re, dyi = grads_im
    with nogil:
        for i in range(n_points):
            if gradients:
                ylm_with_gradient(points[i, 0], points[i, 1], points[i, 2], lmax,
                                  &yr[i, 0], &yi[i, 0], &dyr[i, 0, 0], &dyi[i, 0, 0])
            else:
                ylm_only(points[i, 0], points[i, 1], points[i, 2], lmax, &yr[i, 0], &yi[i, 0])
    values = values_re + 1j * values_im
    if not gradients:
        return values
    return values, grads_re + 1j * grads_im
