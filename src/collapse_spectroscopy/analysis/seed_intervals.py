"""Per-seed spectra and confidence intervals across training seeds (docs/science.md §4.8).

With ``n >= 2`` seeds per temperature, each seed's scan points give a spectrum of their
own: the threshold ``T_k`` of that seed's points by the table's rule (:func:`.spectra.
rank_threshold`), its best truncated distortions ``Dn*_k`` and utilities ``u_k``.
The spread of these ``n`` values is the training noise of the estimate (initialization,
batch order and posterior noise; data and split are shared by all seeds).

The interval is Student's t-interval at 95 % on the ``n`` per-seed values: ``mean +- t_{n-1}
s / sqrt(n)``. None of the three quantities can be negative, and neither can its interval
(:data:`INTERVAL_COLUMNS`):

- ``T_k`` and ``Dn*_k`` are positive by construction (a threshold by its rule, a best
  distortion is a mean square residual): the interval is taken on their logarithms and
  mapped back, so its bounds are geometric and positive, as the log axes that show them.
- ``u_k = Dn*_{k-1} - Dn*_k`` is a difference of two noisy levels: for a mode the scan
  barely resolves, single seeds give values near, at or below 0, whose logarithm is
  undefined (leaving them out would keep exactly the seeds that say "larger") or, for
  values near 0, sends the upper bound to absurd heights (two seeds 1e-3 and 1e-9 give
  ``exp(74)``). So the interval is taken on the values and its lower bound cut at 0: the
  true utility is not negative, so the cut-off part never held it and the coverage is
  unchanged. Where every seed resolves the mode (spread small against the mean), the
  linear and the log interval agree to first order in ``s / mean``.

Not a
percentile bootstrap: its interval never reaches past the sample's extremes, so for
``n = 2..5`` seeds its coverage is at most ``1 - 2 / 2^n`` (50 % at n = 2, 94 % at n = 5)
whatever the nominal level; the t-interval is exact for normal per-seed values and widens
as it must with few seeds (``t_1 = 12.7``). A seed without a finite value (no threshold by
the rule) is left out of its mode's interval; fewer than 2 finite values give NaN.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from collapse_spectroscopy.analysis.thresholds import best_distortions, rank_values

LEVEL = 0.95  # two-sided confidence level of every interval
MIN_SEEDS = 2  # a spread needs two values

LOG = "log"  # a positive quantity: the interval of its logarithm, mapped back
NON_NEGATIVE = "non-negative"  # the interval of the values, its lower bound cut at 0

#: the spectra columns that get an interval, and on what scale (see the module docstring)
INTERVAL_COLUMNS = {"collapse_threshold": LOG, "utility": NON_NEGATIVE, "best_distortion": LOG}


def t_interval(
    values, log: bool = False, level: float = LEVEL, non_negative: bool = False
) -> tuple[float, float]:
    """Two-sided t-interval of the mean of the finite ``values`` (on ``log`` values if asked,
    bounds mapped back; with ``non_negative``, the lower bound cut at 0);
    ``(nan, nan)`` with fewer than two finite values."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v) & ((v > 0) if log else True)]
    if v.size < MIN_SEEDS:
        return np.nan, np.nan
    if log:
        v = np.log(v)
    half = stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size)
    lo, hi = v.mean() - half, v.mean() + half
    if log:
        return float(np.exp(lo)), float(np.exp(hi))
    return (max(float(lo), 0.0) if non_negative else float(lo)), float(hi)


def scale_interval(values, scale: str, level: float = LEVEL) -> tuple[float, float]:
    """:func:`t_interval` on the ``scale`` of :data:`INTERVAL_COLUMNS`."""
    return t_interval(values, log=scale == LOG, level=level, non_negative=scale == NON_NEGATIVE)


def per_seed_spectra(temperature, seed, rho, truncated, rho_min: float) -> pd.DataFrame:
    """One row per (seed, rank): that seed's ``collapse_threshold``, ``utility`` and
    ``best_distortion`` from its own scan points.

    ``temperature``, ``seed``: (P,); ``rho``: (P, K) ranked; ``truncated``: (P, K+1).
    """
    t = np.asarray(temperature, dtype=np.float64)
    s = np.asarray(seed)
    rho = np.asarray(rho, dtype=np.float64)
    dn = np.asarray(truncated, dtype=np.float64)
    rows = []
    for value in np.unique(s):
        mine = s == value
        best = best_distortions(dn[mine])
        fits, util = rank_values(t[mine], rho[mine], dn[mine], rho_min)
        for k, fit in enumerate(fits):
            rows.append(
                {
                    "seed": int(value),
                    "rank": k + 1,
                    "collapse_threshold": fit.threshold,
                    "utility": util[k],
                    "best_distortion": best[k + 1],
                }
            )
    return pd.DataFrame(rows)


def seed_intervals(per_seed: pd.DataFrame, ranks: int, level: float = LEVEL) -> pd.DataFrame:
    """Columns ``<name>_lo`` and ``<name>_hi`` for each of :data:`INTERVAL_COLUMNS`, one row
    per rank ``1..ranks`` (NaN where fewer than two seeds give a finite value)."""
    out = {}
    for name, scale in INTERVAL_COLUMNS.items():
        lo, hi = np.full(ranks, np.nan), np.full(ranks, np.nan)
        for k in range(ranks):
            values = per_seed.loc[per_seed["rank"] == k + 1, name].to_numpy()
            lo[k], hi[k] = scale_interval(values, scale, level=level)
        out[f"{name}_lo"], out[f"{name}_hi"] = lo, hi
    return pd.DataFrame(out)


def interval_columns(temperature, seed, rho, truncated, rho_min: float):
    """The interval columns for a spectra table of ``K`` ranks, and the per-seed table
    they come from (see :func:`per_seed_spectra`)."""
    per_seed = per_seed_spectra(temperature, seed, rho, truncated, rho_min)
    return seed_intervals(per_seed, np.asarray(rho).shape[1]), per_seed


def scan_seeds(scan) -> np.ndarray:
    """The seed of each scan point :func:`.spectra.scan_arrays` keeps, in its order."""
    rho = scan["signal_fraction"].transpose("T", "seed", "latent").values
    seed = np.broadcast_to(scan["seed"].values[None, :], rho.shape[:2]).reshape(-1)
    ran = np.all(np.isfinite(rho.reshape(seed.size, -1)), axis=1)
    return seed[ran]


def with_intervals(table: pd.DataFrame, scan, t, rho, dn, rho_min: float):
    """``table`` (the spectra table of ``t, rho, dn`` from ``scan``) with the interval
    columns appended after its own, and the summary's block on the seeds: the method and
    each seed's thresholds and utilities by rank."""
    ci, per_seed = interval_columns(t, scan_seeds(scan), rho, dn, rho_min)
    out = pd.concat([table.reset_index(drop=True), ci], axis=1)
    block = {
        "n_seeds": int(per_seed["seed"].nunique()),
        "method": f"Student t-interval at {LEVEL:.0%} over the per-seed values "
        "(of log T_k and log Dn*_k; of u_k with its lower bound cut at 0), "
        "docs/science.md §4.8; NaN with fewer than 2 seeds",
        "per_seed": {
            str(s): {
                name: [None if not np.isfinite(v) else float(v) for v in g[name]]
                for name in INTERVAL_COLUMNS
            }
            for s, g in per_seed.groupby("seed")
        },
    }
    return out, block
