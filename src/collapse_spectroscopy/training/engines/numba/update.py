"""One Adam update, a window of updates, and the validation sums: the compiled entry points.

:func:`run_window` runs all updates of a window inside one jitted function, so Python is
entered once per window, not once per update or per operation. Each batch is gathered
from the rows of the training array into a small feature-major buffer, and the next
batch's rows are prefetched into the cache while the current update runs (the rows are
random, so on WorldClim-sized data the gather would otherwise wait on memory). The passes
of :func:`adam_update` are fused and in place: one draws ``s = exp(logs2 / 2)``, ``z`` and the
rate, one forms the residual, its gradient and the decoder-bias gradient, one forms
``[dmu; dlogs2]`` over the forward buffers; nothing is allocated per update. Adam is one
fused pass over the flat buffer (:mod:`..layout`) with the formula of ``torch.optim.Adam``.
With ``training.average`` on, one more pass folds the new weights into their running
average (:func:`average_update`, the rule of :mod:`..averaging`).

:func:`run_window` and :func:`variance_sums` are the only functions compiled on their own
(and cached); everything they call is inlined into them (see the package docstring).
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
from numba import njit

from collapse_spectroscopy.training.engines import layout
from collapse_spectroscopy.training.engines.numba import INLINE, JIT
from collapse_spectroscopy.training.engines.numba.intrinsics import prefetch
from collapse_spectroscopy.training.engines.numba.kernels import acc_rows, dots
from collapse_spectroscopy.training.engines.numba.rng import normals
from collapse_spectroscopy.training.engines.numba.vecmath import vexp

flat_views = njit(inline="always")(layout.flat_views)  # the one layout, jitted

# numba keys the on-disk cache of an entry point on the source of its own file (this one):
# an edit to a helper inlined from another module would run stale cached code. The digest
# of those modules, written here, makes every such edit an edit of this file too
# (tests/training/test_engine_numba.py fails until it is updated, and tells the new value).
INLINED_MODULES = ("__init__.py", "intrinsics.py", "vecmath.py", "rng.py", "kernels.py")
INLINED_SHA256 = "53fc3540bf439ee04cbb74c1f8a1bbcf9e6f0b1f8ee1e95be1367d3c8e6cc645"


def inlined_sources_sha256() -> str:
    """SHA-256 of the modules whose code is inlined into the entry points."""
    here = Path(__file__).parent
    files = [here / name for name in INLINED_MODULES] + [Path(layout.__file__)]
    return hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()


@njit(**INLINE)
def adam_update(p, g, m, v, t, hyper, d, K, x1T, hT, zT, eT, GT, nb):
    """One Adam update on the batch in ``x1T[:, :nb]`` with noise ``eT[:, :nb]``.

    Returns the batch loss. ``hyper`` = (beta, sigma2, lr, beta1, beta2, eps).
    """
    T = p.dtype.type
    beta, sigma2, lr, b1, b2, aeps = hyper[0], hyper[1], hyper[2], hyper[3], hyper[4], hyper[5]
    d1 = d + 1
    E, Wc = flat_views(p, d, K)
    gE, gWc = flat_views(g, d, K)
    # (the [:, :n] slices type every operand as a strided array: one compiled product each)
    E, gE = E[:, :d1], gE[:, :d1]
    W = Wc[:, :K]
    half, one = T(0.5), T(1)
    inv_n = T(1.0 / nb)
    bn = T(beta / nb)

    # encoder: hT = [mu; logs2] = E [x; 1]
    acc_rows(hT, E, x1T, nb)
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
    acc_rows(GT, W, zT, nb)
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
    dots(gWc[:, :K], GT, zT, nb)
    # dz = G W, into zT
    acc_rows(zT, W.T, GT, nb)
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
    dots(gE, hT, x1T, nb)
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


@njit(**INLINE)
def average_update(p, aparams, avg, ring, counters):
    """Fold the weights ``p`` after one update into their running average (float64), by
    the rule of :mod:`..averaging`: ``aparams`` = (mode, horizon, block length, blocks
    kept), mode 0 none, 1 ema, 2 polyak; ``counters`` = (updates averaged, updates in the
    current block, next ring slot, blocks filled); ``avg`` the EMA or the current block's
    sum, ``ring`` the completed block sums."""
    mode = aparams[0]
    if mode == 0:
        return
    counters[0] += 1
    if mode == 1:
        w = 1.0 / min(counters[0], aparams[1])
        for k in range(p.shape[0]):
            a = avg[k]
            avg[k] = a + (np.float64(p[k]) - a) * w
        return
    for k in range(p.shape[0]):
        avg[k] += np.float64(p[k])
    counters[1] += 1
    if counters[1] == aparams[2]:
        slot = counters[2]
        for k in range(p.shape[0]):
            ring[slot, k] = avg[k]
            avg[k] = 0.0
        counters[1] = 0
        counters[2] = (slot + 1) % aparams[3]
        counters[3] = min(counters[3] + 1, aparams[3])


@njit(**JIT)
def run_window(
    X,
    rows,
    sizes,
    p,
    g,
    m,
    v,
    t0,
    hyper,
    d,
    K,
    x1T,
    hT,
    zT,
    ebuf,
    GT,
    state,
    ubuf,
    noise,
    losses,
    aparams,
    avg,
    ring,
    counters,
):
    """Run ``len(sizes)`` updates; batch ``u`` is ``X[rows[start_u : start_u + sizes[u]]]``.

    ``noise`` is empty (draw from ``state``) or ``(len(rows), K)``: the noise row of each
    sample, as ``torch.randn(n_b, K)`` gives it. Writes the per-update losses. After each
    update the weights go into their running average (``aparams, avg, ring, counters``:
    :func:`average_update`; nothing when its mode is 0, none).
    """
    start = 0
    explicit = noise.shape[0] > 0
    for u in range(sizes.shape[0]):
        nb = sizes[u]
        # the next batch's rows are random rows of X: ask for them now, so that they are in
        # the cache when this update is done (both ends of each row: it may span two lines)
        if u + 1 < sizes.shape[0]:
            for q in range(start + nb, start + nb + sizes[u + 1]):
                prefetch(X, rows[q], 0)
                prefetch(X, rows[q], d - 1)
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
            normals(state, ubuf, ebuf, K * nb)
        losses[u] = adam_update(p, g, m, v, t0 + u + 1, hyper, d, K, x1T, hT, zT, eT, GT, nb)
        average_update(p, aparams, avg, ring, counters)
        start += nb


VAL_CHUNK = 256


@njit(**JIT)
def variance_sums(chunks, counts, p, d, K, ls):
    """``v_j = sum_x exp(logs2_j(x))`` (float64) over a prepared validation set.

    ``chunks`` is ``(n_chunks, d + 1, VAL_CHUNK)``: feature-major ``[x; 1]`` blocks,
    ``counts`` the samples in each; ``ls`` a ``(K, VAL_CHUNK)`` scratch.
    """
    E, _ = flat_views(p, d, K)
    B1 = E[K:, : d + 1]  # [B b]
    v = np.zeros(K)
    for c in range(chunks.shape[0]):
        nb = counts[c]
        acc_rows(ls, B1, chunks[c], nb)
        for j in range(K):
            lj = ls[j]
            vj = lj.dtype.type(0)
            for q in range(nb):
                vj += vexp(lj[q])
            v[j] += vj
    return v
