"""The paper's Figs 1-4 from a gathered scan and its spectra table (SPEC §6).

:func:`make_figures` writes ``fig1_collapse_scan``, ``fig2_truncated_distortion``,
``fig3_duality`` and ``fig4_latent_scale``, each as PNG (300 dpi) and PDF, atomically.
Each figure also has its own function returning a :class:`matplotlib.figure.Figure`
(built without pyplot, so nothing needs closing and no GUI backend is touched).

Inputs: ``scan`` is the dataset of :func:`.scanfile.gather` (dims ``T``, ``seed``,
``latent`` = rank by signal fraction, ``k``, ``mode``); ``spectra`` is the table of
:func:`.spectra.spectra_table` (or its CSV read back).

Conventions shared by all four figures (see :mod:`.plotstyle`):

- **Colour = ranked mode.** Ranks ``1..n`` are coloured on a discrete sequential map with a
  colour bar, where ``n`` is the larger of (a) the highest rank whose signal fraction ever
  exceeds :data:`.spectra.RHO_MIN` at some scan point and (b) the number of PCA modes with
  ``lambda_k/V`` above :data:`PCA_FLOOR` (capped at ``K``). Higher ranks — latents that
  never become active, e.g. the spare latents of ``K = 32 > d = 19`` — are drawn as small
  light-grey points without mean lines, fits, guides or theory, behind the coloured data.
- **Data**: one small marker per (T, seed) (seeds pooled) and a solid line through the
  seed mean (``nanmean``, connected across temperatures where no seed ran). In Fig 1's
  middle panel the line is the fixed-exponent fit ``rho = 1 - T/T_k`` of the spectra
  table instead. Fig 2's right panel and Fig 3 draw one point per ranked mode.
- **Figure sizes**: Figs 1 and 3 are one column wide (3.4 in), Figs 2 and 4 (two panels
  side by side) the full text width (7 in).
- **Theory**: the analytic equilibrium (:mod:`.equilibrium`) of the *training* PCA
  spectrum ``pca_ratio`` (the spectrum the model is trained on, not a synthetic source's
  declared ``true_spectrum``), thin dashed, in the colour of the matching rank (rank ``k``
  <-> the k-th largest eigenvalue). Modes with ``lambda_k/V <= PCA_FLOOR`` (an exactly
  dependent feature, ``~1e-16``) are left out; with ``K < d`` only the top ``K`` modes are.
  In Fig 4 the equilibrium is the same for every rank (``q = 1``, ``J = 0``) and is drawn
  once, in black.
- Temperatures are plotted on a log axis over the scanned range; NaN (missing scan
  points) and, on log axes, non-positive values are skipped.
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
from matplotlib.ticker import MaxNLocator

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
    panel_label,
    style,
)
from .spectra import PCA_FLOOR, RHO_MIN

T_LABEL = r"normalized temperature $T = \beta\sigma^2/V$"
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


def rank_colors(scan: xr.Dataset) -> RankColors:
    """Colours for the ranks that ever get active or have a PCA mode (module docstring)."""
    K = _n_latents(scan)
    n_active = 0
    if "signal_fraction" in scan:
        rho = _values(scan, "signal_fraction")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            peak = np.nanmax(rho.reshape(-1, rho.shape[-1]), axis=0)
        active = np.flatnonzero(np.nan_to_num(peak, nan=-np.inf) > RHO_MIN)
        n_active = int(active[-1]) + 1 if active.size else 0
    n = max(n_active, theory_spectrum(scan).size, 1)
    return RankColors(min(n, K))


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


def _plot_ranked(ax, t, values, colors: RankColors, *, mean: bool = True, log_y: bool = False):
    """Per-seed points and seed-mean lines of ``values (T, seed, rank)``, grey ranks first."""
    n_t, n_seed, n_rank = values.shape
    if log_y:
        values = _positive(values)
    x = np.repeat(t[:, None], n_seed, axis=1).ravel()
    means = _nanmean(values, axis=1)
    order = list(range(n_rank - 1, colors.n - 1, -1)) + list(range(colors.n - 1, -1, -1))
    for r in order:  # grey ranks at the back, then rank n ... 1 so that rank 1 is on top
        rank = r + 1
        y = values[:, :, r].ravel()
        if not np.isfinite(y).any():
            continue
        if colors.colored(rank):
            ax.plot(x, y, color=colors(rank), **POINTS)
            if mean:
                ok = np.isfinite(means[:, r])  # connect across missing scan points
                ax.plot(t[ok], means[ok, r], color=colors(rank), **MEAN)
        else:
            ax.plot(x, y, color=INACTIVE_COLOR, **INACTIVE_POINTS)


def _plot_theory(ax, grid, curves, colors: RankColors, first_rank: int = 1):
    """Dashed equilibrium curves ``curves (G, n)``, column ``i`` = rank ``first_rank + i``."""
    for i in range(curves.shape[1]):
        rank = first_rank + i
        ax.plot(grid, curves[:, i], color=colors(rank), gid="theory", **THEORY)


def _dot(label: str, **kw) -> Line2D:
    """A neutral legend proxy for rank-coloured markers."""
    kw = {"color": REFERENCE_COLOR, "ls": "none", "marker": "o", "ms": 4.0, "mew": 0, **kw}
    return Line2D([], [], label=label, **kw)


def _style_legend_handles(
    *, points=True, mean=True, fit=False, theory=True, marks=False, theory_label="equilibrium (PCA)"
):
    c = REFERENCE_COLOR
    handles = []
    if points:
        handles.append(Line2D([], [], color=c, **{**POINTS, "ms": 3.0}, label="per seed"))
    if mean:
        handles.append(Line2D([], [], color=c, **MEAN, label="seed mean"))
    if fit:
        handles.append(Line2D([], [], color=c, **FIT, label=r"fit $1-T/T_k$"))
    if theory:
        handles.append(Line2D([], [], color=c, **THEORY, label=theory_label))
    if marks:
        handles.append(
            Line2D([], [], color=c, ls="none", marker="v", ms=4, mew=0, label=r"$\lambda_k/V$")
        )
    return handles


# ---------------------------------------------------------------------------------------
# The four figures


def fig1_collapse_scan(scan: xr.Dataset, spectra: pd.DataFrame) -> Figure:
    """Fig 1, the collapse scan: ``m_k``, ``rho_k`` and ``l_k`` against ``T`` (three panels).

    Middle panel: the fixed-exponent fits ``rho = 1 - T/T_k`` (spectra
    ``collapse_threshold``, solid, drawn for ``T < T_k``) replace the seed-mean lines, and
    the PCA-predicted thresholds ``lambda_k/V`` inside the scanned range are marked by
    triangles on the top edge. Dashed: the analytic equilibrium of every panel.
    """
    with style():
        t = _temperatures(scan)
        colors = rank_colors(scan)
        tk = theory_spectrum(scan)
        grid = _t_grid(t)
        fig = Figure(figsize=(COLUMN_WIDTH, 5.4), layout="constrained")
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
        for ax, letter, (name, law, label, mean) in zip(axes, "abc", panels, strict=True):
            if name in scan:
                _plot_ranked(ax, t, _values(scan, name), colors, mean=mean)
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
        fig.legend(
            handles=_style_legend_handles(fit=True, theory=tk.size > 0, marks=tk.size > 0),
            loc="outside upper center",
            ncols=3,
            columnspacing=1.0,
            handletextpad=0.4,
        )
        colors.colorbar(fig, list(axes), fraction=0.04, aspect=40)
        return fig


def fig2_truncated_distortion(scan: xr.Dataset, spectra: pd.DataFrame) -> Figure:
    """Fig 2, truncated distortion (two panels, log–log, shared y).

    Left: ``Dn_k(T)`` for each rank ``k >= 1`` (points and seed means; ranks beyond the
    coloured ones as grey points), dotted horizontal guides at the best level ``Dn*_k``
    (spectra ``best_distortion``), dashed equilibrium ``Dn_k(T)``. Right: ``Dn*_k`` against
    ``k`` with the training-PCA reference ``1 - sum_{i<=k} lambda_i/V`` and, where the scan
    has it, the split-matched PCA distortion on the evaluation split. The y range follows
    the VAE data; PCA points below it are drawn as down-triangles on the bottom edge.
    """
    with style():
        t = _temperatures(scan)
        colors = rank_colors(scan)
        tk = theory_spectrum(scan)
        grid = _t_grid(t)
        K = _n_latents(scan)
        fig = Figure(figsize=(PAGE_WIDTH, 2.9), layout="constrained")
        left, right = fig.subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": [1.25, 1]})

        dn = _values(scan, "truncated_distortion", last="k")[:, :, 1:]  # k = 1..K
        _plot_ranked(left, t, dn, colors, log_y=True)
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
        left.set_ylabel(r"truncated distortion $D_k$")
        left.legend(
            handles=_style_legend_handles(theory=tk.size > 0)
            + [Line2D([], [], color=REFERENCE_COLOR, **GUIDE, label=r"best $D^*_k$")],
            loc="lower right",
        )
        panel_label(left, "a")

        # Right: best level against rank, with PCA references.
        right.plot(ranks, best, color="0.55", lw=0.7, zorder=1)
        point_colors = [colors(r) for r in ranks]
        ok = np.isfinite(best)
        right.scatter(
            ranks[ok],
            best[ok],
            c=[point_colors[i] for i in np.flatnonzero(ok)] or "k",
            s=14,
            linewidths=0,
            zorder=3,
            gid="vae",
        )
        handles = [_dot(r"VAE $D^*_k$")]
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
                )
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


def _integer_locator(n: int):
    return MaxNLocator(nbins=min(n, 8), integer=True, steps=[1, 2, 4, 5, 10])


def fig3_duality(scan: xr.Dataset, spectra: pd.DataFrame) -> Figure:
    """Fig 3, utility–threshold duality: ``u_k`` against ``T_k``, one point per ranked mode.

    Filled: the VAE (spectra ``utility`` against the fitted ``collapse_threshold``); modes
    without a finite positive pair (no threshold fit, or a non-positive utility) are left
    out. Open circles on the diagonal: the PCA prediction ``(lambda_k/V, lambda_k/V)``;
    grey plus signs: the split-matched PCA utility on the evaluation split against
    ``lambda_k/V`` (where the table has it). Log–log with the guide ``u = T``.
    """
    with style():
        colors = rank_colors(scan)
        ranks = _ranks(spectra)
        thr = _positive(_column(spectra, "collapse_threshold"))
        util = _positive(_column(spectra, "utility"))
        lam = _column(spectra, "pca_ratio")
        lam = np.where(np.isfinite(lam) & (lam > PCA_FLOOR), lam, np.nan)
        ev = _positive(_column(spectra, "pca_eval_utility"))
        fig = Figure(figsize=(COLUMN_WIDTH, 3.0), layout="constrained")
        ax = fig.subplots()

        pts, handles = [], []
        ok = np.isfinite(lam)
        if ok.any():
            ax.scatter(
                lam[ok],
                lam[ok],
                s=30,
                facecolors="none",
                linewidths=0.8,
                edgecolors=[colors(r) for r in ranks[ok]],
                zorder=2,
                gid="pca",
            )
            handles.append(_dot(r"PCA $\lambda_k/V$", ms=5.0, mfc="none", mew=0.8))
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
            s=14,
            linewidths=0,
            zorder=4,
            c=[colors(r) for r in ranks[ok]] or "k",
            gid="vae",
        )
        handles.insert(0, _dot(r"VAE $(T_k, u_k)$"))
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
        ax.set_aspect("equal", adjustable="box")
        ax.set_xlabel(r"collapse threshold $T_k$")
        ax.set_ylabel(r"utility $u_k$")
        ax.legend(handles=handles, loc="upper left", handletextpad=0.3)
        colors.colorbar(fig, ax, fraction=0.05, aspect=25)
        return fig


def fig4_latent_scale(scan: xr.Dataset, spectra: pd.DataFrame) -> Figure:
    """Fig 4 (Appendix C), latent-scale diagnostics: ``q_k = m_k + v_k`` and the Jensen gap
    ``J_k = log v_k - l_k`` against ``T`` (two panels); equilibrium ``q = 1``, ``J = 0``
    dashed in black (the same for every rank)."""
    with style():
        t = _temperatures(scan)
        colors = rank_colors(scan)
        fig = Figure(figsize=(PAGE_WIDTH, 2.6), layout="constrained")
        axes = fig.subplots(1, 2, sharex=True)
        panels = [
            ("latent_scale", r"latent scale $q_k = m_k + v_k$", 1.0),
            ("jensen_gap", r"Jensen gap $J_k = \log v_k - l_k$", 0.0),
        ]
        for ax, letter, (name, label, level) in zip(axes, "ab", panels, strict=True):
            if name in scan:
                _plot_ranked(ax, t, _values(scan, name), colors)
            ax.axhline(level, color=REFERENCE_COLOR, gid="theory", **THEORY)
            ax.set_xscale("log")
            ax.set_xlim(*_t_range(t))
            ax.set_xlabel(T_LABEL)
            ax.set_ylabel(label)
            panel_label(ax, letter)
        fig.legend(
            handles=_style_legend_handles(theory_label="equilibrium"),
            loc="outside upper center",
            ncols=3,
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


def make_figures(scan: xr.Dataset, spectra: pd.DataFrame, outdir: str | os.PathLike) -> list[Path]:
    """Draw Figs 1-4 and write each as PNG and PDF into ``outdir``; return the 8 paths."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for stem, draw in FIGURES.items():
        paths += save_figure(draw(scan, spectra), outdir, stem)
    return paths
