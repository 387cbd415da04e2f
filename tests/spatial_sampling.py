"""Sampling error of a spectrum estimated from spatially correlated cells.

For ``n`` i.i.d. Gaussian samples a sample eigenvalue has std ``sqrt(2/n) lambda_k``
(Anderson 1963). When the cells are spatially correlated with the same correlation
function ``rho`` for every independent source field, every second moment averages over
fewer independent pieces: its variance grows by the design effect
``deff = sum over lags h of rho(h)^2`` (``rho(0) = 1``; 1 for i.i.d. cells), so a split of
``n`` cells estimates the spectrum like ``n / deff`` i.i.d. ones. :func:`design_effect`
measures ``deff`` from the fields themselves, independently of how they were generated.
"""

from __future__ import annotations

import numpy as np


def autocorrelation(field: np.ndarray, valid: np.ndarray, max_lag: int) -> np.ndarray:
    """Sample autocorrelation of a 2-D field over its valid cells, for every lag
    ``(dy, dx)`` with ``|dy|, |dx| <= max_lag``: (2 max_lag + 1, 2 max_lag + 1).

    Naive and direct: for each lag, the mean product of the standardized values of the
    pairs of valid cells that lag apart (columns wrap around, as longitude does on a
    global grid; rows do not).
    """
    x = np.where(valid, field, 0.0)
    mean = x[valid].mean()
    std = x[valid].std()
    z = np.where(valid, (x - mean) / std, 0.0)
    v = valid.astype(np.float64)
    rows = z.shape[0]
    out = np.zeros((2 * max_lag + 1, 2 * max_lag + 1))
    for i, dy in enumerate(range(-max_lag, max_lag + 1)):
        top = slice(max(0, dy), rows + min(0, dy))
        bottom = slice(max(0, -dy), rows + min(0, -dy))
        for j, dx in enumerate(range(-max_lag, max_lag + 1)):
            shifted_z = np.roll(z[bottom], dx, axis=1)
            shifted_v = np.roll(v[bottom], dx, axis=1)
            pairs = (v[top] * shifted_v).sum()
            out[i, j] = (z[top] * shifted_z).sum() / pairs
    return out


def design_effect(field: np.ndarray, valid: np.ndarray, max_lag: int = 20) -> float:
    """``sum_h rho(h)^2`` over the lags within ``max_lag`` cells.

    ``max_lag`` must cover the correlation length; beyond it each lag adds only its
    sampling noise, ``~1 / n`` per lag (with ``(2 max_lag + 1)^2`` lags and n ~ 25,000
    cells, 20 cells add ~0.07 of bias, negligible against the deff of a smooth field).
    """
    return float(np.sum(autocorrelation(field, valid, max_lag) ** 2))


def mode_design_effects(stack: np.ndarray, valid: np.ndarray, max_lag: int = 30) -> np.ndarray:
    """Design effect of each principal mode of a layer stack (d, rows, cols) over its valid
    cells: the deff of the mode's standardized score field, in PCA order (largest first).
    ``max_lag`` 30 cells: the smooth part of the synthetic layers (wavenumbers >= 10 on
    the unit sphere) has decayed to its sampling noise well inside that."""
    x = stack[:, valid].T.astype(np.float64)
    x = (x - x.mean(0)) / x.std(0)
    ev, vec = np.linalg.eigh(np.cov(x, rowvar=False, bias=True))
    out = []
    for k in np.argsort(ev)[::-1]:
        if ev[k] < 1e-9 * ev.max():  # a structural zero mode has no score field
            continue
        score = np.zeros(valid.shape)
        score[valid] = x @ vec[:, k]
        out.append(design_effect(score, valid, max_lag))
    return np.asarray(out)
