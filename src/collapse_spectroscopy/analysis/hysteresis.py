"""Hysteresis between a warming and a cooling sweep (``scan.start: sweep``; docs/science.md §5.9).

A sweep trains each seed's scan points twice, as two continuation chains: *warming*
(cold to warm, each point from the colder one's weights) and *cooling* (warm to cold).
Rank ``k``'s crossing threshold (:func:`.thresholds.crossing_threshold`: where the
seed-mean ``rho_k(T)`` falls through ``rho_min``, linear in ``log T``) is measured on
each, and their ratio is the rank's **hysteresis**:

    hysteresis_k = T_k(warming) / T_k(cooling)

1 when the latent collapses on warming at the temperature where it reactivates on
cooling: the equilibrium is unique (the linear VAE's, docs/science.md §2: its ``rho_k(T)``
is a function of ``T`` alone, whatever the start). Above 1 when a latent, once active,
stays active past the point where, once collapsed, it would not reactivate: two stable
states over a range of ``T``, or a collapsed state the cooling run could not leave within
its budget (an escape too slow, docs/science.md §7b). Below 1, the converse (a warming
chain that collapsed a latent early). Both readings are measurements of the training
protocol as much as of the model, which is why the ratio is reported with the budget.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from collapse_spectroscopy.analysis.spectra import scan_arrays
from collapse_spectroscopy.analysis.thresholds import RHO_MIN, crossing_threshold

COLUMNS = ("crossing_threshold_warming", "crossing_threshold_cooling", "hysteresis")


def hysteresis_columns(t_warm, rho_warm, t_cool, rho_cool, rho_min: float = RHO_MIN):
    """:data:`COLUMNS` for ranks ``1..K``: each direction's crossing threshold (NaN where
    it has none in the scan) and their ratio.

    ``t_*`` (P,) and ``rho_*`` (P, K): every scan point of each direction, seeds
    flattened, ``rho`` ranked; not-run points NaN (left out by the crossing)."""
    rho_warm, rho_cool = np.asarray(rho_warm, float), np.asarray(rho_cool, float)
    K = min(rho_warm.shape[1], rho_cool.shape[1])
    warm = [crossing_threshold(t_warm, rho_warm[:, k], rho_min).threshold for k in range(K)]
    cool = [crossing_threshold(t_cool, rho_cool[:, k], rho_min).threshold for k in range(K)]
    warm, cool = np.asarray(warm), np.asarray(cool)
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = warm / cool
    return pd.DataFrame(dict(zip(COLUMNS, (warm, cool, ratio), strict=True)))


def scan_hysteresis(warming, cooling, rho_min: float = RHO_MIN) -> pd.DataFrame:
    """:func:`hysteresis_columns` of two gathered scans (``scan.nc``, ``scan_cooling.nc``)."""
    (t_warm, rho_warm, _), (t_cool, rho_cool, _) = scan_arrays(warming), scan_arrays(cooling)
    return hysteresis_columns(t_warm, rho_warm, t_cool, rho_cool, rho_min=rho_min)


def hysteresis_summary(columns: pd.DataFrame) -> dict:
    """The summary's ``hysteresis`` block: the ratio of every rank with both thresholds,
    and the largest departure from 1 (a factor, >= 1) among them."""
    both = columns.dropna()
    ratios = {int(i) + 1: float(r) for i, r in zip(both.index, both["hysteresis"], strict=True)}
    factors = [max(r, 1 / r) for r in ratios.values() if r > 0]
    return {
        "ratio": ratios,
        "max_factor": float(max(factors)) if factors else None,
        "definition": "crossing threshold warming / cooling, per rank (docs/science.md §5.9)",
    }
