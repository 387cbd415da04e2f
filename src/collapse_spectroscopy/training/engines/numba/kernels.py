"""Register-tiled products over feature-major activations.

Every activation of :mod:`.update` is stored ``(features, batch)``, so every inner loop
runs over the batch (contiguous values) and vectorizes: ``out[j, :] = sum_i a[j, i]
B[i, :]`` (the forward pass, ``dz``) in 2 x 4 tiles, and ``out[j, i] = A_j . B_i`` (the
weight gradients) as 2 x 4 blocks of dot products.
"""

from __future__ import annotations

from numba import njit

from collapse_spectroscopy.training.engines.numba import INLINE


@njit(**INLINE)
def acc_rows(out, a, B, nb):
    """``out[j, :nb] = sum_i a[j, i] B[i, :nb]`` (a: any strides; rows of B, out contiguous)."""
    J, I = a.shape
    j = 0
    while j + 2 <= J:
        o, p = out[j], out[j + 1]
        for q in range(nb):
            o[q] = 0
            p[q] = 0
        i = 0
        while i + 4 <= I:
            a0, a1, a2, a3 = a[j, i], a[j, i + 1], a[j, i + 2], a[j, i + 3]
            c0, c1, c2, c3 = a[j + 1, i], a[j + 1, i + 1], a[j + 1, i + 2], a[j + 1, i + 3]
            b0, b1, b2, b3 = B[i], B[i + 1], B[i + 2], B[i + 3]
            for q in range(nb):
                v0, v1, v2, v3 = b0[q], b1[q], b2[q], b3[q]
                o[q] += (a0 * v0 + a1 * v1) + (a2 * v2 + a3 * v3)
                p[q] += (c0 * v0 + c1 * v1) + (c2 * v2 + c3 * v3)
            i += 4
        while i < I:
            a0, c0, b0 = a[j, i], a[j + 1, i], B[i]
            for q in range(nb):
                o[q] += a0 * b0[q]
                p[q] += c0 * b0[q]
            i += 1
        j += 2
    if j < J:
        o = out[j]
        for q in range(nb):
            o[q] = 0
        for i in range(I):
            a0, b0 = a[j, i], B[i]
            for q in range(nb):
                o[q] += a0 * b0[q]


@njit(**INLINE)
def dots(out, A, B, nb):
    """``out[j, i] = sum_q A[j, q] B[i, q]`` over ``q < nb`` (rows of A, B contiguous)."""
    J, I = out.shape
    zero = out.dtype.type(0)
    j = 0
    while j < J:
        two = j + 2 <= J
        aj = A[j]
        ak = A[j + 1] if two else A[j]
        i = 0
        while i + 4 <= I:
            b0, b1, b2, b3 = B[i], B[i + 1], B[i + 2], B[i + 3]
            s0 = s1 = s2 = s3 = t0 = t1 = t2 = t3 = zero
            for q in range(nb):
                v, w = aj[q], ak[q]
                u0, u1, u2, u3 = b0[q], b1[q], b2[q], b3[q]
                s0 += v * u0
                s1 += v * u1
                s2 += v * u2
                s3 += v * u3
                t0 += w * u0
                t1 += w * u1
                t2 += w * u2
                t3 += w * u3
            out[j, i], out[j, i + 1], out[j, i + 2], out[j, i + 3] = s0, s1, s2, s3
            if two:
                out[j + 1, i], out[j + 1, i + 1] = t0, t1
                out[j + 1, i + 2], out[j + 1, i + 3] = t2, t3
            i += 4
        while i < I:
            b0 = B[i]
            s0 = t0 = zero
            for q in range(nb):
                s0 += aj[q] * b0[q]
                t0 += ak[q] * b0[q]
            out[j, i] = s0
            if two:
                out[j + 1, i] = t0
            i += 1
        j += 2
