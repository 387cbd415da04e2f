"""Confidence intervals across seeds in the figures (docs/science.md §4.8): error bars on
Fig 3's ``(T_k, u_k)`` and a band around Fig 2b's ``Dn*_k``, drawn only where the spectra
table has finite ``*_lo``/``*_hi`` columns (two or more seeds)."""

from __future__ import annotations

import numpy as np
from matplotlib.lines import Line2D

from collapse_spectroscopy.figures.common import column, positive

BAR = {"lw": 0.7, "alpha": 0.8, "zorder": 3.5}


def _label(spectra) -> str:
    return "95 % t-interval over seeds"


def error_bars(ax, spectra, rank, thr, util, colors, handles) -> None:
    """Fig 3: a vertical bar ``u_k`` lo..hi at ``T_k`` and a horizontal one ``T_k`` lo..hi
    at ``u_k`` for each drawn mode that has both intervals; a legend entry if any."""
    t_lo, t_hi = column(spectra, "collapse_threshold_lo"), column(spectra, "collapse_threshold_hi")
    u_lo, u_hi = column(spectra, "utility_lo"), column(spectra, "utility_hi")
    has = np.isfinite(thr) & np.isfinite(util)
    has &= np.isfinite(t_lo) & np.isfinite(t_hi) & np.isfinite(u_lo) & np.isfinite(u_hi)
    if not has.any():
        return
    c = [colors(r) for r in rank[has]]
    floor = np.nanmin(util[has]) / 10  # a lower bound <= 0 cannot be drawn on a log axis
    ax.vlines(thr[has], np.maximum(u_lo[has], floor), u_hi[has], colors=c, gid="seed_ci", **BAR)
    ax.hlines(util[has], t_lo[has], t_hi[has], colors=c, gid="seed_ci", **BAR)
    handles.append(
        Line2D([], [], color="0.3", marker="+", ms=7, mew=0.7, ls="none", label=_label(spectra))
    )


def band(ax, spectra, rank, handles) -> None:
    """Fig 2b: the ``Dn*_k`` interval as a grey band along the ranks."""
    lo = positive(column(spectra, "best_distortion_lo"))
    hi = positive(column(spectra, "best_distortion_hi"))
    has = np.isfinite(lo) & np.isfinite(hi)
    if not has.any():
        return
    ax.fill_between(
        rank,
        np.where(has, lo, np.nan),
        np.where(has, hi, np.nan),
        color="0.55",
        alpha=0.3,
        lw=0,
        zorder=0.5,
        gid="seed_ci",
    )
    from matplotlib.patches import Patch

    handles.append(Patch(color="0.55", alpha=0.3, lw=0, label=r"$Dn^*_k$: " + _label(spectra)))
