"""Vectorizable ``exp``, ``log`` (of positive normals) and ``sin``/``cos`` (of [-pi/4, pi/4]).

Polynomial kernels with a bit-built power of two (:mod:`.intrinsics`), accurate to about
1 ulp in float32 and 1e-16 in float64, that vectorize (libm calls do not). ``exp`` keeps
IEEE behaviour at the edges (``nan`` stays ``nan``, overflow gives ``inf``) so that a
diverging run is still reported. The Python functions are the reference; the jitted
overloads, inlined into their callers, are what the kernels use.
"""

from __future__ import annotations

import math

import numpy as np
from numba import types
from numba.extending import overload

from collapse_spectroscopy.training.engines.numba.intrinsics import (
    frexp1_f32,
    frexp1_f64,
    pow2_f32,
    pow2_f64,
)

_F32 = np.float32
_LN2 = math.log(2.0)
_LN2_HI = 0.693145751953125  # ln 2 split for the range reduction of exp (Cody-Waite)
_LN2_LO = 1.428606820309417232e-06
_LOG2E = 1.4426950408889634
_SQRT2 = math.sqrt(2.0)


def vexp(x):
    """``exp(x)`` (the jitted overloads below are what the kernels use)."""
    return math.exp(x)


def vlog(x):
    """``log(x)`` for a positive normal ``x``."""
    return math.log(x)


def vsincos(r):
    """``(sin r, cos r)`` for ``|r| <= pi/4``."""
    return math.sin(r), math.cos(r)


@overload(vexp, inline="always")
def _ol_vexp(x):
    # exp(x) = 2**n exp(r), n = round(x / ln 2), |r| <= ln2 / 2, exp(r) by its Taylor
    # polynomial (degree 7 in float32, 13 in float64: truncation < 0.1 ulp).
    if x == types.float32:
        c = tuple(_F32(1 / math.factorial(k)) for k in range(8))
        c0, c1, c2, c3, c4, c5, c6, c7 = c
        lo, hi, big = _F32(-87.0), _F32(88.0), _F32(88.72283)
        l2e, lhi, llo = _F32(_LOG2E), _F32(_LN2_HI), _F32(_LN2_LO)
        half, zero, inf = _F32(0.5), _F32(0.0), _F32(np.inf)

        def impl(x):
            xc = min(max(x, lo), hi)
            n = np.floor(xc * l2e + half)
            r = (xc - n * lhi) - n * llo
            p = c7
            p = p * r + c6
            p = p * r + c5
            p = p * r + c4
            p = p * r + c3
            p = p * r + c2
            p = p * r + c1
            p = p * r + c0
            y = p * pow2_f32(n)
            y = inf if x > big else y
            y = zero if x < lo else y
            return x if x != x else y

        return impl
    if x == types.float64:
        c = tuple(1 / math.factorial(k) for k in range(14))
        c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13 = c
        lo, hi, big = -708.0, 709.0, 709.782712893384

        def impl(x):
            xc = min(max(x, lo), hi)
            n = np.floor(xc * _LOG2E + 0.5)
            r = (xc - n * _LN2_HI) - n * _LN2_LO
            p = c13
            p = p * r + c12
            p = p * r + c11
            p = p * r + c10
            p = p * r + c9
            p = p * r + c8
            p = p * r + c7
            p = p * r + c6
            p = p * r + c5
            p = p * r + c4
            p = p * r + c3
            p = p * r + c2
            p = p * r + c1
            p = p * r + c0
            y = p * pow2_f64(n)
            y = np.inf if x > big else y
            y = 0.0 if x < lo else y
            return x if x != x else y

        return impl
    return None


@overload(vlog, inline="always")
def _ol_vlog(x):
    # log x = e ln2 + 2 atanh(s), s = (m - 1) / (m + 1), m in [1/sqrt2, sqrt2], |s| < 0.172;
    # atanh by its odd series (to s**9 in float32, s**21 in float64).
    if x == types.float32:
        ln2, sq2, one, half, two = _F32(_LN2), _F32(_SQRT2), _F32(1), _F32(0.5), _F32(2)
        k3, k5, k7, k9 = (_F32(1 / k) for k in (3, 5, 7, 9))

        def impl(x):
            e, m = frexp1_f32(x)
            big = m > sq2
            m = m * half if big else m
            e = e + one if big else e
            s = (m - one) / (m + one)
            s2 = s * s
            p = ((k9 * s2 + k7) * s2 + k5) * s2 + k3
            return e * ln2 + two * s * (one + s2 * p)

        return impl
    if x == types.float64:
        k3, k5, k7, k9, k11, k13, k15, k17, k19, k21 = (1 / k for k in range(3, 22, 2))

        def impl(x):
            e, m = frexp1_f64(x)
            big = m > _SQRT2
            m = m * 0.5 if big else m
            e = e + 1.0 if big else e
            s = (m - 1.0) / (m + 1.0)
            s2 = s * s
            p = k21
            p = p * s2 + k19
            p = p * s2 + k17
            p = p * s2 + k15
            p = p * s2 + k13
            p = p * s2 + k11
            p = p * s2 + k9
            p = p * s2 + k7
            p = p * s2 + k5
            p = p * s2 + k3
            return e * _LN2 + 2.0 * s * (1.0 + s2 * p)

        return impl
    return None


@overload(vsincos, inline="always")
def _ol_vsincos(r):
    # Taylor polynomials on [-pi/4, pi/4] (to r**10 in float32, r**18 in float64)
    if r == types.float32:
        s3, s5, s7, s9 = (_F32((-1) ** k / math.factorial(2 * k + 1)) for k in range(1, 5))
        c2, c4, c6, c8, c10 = (_F32((-1) ** k / math.factorial(2 * k)) for k in range(1, 6))
        one = _F32(1)

        def impl(r):
            r2 = r * r
            s = r + r * r2 * (s3 + r2 * (s5 + r2 * (s7 + r2 * s9)))
            c = one + r2 * (c2 + r2 * (c4 + r2 * (c6 + r2 * (c8 + r2 * c10))))
            return s, c

        return impl
    if r == types.float64:
        s3, s5, s7, s9, s11, s13, s15, s17 = (
            (-1) ** k / math.factorial(2 * k + 1) for k in range(1, 9)
        )
        c2, c4, c6, c8, c10, c12, c14, c16, c18 = (
            (-1) ** k / math.factorial(2 * k) for k in range(1, 10)
        )

        def impl(r):
            r2 = r * r
            ps = s17
            ps = ps * r2 + s15
            ps = ps * r2 + s13
            ps = ps * r2 + s11
            ps = ps * r2 + s9
            ps = ps * r2 + s7
            ps = ps * r2 + s5
            ps = ps * r2 + s3
            pc = c18
            pc = pc * r2 + c16
            pc = pc * r2 + c14
            pc = pc * r2 + c12
            pc = pc * r2 + c10
            pc = pc * r2 + c8
            pc = pc * r2 + c6
            pc = pc * r2 + c4
            pc = pc * r2 + c2
            return r + r * r2 * ps, 1.0 + r2 * pc

        return impl
    return None
