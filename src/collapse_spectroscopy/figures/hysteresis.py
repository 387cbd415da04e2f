"""The hysteresis figure of a sweep (``scan.start: sweep``; docs/science.md §5.9).

Two panels, one column wide, over a shared ``T`` axis. (a) Each ranked latent's signal
fraction ``rho_k`` against ``T`` (seed mean), warming (cold to warm: solid line, filled
circles) and cooling (warm to cold: dashed line, open circles), in the rank's colour; the
dotted line marks ``rho_min``; and each rank's crossing threshold of each direction is a
tick on the top edge (filled: warming, open: cooling). The legend gives each rank's
hysteresis, the ratio of its two crossing thresholds (1: none). Ranks whose ``rho`` never
exceeds ``rho_min`` in either direction are left out. (b) The truncated distortion
``Dn_k(T)`` keeping the first ``k`` = 1, 2, 3 ranked latents (seed mean, pruned latents at
0, the evaluation split), in the same colours and line styles: where the two directions
reach different codes at the same ``T``, this is how much each one's first latents carry
(docs/science.md §5.9, "``Dn*_k`` over both directions").
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from collapse_spectroscopy.figures.axes import T_LABEL, t_axis
from collapse_spectroscopy.figures.common import column, grid_values, temperatures
from collapse_spectroscopy.figures.style import COLUMN_WIDTH, GUIDE, REFERENCE_COLOR, RankColors


def seed_mean(scan, name: str = "signal_fraction", last: str = "latent") -> np.ndarray:
    """``scan[name]`` (T, ``last``) averaged over seeds (NaN points left out): ``rho``
    (T, K) by default, ``Dn_k`` (T, K+1) for ``truncated_distortion`` over ``k``."""
    values = grid_values(scan, name, last)
    with warnings.catch_warnings():  # a temperature no seed ran: NaN, said nowhere else
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, axis=1)


#: the ranks whose truncated distortion panel (b) draws
LEVEL_RANKS = 3


def draw(warming, cooling, spectra: pd.DataFrame, rho_min: float) -> Figure:
    """The figure of a sweep's two gathered scans and its spectra table (with the
    hysteresis columns of :mod:`.analysis.hysteresis`)."""
    t_w, t_c = temperatures(warming), temperatures(cooling)
    rho_w, rho_c = seed_mean(warming), seed_mean(cooling)
    K = min(rho_w.shape[1], rho_c.shape[1])
    shown = [k for k in range(K) if np.nanmax(np.r_[rho_w[:, k], rho_c[:, k]]) > rho_min]
    colors = RankColors(len(shown))
    fig = Figure(figsize=(COLUMN_WIDTH, 4.6))
    ax, ax_levels = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [1.3, 1]})
    ratio = column(spectra, "hysteresis")
    warm_t, cool_t = (
        column(spectra, "crossing_threshold_warming"),
        column(spectra, "crossing_threshold_cooling"),
    )
    handles = []
    for i, k in enumerate(shown):
        c = colors(i + 1)
        ax.plot(t_w, rho_w[:, k], "-o", color=c, lw=0.9, ms=2.6, mew=0)
        ax.plot(t_c, rho_c[:, k], "--o", color=c, lw=0.9, ms=3.2, mfc="white", mew=0.7)
        for value, face in ((warm_t, c), (cool_t, "white")):
            if k < value.size and np.isfinite(value[k]):
                ax.plot(value[k], 1.0, "v", color=c, mfc=face, ms=4, mew=0.7, clip_on=False)
        text = f"{ratio[k]:.3g}" if k < ratio.size and np.isfinite(ratio[k]) else "n/a"
        handles.append(Line2D([], [], color=c, lw=1.2, label=f"rank {k + 1}: {text}"))
    ax.axhline(rho_min, color=REFERENCE_COLOR, **GUIDE)
    handles += [
        Line2D([], [], color="0.3", ls="-", marker="o", ms=2.6, mew=0, label="warming"),
        Line2D([], [], color="0.3", ls="--", marker="o", ms=3.2, mfc="white", label="cooling"),
        Line2D([], [], color="0.3", ls="none", marker="v", ms=4, label="crossing thresholds"),
        Line2D([], [], color=REFERENCE_COLOR, **GUIDE, label=r"$\rho_{\min}$"),
    ]
    t_axis(ax, np.r_[t_w, t_c])
    ax.set_ylim(0, 1.0)
    ax.set_ylabel(r"$\rho_k$ (seed mean)")
    ax.set_title("a", loc="left", fontsize=7, fontweight="bold")
    ax.set_xlabel("")  # the shared T axis is labelled under panel (b)
    levels = (seed_mean(s, "truncated_distortion", "k") for s in (warming, cooling))
    draw_levels(ax_levels, t_w, t_c, *levels, colors, min(LEVEL_RANKS, len(shown)))
    ax_levels.set_xlabel(T_LABEL)
    side_legend(ax, "hysteresis $T_k^{warm}/T_k^{cool}$", handles=handles)
    return fig


def side_legend(ax, title: str, **kwargs) -> None:
    """A panel's legend, right of it, in the figure's small type."""
    ax.legend(
        title=title,
        fontsize=5.5,
        title_fontsize=5.5,
        loc="center left",
        bbox_to_anchor=(1.02, 0.5),
        frameon=False,
        **kwargs,
    )


def draw_levels(ax, t_w, t_c, levels_w, levels_c, colors: RankColors, ranks: int) -> None:
    """Panel (b): ``Dn_k(T)`` of ranks ``1..ranks``, warming solid, cooling dashed."""
    for k in range(1, min(ranks, levels_w.shape[1] - 1, levels_c.shape[1] - 1) + 1):
        c = colors(k)
        ax.plot(t_w, levels_w[:, k], "-o", color=c, lw=0.9, ms=2.6, mew=0, label=f"k = {k}")
        ax.plot(t_c, levels_c[:, k], "--o", color=c, lw=0.9, ms=3.2, mfc="white", mew=0.7)
    ax.set_yscale("log")
    ax.set_ylabel(r"$D_{n,k}$ (seed mean)")
    ax.set_title("b", loc="left", fontsize=7, fontweight="bold")
    side_legend(ax, "ranks 1..k kept")
