# Complex spherical harmonics in PACE's normalisation, as allocation-free nogil inline kernels.
#
#     Ytilde_lm(r) = sqrt(4 pi) Y_lm(r/|r|)   (Condon-Shortley phase; Ytilde_00 = 1,
#     Ytilde_10 = sqrt(3) z/|r|, Ytilde_11 = -sqrt(3/2) (x + i y)/|r|), for 0 <= m <= l only.
# Negative m follow from Ytilde_{l,-m} = (-1)^m conj(Ytilde_lm).
#
# Algorithm (sphericart style; no trigonometric calls and no 1/sin(theta), so it is correct on the
# z axis): with u = r/|r|, Ytilde_lm(u) = q_lm(u_z) (u_x + i u_y)^m, where q_lm is a normalised
# derivative of the Legendre polynomial built by a recursion in l at fixed m. Gradients come from
# the ladder relations of the solid harmonics S_lm(r) = |r|^l Ytilde_lm(u), which are homogeneous
# polynomials of degree l:
#     grad Ytilde_lm(r) = (grad S_lm(u) - l Ytilde_lm(u) u) / |r|,
# where grad S_lm(u) is a combination of Ytilde_{l-1, m-1..m+1}(u). All constants come from
# ylm_tables.h, generated exactly by ace/_core/generate_tables.py.
#
# Layout: value (l, m) at ylm_index(l, m) = l(l+1)/2 + m; gradient component c (0: x, 1: y,
# 2: z) at 3 * ylm_index(l, m) + c. lmax must be <= ACE_YLM_LMAX and r must be nonzero (the
# caller's responsibility: a zero vector gives NaN).
from libc.math cimport sqrt

cdef extern from "ylm_tables.h" nogil:
    enum:
        ACE_YLM_LMAX
        ACE_YLM_COUNT
    # Arrays of ACE_YLM_LMAX + 1 (diag) or ACE_YLM_COUNT entries; see the header.
    const double* ace_ylm_diag
    const double* ace_ylm_rec_a
    const double* ace_ylm_rec_b
    const double* ace_ylm_grad_z
    const double* ace_ylm_grad_plus
    const double* ace_ylm_grad_minus


cdef inline int ylm_count(int lmax) noexcept nogil:
    return (lmax + 1) * (lmax + 2) // 2


cdef inline int ylm_index(int l, int m) noexcept nogil:
    return l * (l + 1) // 2 + m


cdef inline void ylm_only(double x, double y, double z, int lmax,
                          double* yr, double* yi) noexcept nogil:
    cdef double inv_r = 1.0 / sqrt(x * x + y * y + z * z)
    cdef double ux = x * inv_r, uy = y * inv_r, uz = z * inv_r
    # (ux + i uy)^m, advanced by one power per m
    cdef double azimuth_re = 1.0, azimuth_im = 0.0, next_re
    # q_{l,m} and q_{l-1,m} of the polar recursion (q_{m-1,m} = 0: rec_b vanishes at l = m + 1)
    cdef double q_current, q_previous, q_next
    cdef int l, m, index
    for m in range(lmax + 1):
        q_previous = 0.0
        q_current = ace_ylm_diag[m]
        index = ylm_index(m, m)
        yr[index] = q_current * azimuth_re
        yi[index] = q_current * azimuth_im
        for l in range(m + 1, lmax + 1):
            index = ylm_index(l, m)
            q_next = ace_ylm_rec_a[index] * uz * q_current + ace_ylm_rec_b[index] * q_previous
            q_previous = q_current
            q_current = q_next
            yr[index] = q_current * azimuth_re
            yi[index] = q_current * azimuth_im
        next_re = azimuth_re * ux - azimuth_im * uy
        azimuth_im = azimuth_re * uy + azimuth_im * ux
        azimuth_re = next_re


cdef inline void ylm_with_gradient(double x, double y, double z, int lmax,
                                   double* yr, double* yi,
                                   double* dyr, double* dyi) noexcept nogil:
    ylm_only(x, y, z, lmax, yr, yi)
    cdef double inv_r = 1.0 / sqrt(x * x + y * y + z * z)
    cdef double ux = x * inv_r, uy = y * inv_r, uz = z * inv_r
    # Derivatives of the solid harmonic: d/dz, d_plus = d/dx + i d/dy, d_minus = d/dx - i d/dy
    cdef double dz_re, dz_im, plus_re, plus_im, minus_re, minus_im, dx_re, dx_im, dy_re, dy_im
    cdef double lower_re, lower_im
    cdef int l, m, index, lower
    dyr[0] = 0.0
    dyr[1] = 0.0
    dyr[2] = 0.0
    dyi[0] = 0.0
    dyi[1] = 0.0
    dyi[2] = 0.0
    for l in range(1, lmax + 1):
        for m in range(l + 1):
            index = ylm_index(l, m)
            dz_re = dz_im = plus_re = plus_im = minus_re = minus_im = 0.0
            if m <= l - 1:
                lower = ylm_index(l - 1, m)
                dz_re = ace_ylm_grad_z[index] * yr[lower]
                dz_im = ace_ylm_grad_z[index] * yi[lower]
            if m + 1 <= l - 1:
                lower = ylm_index(l - 1, m + 1)
                plus_re = ace_ylm_grad_plus[index] * yr[lower]
                plus_im = ace_ylm_grad_plus[index] * yi[lower]
            if m >= 1:
                lower = ylm_index(l - 1, m - 1)
                lower_re = yr[lower]
                lower_im = yi[lower]
            elif l >= 2:
                # m - 1 = -1 is not stored: Ytilde_{l-1,-1} = -conj(Ytilde_{l-1,1})
                lower = ylm_index(l - 1, 1)
                lower_re = -yr[lower]
                lower_im = yi[lower]
            else:
                lower_re = lower_im = 0.0  # l = 1, m = 0: grad_minus is 0
            minus_re = ace_ylm_grad_minus[index] * lower_re
            minus_im = ace_ylm_grad_minus[index] * lower_im
            # d/dx = (d_plus + d_minus)/2, d/dy = -i (d_plus - d_minus)/2
            dx_re = 0.5 * (plus_re + minus_re)
            dx_im = 0.5 * (plus_im + minus_im)
            dy_re = 0.5 * (plus_im - minus_im)
            dy_im = -0.5 * (plus_re - minus_re)
            # Remove the radial part: the harmonic depends on r/|r| only.
            dyr[3 * index + 0] = (dx_re - l * yr[index] * ux) * inv_r
            dyr[3 * index + 1] = (dy_re - l * yr[index] * uy) * inv_r
            dyr[3 * index + 2] = (dz_re - l * yr[index] * uz) * inv_r
            dyi[3 * index + 0] = (dx_im - l * yi[index] * ux) * inv_r
            dyi[3 * index + 1] = (dy_im - l * yi[index] * uy) * inv_r
            dyi[3 * index + 2] = (dz_im - l * yi[index] * uz) * inv_r
