"""Marks and legend entries shared by the figures (docs/science.md §6): ranked data as
points and seed-mean lines, hollow where under-equilibrated, grey beyond the coloured
ranks; dashed equilibrium curves; legend proxies that name every kind of mark."""

from __future__ import annotations

import numpy as np
import xarray as xr
from matplotlib.lines import Line2D

from collapse_spectroscopy.figures.common import nanmean, positive, seeds
from collapse_spectroscopy.figures.style import (
    INACTIVE_COLOR,
    INACTIVE_POINTS,
    MEAN,
    POINTS,
    REFERENCE_COLOR,
    THEORY,
    RankColors,
    hollow,
)

UNDER_EQUILIBRATED_LABEL = "under-equilibrated (hit max_updates)"


def plot_ranked(
    ax, t, values, colors: RankColors, flags, *, mean: bool = True, log_y: bool = False
) -> bool:
    """Per-seed points and seed-mean lines of ``values (T, seed, rank)``, grey ranks first.

    Points flagged in ``flags (T, seed)`` are hollow. Returns whether any grey (never
    active) rank was drawn, for the legend.
    """
    n_t, n_seed, n_rank = values.shape
    if log_y:
        values = positive(values)
    x = np.repeat(t[:, None], n_seed, axis=1).ravel()
    open_ = np.broadcast_to(np.asarray(flags, dtype=bool), (n_t, n_seed)).ravel()
    means = nanmean(values, axis=1)
    order = list(range(n_rank - 1, colors.n - 1, -1)) + list(range(colors.n - 1, -1, -1))
    grey = False
    for r in order:  # grey ranks at the back, then rank n ... 1 so that rank 1 is on top
        rank = r + 1
        y = values[:, :, r].ravel()
        ok = np.isfinite(y)
        if not ok.any():
            continue
        colored = colors.colored(rank)
        color = colors(rank) if colored else INACTIVE_COLOR
        base = POINTS if colored else INACTIVE_POINTS
        for sel, kw, gid in ((ok & ~open_, base, "points"), (ok & open_, hollow(base), "open")):
            if sel.any():
                ax.plot(x[sel], y[sel], color=color, gid=gid, **kw)
        if colored and mean:
            ok = np.isfinite(means[:, r])  # connect across missing scan points
            ax.plot(t[ok], means[ok, r], color=colors(rank), gid="mean", **MEAN)
        grey = grey or not colored
    return grey


def plot_theory(ax, grid, curves, colors: RankColors, first_rank: int = 1):
    """Dashed equilibrium curves ``curves (G, n)``, column ``i`` = rank ``first_rank + i``."""
    for i in range(curves.shape[1]):
        rank = first_rank + i
        ax.plot(grid, curves[:, i], color=colors(rank), gid="theory", **THEORY)


def below_axis(ax, x, raw, y_lo: float, color) -> bool:
    """Values of ``raw`` that a log axis starting at ``y_lo`` cannot show (a PCA distortion
    of an exactly dependent mode is ~1e-16, or 0) as down-triangles on its bottom edge, at
    their ``x``. Returns whether there were any."""
    raw = np.asarray(raw, dtype=np.float64)
    below = np.isfinite(raw) & (raw < y_lo)
    if below.any():
        ax.plot(
            np.asarray(x)[below],
            np.full(below.sum(), y_lo),
            ls="none",
            marker="v",
            ms=3.5,
            mew=0,
            color=color,
            clip_on=False,
            zorder=2,
            gid="below_axis",
        )
    return bool(below.any())


def faces(ranks, open_, colors: RankColors):
    """Marker faces of rank-coloured points: white (hollow) where ``open_``."""
    out = [("white" if o else colors(r)) for r, o in zip(ranks, open_, strict=True)]
    return out or "k"


def dot(label: str, **kw) -> Line2D:
    """A neutral legend proxy for rank-coloured markers."""
    kw = {"color": REFERENCE_COLOR, "ls": "none", "marker": "o", "ms": 4.0, "mew": 0, **kw}
    return Line2D([], [], label=label, **kw)


def handle(label: str, style_kw: dict, color=REFERENCE_COLOR, **extra) -> Line2D:
    """A legend proxy drawn in ``style_kw`` (one of the line kinds of :mod:`.style`)."""
    return Line2D([], [], color=color, label=label, **{**style_kw, **extra})


def grey_rank_label(colors: RankColors, rho_min: float, symbol: str = "rank") -> str:
    """The legend entry of the grey ranks: those beyond the coloured ones."""
    return rf"{symbol} > {colors.n}: never $\rho$ > {rho_min:g}"


def data_handles(
    scan: xr.Dataset, *, mean=True, open_=False, grey=False, grey_label=""
) -> list[Line2D]:
    """Legend entries for the scan points: what a marker and a line are, hollow markers
    and grey ranks only when drawn. One seed: a single entry (the line joins the points)."""
    run_seeds = seeds(scan)
    marker = {**POINTS, "ms": 3.0}
    if run_seeds.size == 1:
        line = {"ls": MEAN["ls"], "lw": MEAN["lw"]} if mean else {}
        handles = [handle(f"VAE, seed {int(run_seeds[0])}", {**marker, **line})]
    else:
        handles = [handle("VAE, per seed", marker)]
        if mean:
            handles.append(handle(f"mean of {run_seeds.size} seeds", MEAN))
    if open_:
        handles.append(handle(UNDER_EQUILIBRATED_LABEL, hollow(marker)))
    if grey:
        handles.append(
            handle(grey_label, {**INACTIVE_POINTS, "ms": 3.0, "alpha": 1.0}, INACTIVE_COLOR)
        )
    return handles
