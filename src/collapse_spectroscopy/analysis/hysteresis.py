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

Where the two chains reach different models at the same ``T``, each point is still a
trained model of the family, so ``Dn*_k`` (a minimum over trained points, docs/science.md
§4.2) can be taken over both chains: :func:`both_branches` gives the cooling chain's own
``Dn*_k``, the minimum over both chains, which chain each rank's minimum came from, and the
utility concentration (``n(eps)``, docs/science.md §9) of that minimum.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from collapse_spectroscopy.analysis.concentration import TOLERANCES
from collapse_spectroscopy.analysis.spectra import concentration_block, scan_arrays, scan_levels
from collapse_spectroscopy.analysis.thresholds import (
    RHO_MIN,
    best_distortions,
    best_points,
    crossing_threshold,
)

COLUMNS = ("crossing_threshold_warming", "crossing_threshold_cooling", "hysteresis")
BRANCH_COLUMNS = ("best_distortion_cooling", "best_distortion_both_branches")


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


def both_branches(
    dn_warm,
    dn_cool,
    rho_warm,
    rho_cool,
    pca_ratio,
    pca_eval=None,
    tolerances=TOLERANCES,
    rho_min: float = RHO_MIN,
) -> tuple[pd.DataFrame, dict]:
    """``Dn*_k`` over the points of both chains of a sweep.

    ``dn_*``: each chain's levels over its points, ``(P, K+1)``, or paired ``(P, K+1, 2)``
    (reported, choosing: ``spectra.select_on: val``), as :func:`.thresholds.best_distortions`
    reads them; ``rho_*`` ``(P, K)`` ranked; ``pca_ratio`` and ``pca_eval`` the run's PCA
    references (as in :func:`.concentration.utility_concentration`). Returns the columns
    :data:`BRANCH_COLUMNS` for ranks ``1..K`` (the cooling chain's own ``Dn*_k``, the
    minimum over both) and the summary block: the utility concentration of the minimum
    over both (counted within the ranks active in either chain) and, per rank, the chain
    whose point gives it (``warming`` on a tie: the scan of record)."""
    K1 = min(np.shape(dn_warm)[1], np.shape(dn_cool)[1])
    warm = np.asarray(dn_warm, np.float64)[:, :K1]
    cool = np.asarray(dn_cool, np.float64)[:, :K1]
    levels = np.concatenate([warm, cool])
    both = best_distortions(levels)
    # the point of each rank: chosen by its choosing levels, or by the reported ones alone
    chosen = best_points(levels if levels.ndim == 3 else np.stack([levels, levels], -1))
    branch = {
        k: ("warming" if chosen[k] < warm.shape[0] else "cooling")
        for k in range(1, K1)
        if chosen[k] >= 0
    }
    K = min(np.shape(rho_warm)[1], np.shape(rho_cool)[1])
    rho = np.concatenate([np.asarray(rho_warm)[:, :K], np.asarray(rho_cool)[:, :K]])
    block = concentration_block(both, rho, pca_ratio, pca_eval, tolerances, rho_min)
    columns = pd.DataFrame(
        dict(zip(BRANCH_COLUMNS, (best_distortions(cool)[1:], both[1:]), strict=True))
    )
    return columns, {**block, "branch_of_best": branch}


def scan_both_branches(warming, cooling, warm_selection, cool_selection, tolerances, rho_min):
    """:func:`both_branches` of two gathered scans, each read with its resolved
    :class:`.selection.Selection` (the same rule and split)."""
    pca_eval = warming["pca_eval_distortion"].values if "pca_eval_distortion" in warming else None
    return both_branches(
        scan_levels(warming, warm_selection),
        scan_levels(cooling, cool_selection),
        scan_arrays(warming)[1],
        scan_arrays(cooling)[1],
        warming["pca_ratio"].values,
        pca_eval,
        tolerances,
        rho_min,
    )
