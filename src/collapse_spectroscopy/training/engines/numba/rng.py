"""The engine's reparameterization noise: xoshiro128** lanes and the Box-Muller transform.

Standard normals by the Box-Muller transform, the same transform ``torch.randn`` uses on
the CPU (24-bit uniforms in float32, 53-bit in float64; ``u1`` in ``(0, 1]``), from
:data:`LANES` interleaved xoshiro128** streams seeded through
:class:`numpy.random.SeedSequence` from the training's noise seed. The distribution is
the torch engines'; the draws are not (another generator). The same seed gives the same
draws.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, types
from numba.extending import overload

from collapse_spectroscopy.training.engines.numba import INLINE
from collapse_spectroscopy.training.engines.numba.vecmath import vlog, vsincos

LANES = 16  # xoshiro128** streams: two AVX2 registers of uint32
_U32 = np.uint32
_F32 = np.float32


@njit(inline="always")
def _rotl(x, k):
    return _U32(_U32(x << _U32(k)) | _U32(x >> _U32(32 - k)))


@njit(inline="always")
def _box_muller(u1, u2, c):
    """Two independent N(0, 1) from ``u1`` in (0, 1] and ``u2`` in [0, 1).

    ``c`` = (1/2, 1, 2, 4, pi/2) in the working dtype (numba would promote untyped
    constants to float64).
    """
    half, one, two, four, quarter = c
    w = u2 * four  # the angle 2 pi u2 = (pi/2) w, w = q + f, q in {0..4}, |f| <= 1/2
    q = np.floor(w + half)
    sn, cs = vsincos((w - q) * quarter)
    rad = math.sqrt(-two * vlog(u1))
    q1, q2, q3 = q == one, q == two, q == one + two
    c = sn if (q1 | q3) else cs  # quarter turns: (cos, sin) -> (-sin, cos)
    s = cs if (q1 | q3) else sn
    c = -c if (q1 | q2) else c
    s = -s if (q2 | q3) else s
    return rad * c, rad * s


@njit(inline="always")
def _xoshiro_word(a0, a1, a2, a3):
    """xoshiro128** on scalars: (output, new a0, a1, a2, a3)."""
    out = _U32(_rotl(_U32(a1 * _U32(5)), 7) * _U32(9))
    t = _U32(a1 << _U32(9))
    a2 = _U32(a2 ^ a0)
    a3 = _U32(a3 ^ a1)
    return out, _U32(a0 ^ a3), _U32(a1 ^ a2), _U32(a2 ^ t), _rotl(a3, 11)


# The uniform generators are one loop over the lanes, each: ``state`` is ``(4, LANES)``,
# lane ``l`` is the generator ``state[:, l]``, and the loop vectorizes with one lane per
# SIMD slot. That needs a run-time lane count (a constant 8 gets unrolled instead), no
# array-taking helper calls (numba's reference counting would stay in the loop) and a
# float output (a uint32 output may alias the state as far as the compiler knows).


@njit(**INLINE)
def _uniforms_f32(state, u, n):
    """``n`` (a multiple of LANES) float32 uniforms in [0, 1), 24 bits each."""
    s0, s1, s2, s3 = state[0], state[1], state[2], state[3]
    lanes = s0.shape[0]
    scale = _F32(2.0**-24)
    for blk in range(n // lanes):
        base = blk * lanes
        for lane in range(lanes):
            w, s0[lane], s1[lane], s2[lane], s3[lane] = _xoshiro_word(
                s0[lane], s1[lane], s2[lane], s3[lane]
            )
            u[base + lane] = _F32(np.int32(w >> _U32(8))) * scale


@njit(**INLINE)
def _uniforms_f64(state, u, n):
    """``n`` (a multiple of LANES) float64 uniforms in [0, 1), 53 bits (two words) each."""
    s0, s1, s2, s3 = state[0], state[1], state[2], state[3]
    lanes = s0.shape[0]
    for blk in range(n // lanes):
        base = blk * lanes
        for lane in range(lanes):
            w1, a0, a1, a2, a3 = _xoshiro_word(s0[lane], s1[lane], s2[lane], s3[lane])
            w2, s0[lane], s1[lane], s2[lane], s3[lane] = _xoshiro_word(a0, a1, a2, a3)
            hi, lo = float(np.int32(w1 >> _U32(5))), float(np.int32(w2 >> _U32(6)))
            u[base + lane] = (hi * 67108864.0 + lo) * 2.0**-53


def _uniforms(state, u, n):
    raise NotImplementedError("jitted only")


@overload(_uniforms, inline="always")
def _ol_uniforms(state, u, n):
    # only the dtype's generator is compiled into the caller
    fill = {types.float32: _uniforms_f32, types.float64: _uniforms_f64}.get(u.dtype)
    if fill is None:
        return None

    def impl(state, u, n):
        fill(state, u, n)

    return impl


@njit(**INLINE)
def _normals_from_uniforms(u, out, n):
    """Box-Muller: ``out[k], out[h + k]`` from ``u[k], u[h + k]``, ``h = n / 2``."""
    h = n // 2
    T = out.dtype.type
    one = T(1)
    c = (T(0.5), one, T(2), T(4), T(math.pi / 2))
    for k in range(h):
        z1, z2 = _box_muller(one - u[k], u[h + k], c)  # 1 - u in (0, 1]: exact
        out[k] = z1
        out[h + k] = z2


@njit(**INLINE)
def normals(state, u, out, n):
    """Fill ``out[:n']`` with N(0, 1), ``n'`` = ``n`` rounded up to ``2 LANES``, using the
    scratch ``u`` (``n'`` values, the dtype of ``out``)."""
    n2 = (n + 2 * LANES - 1) // (2 * LANES) * (2 * LANES)
    _uniforms(state, u, n2)
    _normals_from_uniforms(u, out, n2)


def seed_state(seed: int) -> np.ndarray:
    """Independent xoshiro128** lane states ``(4, LANES)`` uint32 from an integer seed."""
    state = np.random.SeedSequence(int(seed)).generate_state(4 * LANES, dtype=np.uint32)
    state = state.reshape(4, LANES)
    dead = ~state.any(axis=0)  # an all-zero xoshiro state never leaves zero
    state[0, dead] = 1
    return np.ascontiguousarray(state)


def draw_normals(seed: int, n: int, dtype=np.float32) -> np.ndarray:
    """``n`` standard normals from the engine's generator (for tests and inspection)."""
    state = seed_state(seed)
    out = np.empty(n + 2 * LANES, dtype=dtype)
    normals(state, np.empty_like(out), out, n)
    return out[:n]
