"""The rate–distortion plane and the Gaussian bound (docs/science.md §9.1).

``n(eps)`` counts latents; it does not count information, and with enough decoder capacity
one latent carries any number of nats. The information axis puts each scan point at its
total KL rate ``R`` (nats per sample, ``sum_j R_j`` of the evaluation split, the ``rate``
of a scan point) against its distortion ``D``, the expected squared error of a
reconstruction from a *sampled* latent over the evaluation split's total variance
``V_eval`` (the trace of its covariance about its own mean).

Beside the points: the rate–distortion function of a Gaussian source with the evaluation
split's covariance, by reverse water-filling over its eigenvalues ``mu_i`` (normalized
``p_i = mu_i / V_eval``, so ``sum p_i = 1``)::

    D(theta) = sum_i min(theta, p_i)          R(theta) = sum_{p_i > theta} 1/2 log(p_i / theta)

Among all sources with a given covariance the Gaussian has the largest ``R(D)`` under
squared error, and any encoder's KL rate is at least the mutual information it carries, so
no model can sit below this curve on Gaussian data: a point below it is a measured proof
of non-Gaussian structure that the model uses. The linear VAE at equilibrium sits on it
(train = evaluation covariance): mode ``k`` keeps ``T`` of its normalized variance and
carries ``1/2 log(T_k / T)`` nats, the curve at water level ``theta = T``.

Normalizations: ``sigma2`` does not enter (it sets which ``beta`` a ``T`` means, not
what ``R`` and ``D`` are); ``D`` sums over features before dividing by ``V_eval``; ``R`` is
in nats per sample, summed over latents.
"""

from __future__ import annotations

import numpy as np

from collapse_spectroscopy.analysis.pca import PCA_FLOOR

# Water levels of the bound's drawn curve: this many per decade of the normalized
# eigenvalues' range (fine enough that a straight line between two levels is within
# drawing width of the curve).
LEVELS_PER_DECADE = 20


def _spectrum(spectrum) -> np.ndarray:
    p = np.asarray(spectrum, dtype=np.float64)
    return p[p > PCA_FLOOR]  # a rounding eigenvalue carries no rate at any D > 0


def gaussian_curve(spectrum, levels) -> tuple[np.ndarray, np.ndarray]:
    """``(D, R)`` of the Gaussian source with normalized eigenvalues ``spectrum`` at the
    water levels ``levels`` (reverse water-filling, module docstring)."""
    p = _spectrum(spectrum)
    theta = np.asarray(levels, dtype=np.float64)[..., None]
    distortion = np.minimum(theta, p).sum(axis=-1)
    rate = 0.5 * np.log(np.maximum(p / theta, 1.0)).sum(axis=-1)  # a mode under water: 0
    return distortion, rate


def water_level(spectrum, distortion) -> np.ndarray:
    """The water level ``theta`` at which the Gaussian source reaches ``distortion``.

    ``D(theta)`` is piecewise linear and increasing: with the eigenvalues sorted, between
    ``p_(j) <= theta <= p_(j+1)`` it is ``sum_{i<=j} p_(i) + (n - j - 1) theta``, solved
    for ``theta`` on the piece holding ``D`` (below the smallest, ``D = n theta``).
    ``D >= sum p`` needs no rate: ``theta`` is then the largest eigenvalue.
    """
    p = np.sort(_spectrum(spectrum))
    d = np.asarray(distortion, dtype=np.float64)
    n = p.size
    whole = np.cumsum(p)  # sum_{i<=j} p_(i)
    at_break = whole - p + (n - np.arange(n)) * p  # D(theta = p_(j))
    j = np.searchsorted(at_break, d, side="right") - 1  # -1: below the smallest
    inner = (j >= 0) & (j < n - 1)
    jj = np.clip(j, 0, n - 2) if n > 1 else np.zeros_like(j)
    theta = np.where(j < 0, d / n, p[-1])
    if n > 1:
        theta = np.where(inner, (d - whole[jj]) / (n - jj - 1), theta)
    return np.clip(theta, 0.0, p[-1])


def gaussian_rate(spectrum, distortion) -> np.ndarray:
    """``R_G(D)``, nats: the Gaussian bound at ``distortion`` (``inf`` at ``D <= 0``)."""
    theta = np.asarray(water_level(spectrum, distortion))
    rate = np.full(theta.shape, np.inf)
    positive = theta > 0
    rate[positive] = gaussian_curve(spectrum, theta[positive])[1]
    return rate


def bound_levels(spectrum, lowest: float = np.inf) -> np.ndarray:
    """Water levels spanning the bound from ``R = 0`` down to a tenth of the smallest mode,
    or further: to where ``D`` is a tenth of ``lowest`` (the smallest point's distortion)."""
    p = _spectrum(spectrum)
    lo = np.log10(min(p.min(), lowest / p.size) / 10.0)
    hi = np.log10(p.max())
    return np.logspace(lo, hi, max(2, int(np.ceil((hi - lo) * LEVELS_PER_DECADE)) + 1))


def split_reference(x_train, x_eval) -> dict:
    """What puts a scan point on this plane, from the prepared splits: the evaluation
    split's covariance spectrum over its total variance (``spectrum``, descending),
    ``V_eval``, and the normalizer of the stored distortions ``E_eval ||x - xbar_train||^2``
    over ``V_eval`` (``stored_over_eval``), float64 throughout."""
    xe = np.asarray(x_eval, dtype=np.float64)
    train_mean = np.asarray(x_train, dtype=np.float64).mean(axis=0)
    cov = np.atleast_2d(np.cov(xe, rowvar=False, bias=True))
    eig = np.clip(np.linalg.eigvalsh(cov)[::-1], 0.0, None)
    v_eval = float(eig.sum())
    ref2 = float(np.square(xe - train_mean).sum(axis=1).mean())
    return {"spectrum": eig / v_eval, "total_variance": v_eval, "stored_over_eval": ref2 / v_eval}


def rate_distortion_points(temperature, seed, rate, distortion_sampled, reference) -> list:
    """One ``{T, seed, rate, distortion, bound_rate, excess_rate}`` per run scan point.

    ``distortion_sampled`` is a scan point's stored sampled distortion (normalized by
    ``E_eval ||x - xbar_train||^2``, docs/science.md §3), rescaled here to ``V_eval``;
    ``bound_rate`` is the Gaussian bound at that distortion and ``excess_rate`` the point's
    rate above it (nats; negative: below the bound).
    """
    d = np.asarray(distortion_sampled, dtype=np.float64) * reference["stored_over_eval"]
    r = np.asarray(rate, dtype=np.float64)
    bound = gaussian_rate(reference["spectrum"], d)
    return [
        {
            "T": float(t),
            "seed": int(s),
            "rate": float(ri),
            "distortion": float(di),
            "bound_rate": float(bi),
            "excess_rate": float(ri - bi),
        }
        for t, s, ri, di, bi in zip(temperature, seed, r, d, bound, strict=True)
        if np.isfinite(ri) and np.isfinite(di)
    ]


def rate_distortion_block(scan, reference) -> dict:
    """The summary's ``rate_distortion`` block of a gathered scan: its points, the bound on
    the same axes, and how many points lie below it."""
    t = np.broadcast_to(scan["T"].values[:, None], (scan.sizes["T"], scan.sizes["seed"]))
    s = np.broadcast_to(scan["seed"].values[None, :], t.shape)
    rate = scan["rate"].transpose("T", "seed").values
    dist = scan["distortion_sampled"].transpose("T", "seed").values
    points = rate_distortion_points(t.ravel(), s.ravel(), rate.ravel(), dist.ravel(), reference)
    lowest = min((p["distortion"] for p in points if p["distortion"] > 0), default=np.inf)
    levels = bound_levels(reference["spectrum"], lowest)
    bd, br = gaussian_curve(reference["spectrum"], levels)
    return {
        "points": points,
        "bound": {"distortion": bd.tolist(), "rate": br.tolist()},
        "points_below_bound": sum(p["excess_rate"] < 0 for p in points),
        "eval_total_variance": reference["total_variance"],
        "eval_spectrum": reference["spectrum"].tolist(),
        "units": "rate: nats per sample (sum over latents); distortion: expected squared "
        "error of a sampled reconstruction over the evaluation split's total variance",
    }
