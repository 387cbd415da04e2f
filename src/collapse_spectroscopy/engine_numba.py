"""The ``numba`` training engine: a whole validation window of Adam updates in one call.

Same algorithm as the torch engines of :mod:`.engines` (docs/science.md §1, §5): minibatch Adam on
``L = D + beta R`` with the hand-written gradients given there, on the same batches (the
training loop hands over the rows of each batch, drawn from the same seeded permutation
stream). What makes it fast on one CPU core is that the per-update overhead is gone:

- **One compiled call per validation window.** :meth:`NumbaEngine.run_window` runs all
  ``eval_every`` updates of a window inside one jitted function; Python is entered once
  per window, not once per update or per operation. Each batch is gathered from the rows
  of the training array into a small feature-major buffer, and the next batch's rows are
  prefetched into the cache while the current update runs (the rows are random, so on
  WorldClim-sized data the gather would otherwise wait on memory).
- **Feature-major activations.** Every activation is stored as ``(features, batch)``
  (``x1T``, ``hT = [mu; logs2]``, ``zT``, ``GT``), so every inner loop runs over the
  batch (256 contiguous values) and vectorizes. The products are register-tiled loops:
  ``out[j, :] = sum_i a[j, i] B[i, :]`` (forward, ``dz``) in 2 x 4 tiles and
  ``out[j, i] = B_j . C_i`` (weight gradients) as 2 x 4 blocks of dot products.
- **Fused passes, in place.** One pass draws ``s = exp(logs2 / 2)`` and ``z`` and the rate,
  one forms the residual, its gradient and the decoder-bias gradient, one forms
  ``[dmu; dlogs2]`` over the forward buffers; no temporaries are allocated per update.
- **Fused Adam** over the one flat parameter buffer (the layout of
  :class:`.engines.FastEngine`: ``E = [A a; B b]`` then ``[W c]``), with the formula of
  ``torch.optim.Adam`` (``m`` by lerp, ``denom = sqrt(v) / sqrt(bc2) + eps``).
- **Vectorized elementary functions.** ``exp`` (for ``s``) and the ``log``/``sin``/``cos``
  of the noise are polynomial kernels with a bit-built power of two, accurate to about
  1 ulp in float32 and 1e-16 in float64, that vectorize (libm calls do not); ``exp``
  keeps IEEE behaviour at the edges (``nan`` stays ``nan``, overflow gives ``inf``) so a
  diverging run is still reported.

**Noise.** By default the engine draws the reparameterization noise itself: standard
normals by the Box-Muller transform, the same transform ``torch.randn`` uses on the CPU
(24-bit uniforms in float32, 53-bit in float64; ``u1`` in ``(0, 1]``), from sixteen
interleaved xoshiro128** streams seeded through :class:`numpy.random.SeedSequence` from the
training loop's noise seed. The distribution is the same as the torch engines'; the draws
are not (they come from a different generator). The same seed gives bit-identical weights.
For tests, ``noise=`` passes the noise in explicitly (``(rows, K)`` like ``torch.randn``),
and then the updates follow the torch engines on the same batches and noise.

**Validation.** :meth:`NumbaEngine.expected_loss` gives the loss of
:func:`.model.expected_loss` (averaged exactly over the noise) from the validation split's
second moments, computed once per run in float64: only ``sum_x exp(logs2(x))`` needs a
pass over the samples. At WorldClim sizes a torch validation pass costs as much as a
whole window of updates; this one costs a tenth of that.

The engine runs on the CPU only, single-threaded (no BLAS, no numba threading), and
compiles on first use (cached on disk: ``cache=True``). A fresh compile and a cache load
run the same machine code (the helpers are inlined into the entry points, see ``_INL``),
so a run's result does not depend on the state of the cache.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from .engines import ADAM_BETAS, ADAM_EPS
from .errors import InputError
from .model import LinearVAE

# No 'nnan'/'ninf' (non-finite losses must survive) and no 'arcp'/'afn' (no approximate
# division or library functions); 'reassoc' lets the reductions vectorize (without it the
# engine runs at a third of the speed), at a price: the rounding then depends on the exact
# machine code, which is why every helper is inlined (below).
_FM = {"contract", "reassoc", "nsz"}
_JIT = dict(cache=True, fastmath=_FM, error_model="numpy", boundscheck=False, nogil=True)
# Helpers of the two compiled entry points (_run_window, _variance_sums) are inlined into
# them, so that each entry point is one self-contained function and the code that runs is
# the code that is cached. Called, not inlined, numba links a copy of the callee into the
# caller as a weak symbol, and which copy runs depends on what the process loaded first:
# right after a compile, the callee's own library (loaded first); from the on-disk cache,
# the copy inside the caller. The two copies are optimized separately and, with
# 'reassoc', round differently: the first training after a cold cache differed from all
# later ones by ~1e-8 (issue 9; tests/test_engine_numba.py clears a cache to check).
# Inlined: the same speed, a first compile of ~8 s instead of ~4 s (once per cache).
_INL = dict(_JIT, inline="always")

LANES = 16  # xoshiro128** streams: two AVX2 registers of uint32
_U32 = np.uint32
_F32 = np.float32
_LN2 = math.log(2.0)
_LN2_HI = 0.693145751953125  # ln 2 split for the range reduction of exp (Cody-Waite)
_LN2_LO = 1.428606820309417232e-06
_LOG2E = 1.4426950408889634
_SQRT2 = math.sqrt(2.0)


# ---------------------------------------------------------------------------------------
# bit-level helpers (LLVM bitcasts, which vectorize; numba has no scalar bit views)


@intrinsic
def _pow2_f32(typingctx, n):
    """``2**n`` for an integral float32 ``n`` in [-126, 127]."""
    if n != types.float32:
        return None

    def codegen(context, builder, sig, args):
        i32 = ir.IntType(32)
        i = builder.fptosi(args[0], i32)
        i = builder.shl(builder.add(i, ir.Constant(i32, 127)), ir.Constant(i32, 23))
        return builder.bitcast(i, ir.FloatType())

    return types.float32(types.float32), codegen


@intrinsic
def _pow2_f64(typingctx, n):
    """``2**n`` for an integral float64 ``n`` in [-1022, 1023]."""
    if n != types.float64:
        return None

    def codegen(context, builder, sig, args):
        i64 = ir.IntType(64)
        i = builder.fptosi(args[0], i64)
        i = builder.shl(builder.add(i, ir.Constant(i64, 1023)), ir.Constant(i64, 52))
        return builder.bitcast(i, ir.DoubleType())

    return types.float64(types.float64), codegen


def _frexp_codegen(nbits, nmant, bias, ftype):
    def codegen(context, builder, sig, args):
        it = ir.IntType(nbits)
        b = builder.bitcast(args[0], it)
        e = builder.sub(builder.lshr(b, ir.Constant(it, nmant)), ir.Constant(it, bias))
        m = builder.and_(b, ir.Constant(it, (1 << nmant) - 1))
        m = builder.or_(m, ir.Constant(it, bias << nmant))
        ef, mf = builder.sitofp(e, ftype), builder.bitcast(m, ftype)
        return context.make_tuple(builder, sig.return_type, [ef, mf])

    return codegen


@intrinsic
def _frexp1_f32(typingctx, x):
    """``(e, m)`` with ``x = m 2**e``, ``m`` in [1, 2), for a positive normal float32."""
    if x != types.float32:
        return None
    sig = types.UniTuple(types.float32, 2)(types.float32)
    return sig, _frexp_codegen(32, 23, 127, ir.FloatType())


@intrinsic
def _frexp1_f64(typingctx, x):
    """``(e, m)`` with ``x = m 2**e``, ``m`` in [1, 2), for a positive normal float64."""
    if x != types.float64:
        return None
    sig = types.UniTuple(types.float64, 2)(types.float64)
    return sig, _frexp_codegen(64, 52, 1023, ir.DoubleType())


@intrinsic
def _prefetch(typingctx, arr, row, col):
    """Hint the cache (L2) to fetch ``arr[row, col]``; no effect on results."""
    if not (isinstance(arr, types.Array) and arr.ndim == 2):
        return None

    def codegen(context, builder, sig, args):
        aryty = sig.args[0]
        ary = context.make_array(aryty)(context, builder, value=args[0])
        ptr = cgutils.get_item_pointer(
            context, builder, aryty, ary, [args[1], args[2]], wraparound=False
        )
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [cgutils.voidptr_t, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        hint = [ir.Constant(i32, 0), ir.Constant(i32, 2), ir.Constant(i32, 1)]  # read, L2
        builder.call(fn, [builder.bitcast(ptr, cgutils.voidptr_t), *hint])
        return context.get_dummy_value()

    return types.none(arr, types.intp, types.intp), codegen


# ---------------------------------------------------------------------------------------
# vectorizable exp, log (of (0, 1]) and sin/cos (of [-pi/4, pi/4]), per dtype


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
            y = p * _pow2_f32(n)
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
            y = p * _pow2_f64(n)
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
            e, m = _frexp1_f32(x)
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
            e, m = _frexp1_f64(x)
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


# ---------------------------------------------------------------------------------------
# noise: xoshiro128** lanes and the Box-Muller transform


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


@njit(**_INL)
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


@njit(**_INL)
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


@njit(**_INL)
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


@njit(**_INL)
def _normals(state, u, out, n):
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
    _normals(state, np.empty_like(out), out, n)
    return out[:n]


# ---------------------------------------------------------------------------------------
# products (register-tiled loops over the batch, which is the contiguous axis)


@njit(**_INL)
def _acc_rows(out, a, B, nb):
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


@njit(**_INL)
def _dots(out, A, B, nb):
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


# ---------------------------------------------------------------------------------------
# one update and a window of updates


@njit(**_INL)
def _update(p, g, m, v, t, hyper, d, K, x1T, hT, zT, eT, GT, nb):
    """One Adam update on the batch in ``x1T[:, :nb]`` with noise ``eT[:, :nb]``.

    Returns the batch loss. ``hyper`` = (beta, sigma2, lr, beta1, beta2, eps).
    """
    T = p.dtype.type
    beta, sigma2, lr, b1, b2, aeps = hyper[0], hyper[1], hyper[2], hyper[3], hyper[4], hyper[5]
    d1 = d + 1
    nE = 2 * K * d1
    # (the [:, :n] slices type every operand as a strided array: one compiled product each)
    E = p[:nE].reshape((2 * K, d1))[:, :d1]
    Wc = p[nE:].reshape((d, K + 1))
    W = Wc[:, :K]
    gE = g[:nE].reshape((2 * K, d1))[:, :d1]
    gWc = g[nE:].reshape((d, K + 1))
    half, one = T(0.5), T(1)
    inv_n = T(1.0 / nb)
    bn = T(beta / nb)

    # encoder: hT = [mu; logs2] = E [x; 1]
    _acc_rows(hT, E, x1T, nb)
    # reparameterize: s = exp(logs2/2), z = mu + s eps; rate terms; keep s and s eps
    kl = T(0)
    for j in range(K):
        mu, ls, e, z = hT[j], hT[K + j], eT[j], zT[j]
        for q in range(nb):
            lq = ls[q]
            s = vexp(half * lq)
            es = e[q] * s
            mq = mu[q]
            z[q] = mq + es
            kl += (mq * mq + s * s) - lq
            ls[q] = s
            e[q] = es
    # decoder and residual: G = (W z + c - x) / (sigma2 nb); dc = sum_b G
    _acc_rows(GT, W, zT, nb)
    scale = T(1.0 / (sigma2 * nb))
    sse = T(0)
    for i in range(d):
        gr, xr = GT[i], x1T[i]
        ci = Wc[i, K]
        gc = T(0)
        for q in range(nb):
            r = gr[q] + ci - xr[q]
            sse += r * r
            gq = r * scale
            gr[q] = gq
            gc += gq
        gWc[i, K] = gc
    loss = (sse / T(2.0 * sigma2) + T(0.5 * beta) * (kl - T(nb * K))) * inv_n
    # decoder weights: dW = G^T z (before zT is reused for dz)
    _dots(gWc[:, :K], GT, zT, nb)
    # dz = G W, into zT
    _acc_rows(zT, W.T, GT, nb)
    # [dmu; dlogs2] over hT: dmu = dz + beta mu / n, dlogs2 = dz eps s / 2 + beta (s^2-1)/(2n)
    hb = half * bn
    for j in range(K):
        mu, s_, es, dz = hT[j], hT[K + j], eT[j], zT[j]
        for q in range(nb):
            dzq = dz[q]
            sq = s_[q]
            mu[q] = dzq + bn * mu[q]
            s_[q] = half * dzq * es[q] + hb * (sq * sq - one)
    # encoder weights and biases: d[A a; B b] = [dmu; dlogs2] [x; 1]^T
    _dots(gE, hT, x1T, nb)
    # Adam (the formula of torch.optim.Adam, amsgrad off, no weight decay)
    bc1 = 1.0 - b1**t
    bc2s = math.sqrt(1.0 - b2**t)
    step = T(lr / bc1)
    inv_bc2s = T(1.0 / bc2s)
    w1, w2, c2, ae = T(1.0 - b1), T(1.0 - b2), T(b2), T(aeps)
    for k in range(p.shape[0]):
        gk = g[k]
        mk = m[k]
        mk = mk + w1 * (gk - mk)
        vk = c2 * v[k] + w2 * gk * gk
        m[k] = mk
        v[k] = vk
        p[k] -= step * mk / (math.sqrt(vk) * inv_bc2s + ae)
    return loss


@njit(**_JIT)
def _run_window(
    X, rows, sizes, p, g, m, v, t0, hyper, d, K, x1T, hT, zT, ebuf, GT, state, ubuf, noise, losses
):
    """Run ``len(sizes)`` updates; batch ``u`` is ``X[rows[start_u : start_u + sizes[u]]]``.

    ``noise`` is empty (draw from ``state``) or ``(len(rows), K)``: the noise row of each
    sample, as ``torch.randn(n_b, K)`` gives it. Writes the per-update losses.
    """
    start = 0
    explicit = noise.shape[0] > 0
    for u in range(sizes.shape[0]):
        nb = sizes[u]
        # the next batch's rows are random rows of X: ask for them now, so that they are in
        # the cache when this update is done (both ends of each row: it may span two lines)
        if u + 1 < sizes.shape[0]:
            for q in range(start + nb, start + nb + sizes[u + 1]):
                _prefetch(X, rows[q], 0)
                _prefetch(X, rows[q], d - 1)
        for q in range(nb):
            xr = X[rows[start + q]]
            for i in range(d):
                x1T[i, q] = xr[i]
        for q in range(nb):
            x1T[d, q] = 1
        eT = ebuf[: K * nb].reshape((K, nb))
        if explicit:
            for q in range(nb):
                nr = noise[start + q]
                for j in range(K):
                    eT[j, q] = nr[j]
        else:
            _normals(state, ubuf, ebuf, K * nb)
        losses[u] = _update(p, g, m, v, t0 + u + 1, hyper, d, K, x1T, hT, zT, eT, GT, nb)
        start += nb


VAL_CHUNK = 256


@njit(**_JIT)
def _variance_sums(chunks, counts, p, d, K, ls):
    """``v_j = sum_x exp(logs2_j(x))`` (float64) over a prepared validation set.

    ``chunks`` is ``(n_chunks, d + 1, VAL_CHUNK)``: feature-major ``[x; 1]`` blocks,
    ``counts`` the samples in each; ``ls`` a ``(K, VAL_CHUNK)`` scratch.
    """
    d1 = d + 1
    B1 = p[K * d1 : 2 * K * d1].reshape((K, d1))[:, :d1]  # [B b]
    v = np.zeros(K)
    for c in range(chunks.shape[0]):
        nb = counts[c]
        _acc_rows(ls, B1, chunks[c], nb)
        for j in range(K):
            lj = ls[j]
            vj = lj.dtype.type(0)
            for q in range(nb):
                vj += vexp(lj[q])
            v[j] += vj
    return v


class ValidationSet:
    """A validation split prepared for :meth:`NumbaEngine.expected_loss`: its second
    moments ``S = sum_x [x; 1] [x; 1]^T`` (float64, exact products of the data) and the
    data in feature-major blocks. Made once per training run."""

    def __init__(self, x: np.ndarray, dtype):
        x = np.asarray(x)
        n, d = x.shape
        x1 = np.ones((n, d + 1))
        x1[:, :d] = x
        self.S = x1.T @ x1
        self.n = n
        nc = -(-n // VAL_CHUNK)
        blocks = np.zeros((nc * VAL_CHUNK, d + 1), dtype=dtype)
        blocks[:n] = x1
        self.chunks = np.ascontiguousarray(blocks.reshape(nc, VAL_CHUNK, d + 1).transpose(0, 2, 1))
        self.counts = np.full(nc, VAL_CHUNK, dtype=np.int64)
        self.counts[-1] = n - (nc - 1) * VAL_CHUNK


class NumbaEngine:
    """Jitted engine: a window of updates per call (see the module docstring).

    The interface of :class:`.engines.FastEngine` (``step``, ``sync_model``,
    ``state_dict``, ``load_state_dict``), plus what the training loop uses instead of
    ``step``: :meth:`seed_noise`, :meth:`run_window`, :meth:`prepare_validation` and
    :meth:`expected_loss`. Parameters and Adam moments are numpy arrays in the flat layout
    of ``FastEngine``; ``state_dict`` adds the noise generator's state.
    """

    name = "numba"

    def __init__(self, model: LinearVAE, beta: float, sigma2: float, lr: float):
        w = model.enc_mean.weight
        if w.device.type != "cpu":
            raise InputError(
                f"training.engine = 'numba' runs on the CPU, but the model is on {w.device}: "
                "set training.device to 'cpu' or use the 'fast' engine on a GPU"
            )
        self.model, self.beta, self.sigma2, self.lr = model, float(beta), float(sigma2), lr
        self.K, self.d = K, d = model.latents, model.d
        self.dtype = {torch.float32: np.float32, torch.float64: np.float64}[w.dtype]
        nE, nW = 2 * K * (d + 1), d * (K + 1)
        self.p = np.zeros(nE + nW, dtype=self.dtype)
        self.g = np.zeros_like(self.p)
        self.m = np.zeros_like(self.p)
        self.v = np.zeros_like(self.p)
        self.t = 0
        self._p_t = torch.from_numpy(self.p)  # shares memory
        E = self._p_t[:nE].view(2 * K, d + 1)
        Wc = self._p_t[nE:].view(d, K + 1)
        with torch.no_grad():
            E[:K, :d] = model.enc_mean.weight
            E[:K, d] = model.enc_mean.bias
            E[K:, :d] = model.enc_logvar.weight
            E[K:, d] = model.enc_logvar.bias
            Wc[:, :K] = model.dec.weight
            Wc[:, K] = model.dec.bias
        self._E, self._Wc = E, Wc
        self.hyper = np.array([beta, sigma2, lr, *ADAM_BETAS, ADAM_EPS], dtype=np.float64)
        self.state = seed_state(0)
        self._nb_max = 0
        self._no_noise = np.zeros((0, K), dtype=self.dtype)

    def seed_noise(self, seed: int) -> None:
        """Seed the engine's own noise generator (the training loop's noise stream)."""
        self.state = seed_state(seed)

    def _workspace(self, nb_max: int) -> None:
        if nb_max > self._nb_max:
            K, d, dt = self.K, self.d, self.dtype
            self.x1T = np.empty((d + 1, nb_max), dtype=dt)
            self.hT = np.empty((2 * K, nb_max), dtype=dt)
            self.zT = np.empty((K, nb_max), dtype=dt)
            self.GT = np.empty((d, nb_max), dtype=dt)
            nblk = 2 * LANES
            self.ebuf = np.empty(-(-K * nb_max // nblk) * nblk, dtype=dt)
            self.ubuf = np.empty_like(self.ebuf)
            self._nb_max = nb_max

    def run_window(
        self, x: np.ndarray, rows: np.ndarray, sizes: np.ndarray, noise: np.ndarray | None = None
    ) -> np.ndarray:
        """Run ``len(sizes)`` updates; update ``u`` uses rows ``rows[start_u:start_u+sizes[u]]``
        of ``x`` (contiguous ``(n, d)`` array of this engine's dtype).

        ``noise`` (optional, ``(len(rows), K)``): explicit reparameterization noise, one
        row per sample; by default the engine draws it. Returns the per-update batch losses
        (non-finite values are returned, not raised: the loop reports them).
        """
        x = np.ascontiguousarray(x, dtype=self.dtype)
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        sizes = np.ascontiguousarray(sizes, dtype=np.int64)
        if sizes.size and (sizes.min() < 1 or sizes.sum() != rows.size):
            raise ValueError("run_window: sizes must be >= 1 and sum to len(rows)")
        if rows.size and (rows.min() < 0 or rows.max() >= x.shape[0]):
            raise IndexError("run_window: a row index is outside the data")
        if noise is None:
            noise = self._no_noise
        else:
            noise = np.ascontiguousarray(noise, dtype=self.dtype)
            if noise.shape != (rows.size, self.K):
                raise ValueError(f"run_window: noise must be {(rows.size, self.K)}")
        self._workspace(int(sizes.max()) if sizes.size else 1)
        losses = np.empty(sizes.size, dtype=self.dtype)
        work = (self.x1T, self.hT, self.zT, self.ebuf, self.GT, self.state, self.ubuf)
        adam = (self.p, self.g, self.m, self.v, self.t, self.hyper)
        _run_window(x, rows, sizes, *adam, self.d, self.K, *work, noise, losses)
        self.t += int(sizes.size)
        return losses

    def prepare_validation(self, x: np.ndarray) -> ValidationSet:
        """Prepare a validation split once for repeated :meth:`expected_loss` calls."""
        return ValidationSet(x, self.dtype)

    def expected_loss(self, val: ValidationSet | np.ndarray) -> tuple[float, float, float]:
        """``(L, D, R)`` averaged exactly over the noise on a validation set (the loss of
        :func:`.model.expected_loss`; ``val`` from :meth:`prepare_validation`, or an array).

        The terms quadratic in ``x`` (the residual of the posterior mean, ``mu^2``,
        ``logs2``) come from the set's second moments in float64; only
        ``sum_x exp(logs2_j(x))`` needs a pass over the samples (jitted). Same value as the
        per-sample formula; more accurate than it in float32.
        """
        if not isinstance(val, ValidationSet):
            val = self.prepare_validation(val)
        K, d = self.K, self.d
        if not hasattr(self, "_ls"):
            self._ls = np.empty((K, VAL_CHUNK), dtype=self.dtype)
        v = _variance_sums(val.chunks, val.counts, self.p, d, K, self._ls)
        E = self._E.numpy().astype(np.float64)
        Wc = self._Wc.numpy().astype(np.float64)
        A1, B1, W, c = E[:K], E[K:], Wc[:, :K], Wc[:, K]
        S, n = val.S, val.n
        M1 = -W @ A1  # residual x - W mu - c = M1 [x; 1]
        M1[:, :d] += np.eye(d)
        M1[:, d] -= c
        sse = float(np.einsum("ij,jk,ik->", M1, S, M1))
        var = float((W * W).sum(axis=0) @ v)
        mu2 = float(np.einsum("ij,jk,ik->", A1, S, A1))
        ls_sum = float((B1 @ S[:, d]).sum())
        distortion = (sse + var) / n / (2.0 * self.sigma2)
        rate = 0.5 * (mu2 + v.sum() - ls_sum) / n - 0.5 * K
        return distortion + self.beta * rate, distortion, rate

    def step(self, xb: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """One Adam update on batch ``xb`` with noise ``eps`` (like the torch engines)."""
        xb_np = xb.detach().cpu().numpy()
        nb = xb_np.shape[0]
        loss = self.run_window(
            xb_np,
            np.arange(nb),
            np.array([nb]),
            noise=eps.detach().cpu().numpy(),
        )
        return torch.from_numpy(loss)[0]

    @torch.no_grad()
    def sync_model(self) -> LinearVAE:
        """Copy the flat parameters back into the ``LinearVAE`` and return it."""
        K, d, m, E, Wc = self.K, self.d, self.model, self._E, self._Wc
        m.enc_mean.weight.copy_(E[:K, :d])
        m.enc_mean.bias.copy_(E[:K, d])
        m.enc_logvar.weight.copy_(E[K:, :d])
        m.enc_logvar.bias.copy_(E[K:, d])
        m.dec.weight.copy_(Wc[:, :K])
        m.dec.bias.copy_(Wc[:, K])
        return m

    def state_dict(self) -> dict:
        return {
            "p": torch.from_numpy(self.p.copy()),
            "m": torch.from_numpy(self.m.copy()),
            "v": torch.from_numpy(self.v.copy()),
            "t": self.t,
            "noise_state": torch.from_numpy(self.state.astype(np.int64)),
        }

    def load_state_dict(self, state: dict) -> None:
        self.p[...] = np.asarray(state["p"])
        self.m[...] = np.asarray(state["m"])
        self.v[...] = np.asarray(state["v"])
        self.t = int(state["t"])
        if "noise_state" in state:
            self.state = np.ascontiguousarray(np.asarray(state["noise_state"]), dtype=np.uint32)
