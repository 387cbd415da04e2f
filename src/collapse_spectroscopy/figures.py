"""The paper's Figs 1-4 from a gathered scan and its spectra table (docs/science.md §6).

:func:`make_figures` writes ``fig1_collapse_scan``, ``fig2_truncated_distortion``,
``fig3_duality`` and ``fig4_latent_scale``, each as PNG (300 dpi) and PDF, atomically.
Each figure also has its own function returning a :class:`matplotlib.figure.Figure`
(built without pyplot, so nothing needs closing and no GUI backend is touched).

Inputs: ``scan`` is the dataset of :func:`.scanfile.gather` (dims ``T``, ``seed``,
``latent`` = rank by signal fraction, ``k``, ``mode``); ``spectra`` is the table of
:func:`.spectra.spectra_table` (or its CSV read back).

Conventions shared by all four figures (see :mod:`.plotstyle`); every mark is named in
the figure's legend, and the captions (``workflow/report/*.rst``) say the rest:

- **Colour = ranked mode.** Ranks ``1..n`` are coloured on a discrete sequential map with a
  colour bar, where ``n`` is the larger of (a) the highest rank whose signal fraction ever
  exceeds the run's ``rho_min`` (the fit cut of the spectra, passed as ``rho_min``) at
  some scan point and (b) the number of PCA modes with ``lambda_k/V`` above
  :data:`PCA_FLOOR` (capped at ``K``). Higher ranks -- latents that never become active,
  e.g. the spare latents of ``K = 32 > d = 19`` -- are drawn as small light-grey points
  without mean lines, fits, guides or theory, behind the coloured data; the legend says
  so (``rank > n``) whenever they are drawn.
- **Data**: one small filled marker per (T, seed) (seeds pooled) and a thin solid line
  through the seed mean (``nanmean``, connected across temperatures where no seed ran).
  With one seed the legend has one entry (``VAE, seed s``: the line just joins the
  points), with several, ``VAE, per seed`` and ``mean of N seeds``. In Fig 1's middle
  panel the fixed-exponent fit ``rho = 1 - T/T_k`` of the spectra table (a broad pale
  band, unlike the thin mean lines) replaces the mean line, and a dotted line marks
  ``rho_min``. Fig 2's right panel and Fig 3 draw one point per ranked mode.
- **Under-equilibrated points** (:func:`.spectra.under_equilibrated`: stopped at
  ``max_updates`` before the early-stopping test passed) are hollow markers. A quantity
  built from such a point is hollow too: in Fig 2b a ``Dn*_k`` whose best scan point is
  one; in Fig 3 a mode whose threshold fit (points with ``rho_k > rho_min``) or utility
  (``Dn*_k`` and ``Dn*_{k-1}``) uses one. Filled means every input passed the test.
- **Figure sizes**: Figs 1 and 3 are one column wide (3.4 in), Figs 2 and 4 (two panels
  side by side) the full text width (7 in).
- **Theory**: the analytic equilibrium (:mod:`.equilibrium`) of the *training* PCA
  spectrum ``pca_ratio`` (the spectrum the model is trained on, not a synthetic source's
  declared ``true_spectrum``), thin dashed, in the colour of the matching rank (rank ``k``
  <-> the k-th largest eigenvalue). Modes with ``lambda_k/V <= PCA_FLOOR`` (an exactly
  dependent feature, ``~1e-16``) are left out; with ``K < d`` only the top ``K`` modes are.
  In Fig 4 the equilibrium is the same for every rank (``q = 1``, ``J = 0``) and is drawn
  once, in black.
- **PCA references** are squares (open, in Figs 2b and 3), never circles: a hollow circle
  always means an under-equilibrated VAE point.
- Temperatures are plotted on a log axis over the scanned range; NaN (missing scan
  points) and, on log axes, non-positive values are skipped. Log axes spanning less
  than :data:`SHORT_LOG_SPAN` decades get 1-2-5 ticks in plain numbers, never the
  crowded minor labels matplotlib would put there.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from . import equilibrium
from .io import atomic_path
from .plotstyle import (
    COLUMN_WIDTH,
    DPI,
    FIT,
    GUIDE,
    INACTIVE_COLOR,
    INACTIVE_POINTS,
    MEAN,
    PAGE_WIDTH,
    POINTS,
    REFERENCE_COLOR,
    THEORY,
    RankColors,
    hollow,
    panel_label,
    style,
)
from .spectra import PCA_FLOOR, RHO_MIN, scan_under_equilibrated

T_LABEL = r"normalized temperature $T = \beta\sigma^2/V$"
UNDER_EQUILIBRATED_LABEL = "under-equilibrated (hit max_updates)"
SHORT_LOG_SPAN = 2.0  # decades: below this a log axis gets 1-2-5 ticks (:func:`_log_ticks`)
FIGURE_NAMES = (
    "fig1_collapse_scan",
    "fig2_truncated_distortion",
    "fig3_duality",
    "fig4_latent_scale",
)


# ---------------------------------------------------------------------------------------
# Data access


def _temperatures(scan: xr.Dataset) -> np.ndarray:
    return np.atleast_1d(np.asarray(scan["T"].values, dtype=np.float64))


def _values(scan: xr.Dataset, name: str, last: str = "latent") -> np.ndarray:
    """``scan[name]`` as a float64 array ``(T, seed, last)``, whatever dims it was given."""
    da = scan[name]
    for dim in ("T", "seed"):
        if dim not in da.dims:
            da = da.expand_dims(dim)
    return np.asarray(da.transpose("T", "seed", last).values, dtype=np.float64)


def _n_latents(scan: xr.Dataset) -> int:
    return int(scan.sizes["latent"])


def theory_spectrum(scan: xr.Dataset) -> np.ndarray:
    """The training spectrum ``lambda_k/V`` for the theory overlay: above the floor,
    descending, at most ``K`` modes (the equilibrium keeps the top ``K``)."""
    if "pca_ratio" not in scan:
        return np.zeros(0)
    ratio = np.asarray(scan["pca_ratio"].values, dtype=np.float64).ravel()
    ratio = np.sort(ratio[np.isfinite(ratio) & (ratio > PCA_FLOOR)])[::-1]
    return ratio[: _n_latents(scan)]


def rank_colors(scan: xr.Dataset, rho_min: float = RHO_MIN) -> RankColors:
    """Colours for the ranks whose signal fraction ever exceeds ``rho_min`` or that have a
    PCA mode (module docstring)."""
    K = _n_latents(scan)
    n_active = 0
    if "signal_fraction" in scan:
        rho = _values(scan, "signal_fraction")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            peak = np.nanmax(rho.reshape(-1, rho.shape[-1]), axis=0)
        active = np.flatnonzero(np.nan_to_num(peak, nan=-np.inf) > rho_min)
        n_active = int(active[-1]) + 1 if active.size else 0
    n = max(n_active, theory_spectrum(scan).size, 1)
    return RankColors(min(n, K))


def _seeds(scan: xr.Dataset) -> np.ndarray:
    return np.atleast_1d(scan["seed"].values) if "seed" in scan.coords else np.zeros(1, int)


def point_flags(scan: xr.Dataset) -> np.ndarray:
    """Under-equilibrated scan points, ``(T, seed)`` (:func:`.spectra.under_equilibrated`)."""
    return scan_under_equilibrated(scan)


def best_from_flagged(scan: xr.Dataset, flags: np.ndarray) -> np.ndarray:
    """For ``k = 0..K``: is ``Dn*_k`` (the lowest ``Dn_k`` over the scan) taken at a
    flagged point? ``Dn*_0 = 1`` by definition and never is."""
    dn = _values(scan, "truncated_distortion", last="k")
    flat, f = dn.reshape(-1, dn.shape[-1]), np.broadcast_to(flags, dn.shape[:2]).ravel()
    out = np.zeros(dn.shape[-1], dtype=bool)
    for k in range(1, dn.shape[-1]):
        column = np.where(np.isfinite(flat[:, k]), flat[:, k], np.inf)
        if np.isfinite(column).any():
            out[k] = f[int(np.argmin(column))]  # the first of equal minima, as nanmin's
    return out


def fit_uses_flagged(scan: xr.Dataset, flags: np.ndarray, rho_min: float) -> np.ndarray:
    """For each rank: does its threshold fit use a flagged point (``rho_k > rho_min``)?"""
    if "signal_fraction" not in scan:
        return np.zeros(_n_latents(scan), dtype=bool)
    rho = _values(scan, "signal_fraction")
    with np.errstate(invalid="ignore"):
        fitted = np.nan_to_num(rho, nan=-np.inf) > rho_min
    return (fitted & np.broadcast_to(flags, rho.shape[:2])[:, :, None]).any(axis=(0, 1))


def _by_rank(mask: np.ndarray, ranks: np.ndarray, offset: int = 0) -> np.ndarray:
    """``mask[rank - 1 + offset]`` for each rank, False outside the mask."""
    idx = np.asarray(ranks, dtype=int) - 1 + offset
    ok = (idx >= 0) & (idx < mask.size)
    out = np.zeros(idx.size, dtype=bool)
    out[ok] = mask[idx[ok]]
    return out


def _column(spectra: pd.DataFrame, name: str) -> np.ndarray:
    """A column of the spectra table ordered by rank (NaN if absent)."""
    table = spectra.sort_values("rank") if "rank" in spectra else spectra
    if name not in table:
        return np.full(len(table), np.nan)
    return pd.to_numeric(table[name], errors="coerce").to_numpy(dtype=np.float64)


def _ranks(spectra: pd.DataFrame) -> np.ndarray:
    if "rank" in spectra:
        return np.sort(spectra["rank"].to_numpy(dtype=int))
    return np.arange(1, len(spectra) + 1)


def _positive(a) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    return np.where(np.isfinite(a) & (a > 0), a, np.nan)


def _nanmean(a, axis):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(a, axis=axis)


# ---------------------------------------------------------------------------------------
# Drawing helpers


def _t_range(t: np.ndarray) -> tuple[float, float]:
    """Log-axis limits around the scanned temperatures (a decade if there is one point)."""
    tp = t[np.isfinite(t) & (t > 0)]
    if tp.size == 0:
        return 1e-3, 1.0
    lo, hi = float(tp.min()), float(tp.max())
    if hi / lo < 1.5:
        return lo / 3.0, hi * 3.0
    pad = (hi / lo) ** 0.03
    return lo / pad, hi * pad


def _t_grid(t: np.ndarray, n: int = 240) -> np.ndarray:
    lo, hi = _t_range(t)
    return np.geomspace(lo, hi, n)


def _plot_ranked(
    ax, t, values, colors: RankColors, flags, *, mean: bool = True, log_y: bool = False
) -> bool:
    """Per-seed points and seed-mean lines of ``values (T, seed, rank)``, grey ranks first.

    Points flagged in ``flags (T, seed)`` are hollow. Returns whether any grey (never
    active) rank was drawn, for the legend.
    """
    n_t, n_seed, n_rank = values.shape
    if log_y:
        values = _positive(values)
    x = np.repeat(t[:, None], n_seed, axis=1).ravel()
    open_ = np.broadcast_to(np.asarray(flags, dtype=bool), (n_t, n_seed)).ravel()
    means = _nanmean(values, axis=1)
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


def _plot_theory(ax, grid, curves, colors: RankColors, first_rank: int = 1):
    """Dashed equilibrium curves ``curves (G, n)``, column ``i`` = rank ``first_rank + i``."""
    for i in range(curves.shape[1]):
        rank = first_rank + i
        ax.plot(grid, curves[:, i], color=colors(rank), gid="theory", **THEORY)


def _dot(label: str, **kw) -> Line2D:
    """A neutral legend proxy for rank-coloured markers."""
    kw = {"color": REFERENCE_COLOR, "ls": "none", "marker": "o", "ms": 4.0, "mew": 0, **kw}
    return Line2D([], [], label=label, **kw)


def _handle(label: str, style_kw: dict, color=REFERENCE_COLOR, **extra) -> Line2D:
    return Line2D([], [], color=color, label=label, **{**style_kw, **extra})


def _data_handles(
    scan: xr.Dataset, *, mean=True, open_=False, grey=False, grey_label=""
) -> list[Line2D]:
    """Legend entries for the scan points: what a marker and a line are, hollow markers
    and grey ranks only when drawn. One seed: a single entry (the line joins the points)."""
    seeds = _seeds(scan)
    marker = {**POINTS, "ms": 3.0}
    if seeds.size == 1:
        line = {"ls": MEAN["ls"], "lw": MEAN["lw"]} if mean else {}
        handles = [_handle(f"VAE, seed {int(seeds[0])}", {**marker, **line})]
    else:
        handles = [_handle("VAE, per seed", marker)]
        if mean:
            handles.append(_handle(f"mean of {seeds.size} seeds", MEAN))
    if open_:
        handles.append(_handle(UNDER_EQUILIBRATED_LABEL, hollow(marker)))
    if grey:
        handles.append(
            _handle(grey_label, {**INACTIVE_POINTS, "ms": 3.0, "alpha": 1.0}, INACTIVE_COLOR)
        )
    return handles


def _tick_text(value: float) -> str:
    """A short tick label: plain decimals from 1e-3 to 1e4, else ``a×10^b``."""
    if value <= 0 or not np.isfinite(value):
        return ""
    if 1e-3 <= value < 1e4:
        return f"{value:g}"
    exponent = int(np.floor(np.log10(value) + 1e-9))
    mantissa = value / 10.0**exponent
    if abs(mantissa - 1.0) < 1e-6:
        return rf"$10^{{{exponent}}}$"
    return rf"${mantissa:g}\times10^{{{exponent}}}$"


def _log_ticks(axis, lo: float, hi: float) -> None:
    """Readable ticks on a log axis spanning ``lo..hi``.

    Over :data:`SHORT_LOG_SPAN` decades or more, matplotlib's decade labels are kept (two
    or more of them). Below, matplotlib labels minor ticks too (``2×10^-1``, ``3×10^-1``,
    ...) once the span is under a decade, and they overlap on a column-wide axis; between
    one and two decades it shows only two or three decade labels. There the labels are
    1, 2, 5 per decade (1..9 below half a decade) in plain numbers, minor ticks unlabelled:
    at most about 7 labels, each ~0.3 in wide at 7 pt, on an axis of >= 2 in.
    """
    decades = np.log10(hi / lo)
    if not np.isfinite(decades) or decades >= SHORT_LOG_SPAN:
        return
    subs = (1.0, 2.0, 5.0) if decades >= 0.5 else tuple(float(i) for i in range(1, 10))
    axis.set_major_locator(LogLocator(base=10.0, subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda v, _: _tick_text(v)))
    axis.set_minor_formatter(NullFormatter())


# ---------------------------------------------------------------------------------------
# The four figures


def fig1_collapse_scan(scan: xr.Dataset, spectra: pd.DataFrame, rho_min: float = RHO_MIN) -> Figure:
    """Fig 1, the collapse scan: ``m_k``, ``rho_k`` and ``l_k`` against ``T`` (three panels).

    Middle panel: the fixed-exponent fits ``rho = 1 - T/T_k`` (spectra
    ``collapse_threshold``, broad pale bands, drawn for ``T < T_k``) replace the seed-mean
    lines, a dotted line marks ``rho_min`` (only points above it enter the fits), and the
    PCA-predicted thresholds ``lambda_k/V`` inside the scanned range are marked by
    triangles on the top edge. Dashed: the analytic equilibrium of every panel.
    """
    with style():
        t = _temperatures(scan)
        colors = rank_colors(scan, rho_min)
        flags = point_flags(scan)
        tk = theory_spectrum(scan)
        grid = _t_grid(t)
        fig = Figure(figsize=(COLUMN_WIDTH, 5.8), layout="constrained")
        axes = fig.subplots(3, 1, sharex=True)
        panels = [
            (
                "posterior_mean_square",
                equilibrium.posterior_mean_square,
                r"mean square $m_k$",
                True,
            ),
            ("signal_fraction", equilibrium.signal_fraction, r"signal fraction $\rho_k$", False),
            (
                "posterior_log_variance",
                equilibrium.posterior_log_variance,
                r"log-variance $l_k$",
                True,
            ),
        ]
        grey = False
        for ax, letter, (name, law, label, mean) in zip(axes, "abc", panels, strict=True):
            if name in scan:
                grey |= _plot_ranked(ax, t, _values(scan, name), colors, flags, mean=mean)
            if tk.size:
                _plot_theory(ax, grid, law(tk, grid), colors)
            ax.set_ylabel(label)
            panel_label(ax, letter)
        ax = axes[1]
        lo, hi = _t_range(t)
        thresholds = _column(spectra, "collapse_threshold")
        for rank, tk_fit in zip(_ranks(spectra), thresholds, strict=True):
            if not (np.isfinite(tk_fit) and tk_fit > 0) or tk_fit <= lo:
                continue
            tt = np.geomspace(lo, min(tk_fit, hi), 80)
            ax.plot(tt, 1.0 - tt / tk_fit, color=colors(rank), gid="fit", **FIT)
        ax.axhline(rho_min, color=REFERENCE_COLOR, gid="rho_min", **GUIDE)
        for rank, lam in enumerate(tk, start=1):
            if lo <= lam <= hi:
                ax.plot(
                    lam,
                    1.0,
                    transform=ax.get_xaxis_transform(),
                    ls="none",
                    marker="v",
                    ms=4,
                    mew=0,
                    color=colors(rank),
                    clip_on=False,
                    zorder=5,
                    gid="pca_mark",
                )
        ax.set_ylim(-0.05, 1.05)
        axes[-1].set_xscale("log")
        axes[-1].set_xlim(lo, hi)
        axes[-1].set_xlabel(T_LABEL)
        handles = _data_handles(
            scan, open_=bool(flags.any()), grey=grey, grey_label=_grey_label(colors, rho_min)
        )
        handles.append(_handle(r"(b) fit $\rho_k = 1-T/T_k$", FIT))
        handles.append(_handle(rf"(b) fit cut $\rho_{{min}}$ = {rho_min:g}", GUIDE))
        if tk.size:
            handles.append(_handle("equilibrium (PCA)", THEORY))
            handles.append(
                _handle(r"(b) PCA $T_k = \lambda_k/V$", {"ls": "none", "marker": "v", "ms": 4})
            )
        fig.legend(
            handles=handles,
            loc="outside upper center",
            ncols=2,
            columnspacing=1.0,
            handletextpad=0.4,
        )
        colors.colorbar(fig, list(axes), fraction=0.04, aspect=40)
        return fig


def _grey_label(colors: RankColors, rho_min: float, symbol: str = "rank") -> str:
    return rf"{symbol} > {colors.n}: never $\rho$ > {rho_min:g}"


def fig2_truncated_distortion(
    scan: xr.Dataset, spectra: pd.DataFrame, rho_min: float = RHO_MIN
) -> Figure:
    """Fig 2, truncated distortion (two panels, log–log, shared y).

    Left: ``Dn_k(T)`` for each rank ``k >= 1`` (points and seed means; ranks beyond the
    coloured ones as grey points), dotted horizontal guides at the best level ``Dn*_k``
    (spectra ``best_distortion``), dashed equilibrium ``Dn_k(T)``. Right: ``Dn*_k`` against
    ``k`` (joined by a grey line; hollow where the best point is under-equilibrated) with
    the training-PCA reference ``1 - sum_{i<=k} lambda_i/V`` and, where the scan has it,
    the split-matched PCA distortion on the evaluation split. The y range follows the VAE
    data; PCA values below it (an exactly dependent mode leaves ``~1e-16``) are drawn as
    down-triangles on the bottom edge.
    """
    with style():
        t = _temperatures(scan)
        colors = rank_colors(scan, rho_min)
        flags = point_flags(scan)
        tk = theory_spectrum(scan)
        grid = _t_grid(t)
        K = _n_latents(scan)
        fig = Figure(figsize=(PAGE_WIDTH, 2.9), layout="constrained")
        left, right = fig.subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": [1.25, 1]})

        dn = _values(scan, "truncated_distortion", last="k")[:, :, 1:]  # k = 1..K
        grey = _plot_ranked(left, t, dn, colors, flags, log_y=True)
        ranks = _ranks(spectra)
        best = _positive(_column(spectra, "best_distortion"))
        for rank, level in zip(ranks, best, strict=True):
            if colors.colored(rank) and np.isfinite(level):
                left.axhline(level, color=colors(rank), gid="guide", **GUIDE)
        if tk.size:
            curves = _positive(equilibrium.truncated_distortion(tk, grid)[:, 1:])
            _plot_theory(left, grid, curves, colors)
        left.set_xscale("log")
        left.set_yscale("log")
        left.set_xlim(*_t_range(t))
        left.set_xlabel(T_LABEL)
        left.set_ylabel(r"truncated distortion $Dn_k$")
        handles = _data_handles(
            scan,
            open_=bool(flags.any()),
            grey=grey,
            grey_label=_grey_label(colors, rho_min, "k"),
        )
        if tk.size:
            handles.append(_handle("equilibrium (PCA)", THEORY))
        handles.append(_handle(r"best $Dn^*_k$ over the scan", GUIDE))
        left.legend(handles=handles, loc="lower right")
        panel_label(left, "a")

        # Right: best level against rank, with PCA references.
        right.plot(ranks, best, color="0.55", lw=0.7, zorder=1)
        open_best = _by_rank(best_from_flagged(scan, flags), ranks, offset=1)
        ok = np.isfinite(best)
        right.scatter(
            ranks[ok],
            best[ok],
            s=16,
            facecolors=_faces(ranks[ok], open_best[ok], colors),
            edgecolors=[colors(r) for r in ranks[ok]] or "k",
            linewidths=0.7,
            zorder=3,
            gid="vae",
        )
        handles = [_dot(r"VAE $Dn^*_k$", ls="-", lw=0.7, c="0.55", mfc=REFERENCE_COLOR)]
        if (open_best & ok).any():
            handles.append(_dot("best point under-equilibrated", mfc="white", mew=0.7))
        if any(not colors.colored(r) for r in ranks[ok]):
            handles.append(_dot(rf"k > {colors.n}", color=INACTIVE_COLOR))
        data_min = np.nanmin(np.concatenate([best, _positive(dn).ravel(), [1.0]]))
        y_lo = data_min / 2.5
        y_hi = 1.6
        references = []
        pca = _column(spectra, "pca_distortion")
        references.append((pca, "PCA (train)", {"marker": "s", "color": REFERENCE_COLOR}))
        if "pca_eval_distortion" in scan:
            ev = np.asarray(scan["pca_eval_distortion"].values, np.float64).ravel()[1:]
            ev = np.concatenate([ev, np.full(max(0, len(ranks) - ev.size), np.nan)])
            references.append(
                (ev[: len(ranks)], "PCA (eval split)", {"marker": "+", "color": "0.45"})
            )
        off_scale = False
        for raw, label, kw in references:
            if not np.isfinite(raw).any():
                continue
            values = _positive(raw)
            shown = np.where(values >= y_lo, values, np.nan)
            (line,) = right.plot(
                ranks,
                shown,
                ls="--",
                lw=0.6,
                ms=3.2,
                mfc="none",
                mew=0.7,
                label=label,
                zorder=2,
                **kw,
            )
            handles.append(line)
            below = np.isfinite(raw) & (raw < y_lo)
            if below.any():
                off_scale = True
                right.plot(
                    ranks[below],
                    np.full(below.sum(), y_lo),
                    ls="none",
                    marker="v",
                    ms=3.5,
                    mew=0,
                    color=kw["color"],
                    clip_on=False,
                    zorder=2,
                    gid="below_axis",
                )
        if off_scale:
            handles.append(_dot("PCA below the axis (~0)", marker="v", ms=3.5))
        right.set_yscale("log")
        right.set_ylim(y_lo, y_hi)
        right.set_xlim(0.3, K + 0.7)
        right.xaxis.set_major_locator(_integer_locator(K))
        right.set_xlabel(r"rank $k$ (latents kept)")
        right.tick_params(labelleft=True)
        right.legend(handles=handles, loc="upper right")
        panel_label(right, "b")
        colors.colorbar(fig, [left, right], fraction=0.035, aspect=25)
        return fig


def _faces(ranks, open_, colors: RankColors):
    """Marker faces of rank-coloured points: white (hollow) where ``open_``."""
    faces = [("white" if o else colors(r)) for r, o in zip(ranks, open_, strict=True)]
    return faces or "k"


def _power_label(ax, label: str) -> None:
    """Set the y label; for an axis whose values are all below 1e-2 in size, tick labels
    in units of a power of ten named in the label (``J (×10^-4)`` with ticks ``0 .. 3``),
    not ``0.00030``. Matplotlib's own offset text would sit above the axes and push the
    panel below its neighbour's top."""
    top = max(abs(v) for v in ax.get_ylim())  # autoscaled to the data drawn so far
    if not (np.isfinite(top) and 0 < top < 1e-2):
        ax.set_ylabel(label)
        return
    exponent = int(np.floor(np.log10(top)))
    scale = 10.0**exponent
    # + 0.0 turns -0.0 into 0.0: no "-0" tick
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / scale + 0.0:.3g}"))
    ax.set_ylabel(rf"{label} ($\times10^{{{exponent}}}$)")


def _integer_locator(n: int):
    return MaxNLocator(nbins=min(n, 8), integer=True, steps=[1, 2, 4, 5, 10])


def fig3_duality(scan: xr.Dataset, spectra: pd.DataFrame, rho_min: float = RHO_MIN) -> Figure:
    """Fig 3, utility–threshold duality: ``u_k`` against ``T_k``, one point per ranked mode.

    Filled: the VAE (spectra ``utility`` against the fitted ``collapse_threshold``); hollow
    where the fit or the utility uses an under-equilibrated point; modes without a finite
    positive pair (no threshold fit, or a non-positive utility) are left out. Open squares
    on the diagonal: the PCA prediction ``(lambda_k/V, lambda_k/V)``; grey plus signs: the
    split-matched PCA utility on the evaluation split against ``lambda_k/V`` (where the
    table has it). Log–log with the guide ``u = T``.
    """
    with style():
        colors = rank_colors(scan, rho_min)
        flags = point_flags(scan)
        ranks = _ranks(spectra)
        thr = _positive(_column(spectra, "collapse_threshold"))
        util = _positive(_column(spectra, "utility"))
        lam = _column(spectra, "pca_ratio")
        lam = np.where(np.isfinite(lam) & (lam > PCA_FLOOR), lam, np.nan)
        ev = _positive(_column(spectra, "pca_eval_utility"))
        best_open = best_from_flagged(scan, flags)
        open_ = (
            _by_rank(fit_uses_flagged(scan, flags, rho_min), ranks)
            | _by_rank(best_open, ranks, offset=1)  # Dn*_k
            | _by_rank(best_open, ranks)  # Dn*_{k-1}
        )
        fig = Figure(figsize=(COLUMN_WIDTH, 3.0), layout="constrained")
        ax = fig.subplots()

        pts, handles = [], []
        ok = np.isfinite(lam)
        if ok.any():
            ax.scatter(
                lam[ok],
                lam[ok],
                s=30,
                marker="s",
                facecolors="none",
                linewidths=0.8,
                edgecolors=[colors(r) for r in ranks[ok]],
                zorder=2,
                gid="pca",
            )
            handles.append(_dot(r"PCA $\lambda_k/V$", marker="s", ms=5.0, mfc="none", mew=0.8))
            pts.append(lam[ok])
        ok_ev = np.isfinite(lam) & np.isfinite(ev)
        if ok_ev.any():
            ax.plot(
                lam[ok_ev],
                ev[ok_ev],
                ls="none",
                marker="+",
                ms=4.5,
                mew=0.7,
                color="0.4",
                zorder=3,
                label=r"PCA utility, eval split",
                gid="pca_eval",
            )
            handles.append(ax.lines[-1])
            pts.append(ev[ok_ev])
        ok = np.isfinite(thr) & np.isfinite(util)
        ax.scatter(
            thr[ok],
            util[ok],
            s=16,
            linewidths=0.7,
            zorder=4,
            facecolors=_faces(ranks[ok], open_[ok], colors),
            edgecolors=[colors(r) for r in ranks[ok]] or "k",
            gid="vae",
        )
        handles.insert(0, _dot(r"VAE $(T_k, u_k)$"))
        if (open_ & ok).any():
            handles.insert(1, _dot("uses an under-equilibrated point", mfc="white", mew=0.7))
        pts += [thr[ok], util[ok]]

        allv = np.concatenate(pts) if pts else np.zeros(0)
        allv = allv[np.isfinite(allv) & (allv > 0)]
        if allv.size:
            lo, hi = allv.min() / 2.0, allv.max() * 2.0
        else:
            lo, hi = 1e-3, 1.0
        ax.plot([lo, hi], [lo, hi], color="0.5", lw=0.6, ls="-", zorder=1, label="$u = T$")
        handles.append(ax.lines[-1])
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(lo, hi)
        ax.set_ylim(lo, hi)
        _log_ticks(ax.xaxis, lo, hi)
        _log_ticks(ax.yaxis, lo, hi)
        ax.set_aspect("equal", adjustable="box")
        ax.set_xlabel(r"collapse threshold $T_k$")
        ax.set_ylabel(r"utility $u_k$")
        ax.legend(handles=handles, loc="upper left", handletextpad=0.3)
        colors.colorbar(fig, ax, fraction=0.05, aspect=25)
        return fig


def fig4_latent_scale(scan: xr.Dataset, spectra: pd.DataFrame, rho_min: float = RHO_MIN) -> Figure:
    """Fig 4 (Appendix C), latent-scale diagnostics: ``q_k = m_k + v_k`` and the Jensen gap
    ``J_k = log v_k - l_k`` against ``T`` (two panels); equilibrium ``q = 1``, ``J = 0``
    dashed in black (the same for every rank). A y axis whose values are all small gets
    its power of ten in the label (``×10^-4``) instead of ``0.00030``-style tick labels."""
    with style():
        t = _temperatures(scan)
        colors = rank_colors(scan, rho_min)
        flags = point_flags(scan)
        fig = Figure(figsize=(PAGE_WIDTH, 2.7), layout="constrained")
        axes = fig.subplots(1, 2, sharex=True)
        panels = [
            ("latent_scale", r"latent scale $q_k = m_k + v_k$", 1.0),
            ("jensen_gap", r"Jensen gap $J_k = \log v_k - l_k$", 0.0),
        ]
        grey = False
        for ax, letter, (name, label, level) in zip(axes, "ab", panels, strict=True):
            if name in scan:
                grey |= _plot_ranked(ax, t, _values(scan, name), colors, flags)
            ax.axhline(level, color=REFERENCE_COLOR, gid="theory", **THEORY)
            ax.set_xscale("log")
            ax.set_xlim(*_t_range(t))
            ax.set_xlabel(T_LABEL)
            ax.ticklabel_format(axis="y", useOffset=False)  # no "+1" offset near q = 1
            _power_label(ax, label)
            panel_label(ax, letter)
        handles = _data_handles(
            scan, open_=bool(flags.any()), grey=grey, grey_label=_grey_label(colors, rho_min)
        )
        handles.append(_handle("equilibrium", {**THEORY}))
        fig.legend(
            handles=handles,
            loc="outside upper center",
            ncols=len(handles),
            columnspacing=1.5,
        )
        colors.colorbar(fig, list(axes), fraction=0.035, aspect=25)
        return fig


FIGURES = {
    "fig1_collapse_scan": fig1_collapse_scan,
    "fig2_truncated_distortion": fig2_truncated_distortion,
    "fig3_duality": fig3_duality,
    "fig4_latent_scale": fig4_latent_scale,
}


def save_figure(fig: Figure, outdir: str | os.PathLike, stem: str) -> list[Path]:
    """Write ``fig`` as ``stem.png`` (300 dpi) and ``stem.pdf`` into ``outdir``, atomically.

    Timestamps are left out of the PDF so that identical inputs give identical files.
    """
    paths = []
    with style():
        for fmt, metadata in (("png", {"Software": None}), ("pdf", {"CreationDate": None})):
            path = Path(outdir) / f"{stem}.{fmt}"
            with atomic_path(path) as tmp:
                # tight bounding box: no axis label is ever clipped at the column width
                fig.savefig(
                    tmp,
                    format=fmt,
                    dpi=DPI,
                    metadata=metadata,
                    bbox_inches="tight",
                    pad_inches=0.02,
                )
            paths.append(path)
    return paths


def make_figures(
    scan: xr.Dataset,
    spectra: pd.DataFrame,
    outdir: str | os.PathLike,
    rho_min: float = RHO_MIN,
) -> list[Path]:
    """Draw Figs 1-4 and write each as PNG and PDF into ``outdir``; return the 8 paths.

    ``rho_min`` is the fit cut the spectra were computed with (the run's
    ``spectra.rho_min``): it decides which ranks are coloured and is marked in Fig 1b.
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for stem, draw in FIGURES.items():
        paths += save_figure(draw(scan, spectra, rho_min=rho_min), outdir, stem)
    return paths
