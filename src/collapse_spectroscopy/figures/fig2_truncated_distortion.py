"""Fig 2, truncated distortion: two log–log panels with a shared y axis, full text width
(docs/science.md §6).

Left: ``Dn_k(T)`` for each rank ``k >= 1`` (points and seed means; ranks beyond the
coloured ones as grey points), dotted horizontal guides at the best level ``Dn*_k``
(spectra ``best_distortion``), dashed equilibrium ``Dn_k(T)``. Right: ``Dn*_k`` against
``k`` (joined by a grey line; hollow where the best point is under-equilibrated) with the
training-PCA reference ``1 - sum_{i<=k} lambda_i/V`` and, where the scan has it, the
split-matched PCA distortion on the evaluation split (for a nonlinear run both are the
linear null model's, and the legend says so; docs/science.md §9). The y range follows the VAE data;
PCA values below it (an exactly dependent mode leaves ``~1e-16``) are drawn as
down-triangles on the bottom edge.

Ranks past the coloured ones (latents never active) sit on a flat grey plateau in (b): a
collapsed latent carries no signal, so keeping it leaves ``Dn*_k = Dn*_n`` up to scatter,
and that level is the best the active latents reach, usually at the lowest scanned ``T``
(the finite-``T`` shortfall of docs/science.md §4.3). A note on the panel says so, and the
colour bar runs on to ``K`` with a grey segment for those ranks, so that it spans the rank
axis.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.figure import Figure

from collapse_spectroscopy.analysis import equilibrium
from collapse_spectroscopy.analysis.thresholds import RHO_MIN
from collapse_spectroscopy.figures.axes import integer_locator, t_axis, t_grid
from collapse_spectroscopy.figures.common import (
    best_from_flagged,
    by_rank,
    column,
    grid_values,
    n_latents,
    null_model_label,
    point_flags,
    positive,
    rank_colors,
    ranks,
    temperatures,
    theory_spectrum,
)
from collapse_spectroscopy.figures.marks import (
    below_axis,
    data_handles,
    dot,
    faces,
    grey_rank_label,
    handle,
    plot_ranked,
    plot_theory,
)
from collapse_spectroscopy.figures.seedbars import band
from collapse_spectroscopy.figures.style import (
    GUIDE,
    INACTIVE_COLOR,
    PAGE_WIDTH,
    REFERENCE_COLOR,
    THEORY,
    RankColors,
    panel_label,
    style,
)


def draw(
    scan: xr.Dataset, spectra: pd.DataFrame, rho_min: float = RHO_MIN, *, selection=None
) -> Figure:
    """Fig 2 of ``scan`` and its spectra table, ranks coloured by the fit cut ``rho_min``;
    ``selection``: which point each ``Dn*_k`` came from (hollow if under-equilibrated)."""
    with style():
        colors = rank_colors(scan, rho_min)
        flags = point_flags(scan)
        fig = Figure(figsize=(PAGE_WIDTH, 2.9), layout="constrained")
        left, right = fig.subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": [1.25, 1]})
        dn = grid_values(scan, "truncated_distortion", last="k")[:, :, 1:]  # k = 1..K
        grey = _distortion_against_t(left, scan, spectra, dn, colors, flags, rho_min)
        grey |= _best_against_rank(right, scan, spectra, dn, colors, flags, rho_min, selection)
        # the bar spans the rank axis of (b), grey ranks included, one rank to a rank
        upto = n_latents(scan) if grey else None
        colors.colorbar(
            fig, [left, right], fraction=0.035, aspect=25, upto=upto, spacing="proportional"
        )
        return fig


def _distortion_against_t(ax, scan, spectra, dn, colors: RankColors, flags, rho_min) -> bool:
    """Panel (a): ``Dn_k(T)``, the guides at ``Dn*_k`` and the equilibrium. Returns
    whether grey (never active) ranks were drawn."""
    t = temperatures(scan)
    tk = theory_spectrum(scan)
    grid = t_grid(t)
    grey = plot_ranked(ax, t, dn, colors, flags, log_y=True)
    best = positive(column(spectra, "best_distortion"))
    for rank, level in zip(ranks(spectra), best, strict=True):
        if colors.colored(rank) and np.isfinite(level):
            ax.axhline(level, color=colors(rank), gid="guide", **GUIDE)
    if tk.size:
        curves = positive(equilibrium.truncated_distortion(tk, grid)[:, 1:])
        plot_theory(ax, grid, curves, colors)
    ax.set_yscale("log")
    t_axis(ax, t)
    ax.set_ylabel(r"truncated distortion $Dn_k$")
    handles = data_handles(
        scan,
        open_=bool(flags.any()),
        grey=grey,
        grey_label=grey_rank_label(colors, rho_min, "k"),
    )
    if tk.size:
        theory = null_model_label(scan, "equilibrium (PCA)", "linear null model (PCA equilibrium)")
        handles.append(handle(theory, THEORY))
    handles.append(handle(r"best $Dn^*_k$ over the scan", GUIDE))
    ax.legend(handles=handles, loc="lower right")
    panel_label(ax, "a")
    return grey


def _best_against_rank(
    ax, scan, spectra, dn, colors: RankColors, flags, rho_min, selection=None
) -> bool:
    """Panel (b): ``Dn*_k`` against ``k`` with the PCA references. Returns whether grey
    (never active) ranks were drawn."""
    rank = ranks(spectra)
    best = positive(column(spectra, "best_distortion"))
    ax.plot(rank, best, color="0.55", lw=0.7, zorder=1)
    open_best = by_rank(best_from_flagged(scan, flags, selection), rank, offset=1)
    ok = np.isfinite(best)
    ax.scatter(
        rank[ok],
        best[ok],
        s=16,
        facecolors=faces(rank[ok], open_best[ok], colors),
        edgecolors=[colors(r) for r in rank[ok]] or "k",
        linewidths=0.7,
        zorder=3,
        gid="vae",
    )
    handles = [dot(r"VAE $Dn^*_k$", ls="-", lw=0.7, c="0.55", mfc=REFERENCE_COLOR)]
    if (open_best & ok).any():
        handles.append(dot("best point under-equilibrated", mfc="white", mew=0.7))
    band(ax, spectra, rank, handles)  # the interval across seeds, with >= 2 seeds
    grey = any(not colors.colored(r) for r in rank[ok])
    if grey:
        handles.append(dot(grey_rank_label(colors, rho_min, "k"), color=INACTIVE_COLOR))
        _plateau_note(ax, scan, dn, best, rank, colors)
    data_min = np.nanmin(np.concatenate([best, positive(dn).ravel(), [1.0]]))
    y_lo = data_min / 2.5
    y_hi = 1.6
    if _pca_references(ax, scan, spectra, rank, y_lo, handles):
        handles.append(dot("PCA below the axis (~0)", marker="v", ms=3.5))
    K = n_latents(scan)
    ax.set_yscale("log")
    ax.set_ylim(y_lo, y_hi)
    ax.set_xlim(0.3, K + 0.7)
    ax.xaxis.set_major_locator(integer_locator(K))
    ax.set_xlabel(r"rank $k$ (latents kept)")
    ax.tick_params(labelleft=True)
    ax.legend(handles=handles, loc="upper right")
    panel_label(ax, "b")
    return grey


def lowest_t_of_best(scan, dn, n: int) -> bool:
    """Is ``Dn*_n`` (the best level of rank ``n``, ``dn (T, seed, k = 1..K)``) reached at
    the lowest scanned temperature? Then the grey plateau is set by the scan's range."""
    column = dn[:, :, n - 1]
    if not np.isfinite(column).any():
        return False
    i_t = np.unravel_index(np.nanargmin(column), column.shape)[0]
    return bool(temperatures(scan)[i_t] == temperatures(scan).min())


def _plateau_note(ax, scan, dn, best, rank, colors: RankColors) -> None:
    """Say on panel (b) why the grey ranks are flat: a latent that is never active adds
    nothing, so ``Dn*_k`` stays at ``Dn*_n``; where that level is taken at the lowest
    scanned ``T``, it is the finite-``T`` shortfall there (docs/science.md §4.3), which a
    lower ``T`` would lower."""
    n = colors.n
    level = best[rank == n]
    if level.size == 0 or not np.isfinite(level[0]):
        return
    text = rf"k > {n}: never active, $Dn^*_k \approx Dn^*_{{{n}}}$"
    if lowest_t_of_best(scan, dn, n):
        text += f"\nits level at the lowest T scanned ({temperatures(scan).min():g})"
    ax.text(
        rank.max() + 0.4,
        level[0] * 1.8,
        text,
        ha="right",
        va="bottom",
        fontsize=6.5,
        color="0.35",
        gid="grey_note",
    )


def _pca_references(ax, scan, spectra, rank, y_lo, handles) -> bool:
    """The PCA distortions of panel (b), train and (where the scan has it) evaluation
    split, with their legend entries appended to ``handles``; values below ``y_lo`` as
    triangles on the bottom edge. Returns whether any value was below."""
    references = []
    pca = column(spectra, "pca_distortion")
    train = null_model_label(scan, "PCA (train)", "linear null model: PCA (train)")
    references.append((pca, train, {"marker": "s", "color": REFERENCE_COLOR}))
    if "pca_eval_distortion" in scan:
        ev = np.asarray(scan["pca_eval_distortion"].values, np.float64).ravel()[1:]
        ev = np.concatenate([ev, np.full(max(0, len(rank) - ev.size), np.nan)])
        # the entry above names PCA the linear null model of a nonlinear run; a longer
        # label here would widen the legend over the PCA curve
        references.append((ev[: len(rank)], "PCA (eval split)", {"marker": "+", "color": "0.45"}))
    off_scale = False
    for raw, label, kw in references:
        if not np.isfinite(raw).any():
            continue
        values = positive(raw)
        shown = np.where(values >= y_lo, values, np.nan)
        (line,) = ax.plot(
            rank,
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
        off_scale |= below_axis(ax, rank, raw, y_lo, kw["color"])
    return off_scale
