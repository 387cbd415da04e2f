"""Fig 3, the utility–threshold duality: ``u_k`` against ``T_k``, one point per ranked
mode, one column wide (docs/science.md §4.5, §6).

Filled: the VAE (spectra ``utility`` against ``collapse_threshold``); hollow where the
table flags the rank ``under_equilibrated``: leaving the under-equilibrated scan points out
moves its threshold or utility by more than :data:`.thresholds.EQUILIBRATION_TOLERANCE`
(:func:`.thresholds.under_equilibrated_ranks`, computed from the scan for a table without the
column). A rank without a threshold (:func:`.thresholds.rank_threshold`: too few fit points,
or a non-positive utility) is left out, as the table leaves it out. Open squares on the
diagonal: the PCA prediction ``(lambda_k/V, lambda_k/V)``; dark crosses (x): the
split-matched PCA utility on the evaluation split against ``lambda_k/V`` (where the table
has it). Log–log with the guide ``u = T``. For a nonlinear run the PCA prediction is the
linear null model's, and the legend says so (docs/science.md §9).

Layers, bottom to top: guide, squares, the VAE circles, the seed-interval bars, the
crosses. A circle is drawn with a translucent face (:data:`VAE_FACE_ALPHA`), so that a bar
of its own colour shorter than the circle shows on it: a filled circle is tinted in its
rank's colour, a hollow one white.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure

from collapse_spectroscopy.analysis.pca import PCA_FLOOR
from collapse_spectroscopy.analysis.thresholds import EQUILIBRATION_TOLERANCE, RHO_MIN
from collapse_spectroscopy.figures.axes import log_ticks
from collapse_spectroscopy.figures.common import (
    column,
    is_nonlinear,
    null_model_label,
    positive,
    rank_colors,
    rank_flags,
    ranks,
)
from collapse_spectroscopy.figures.marks import dot
from collapse_spectroscopy.figures.seedbars import BAR, error_bars
from collapse_spectroscopy.figures.style import COLUMN_WIDTH, style

VAE_FACE_ALPHA = 0.45  # a tint: a bar of the same colour drawn above stays visible on it
VAE_ZORDER = 3  # above the squares (2), below the seed bars (seedbars.BAR) and the crosses
CROSS_ZORDER = BAR["zorder"] + 0.5
UNDER_EQUILIBRATED_TEXT = (
    f"moves > {100 * EQUILIBRATION_TOLERANCE:g} % without\nunder-equilibrated points"
)


def draw(scan: xr.Dataset, spectra: pd.DataFrame, rho_min: float = RHO_MIN) -> Figure:
    """Fig 3 of ``scan`` and its spectra table, ranks coloured by the fit cut ``rho_min``."""
    with style():
        colors = rank_colors(scan, rho_min)
        rank = ranks(spectra)
        thr = positive(column(spectra, "collapse_threshold"))
        util = positive(column(spectra, "utility"))
        lam = column(spectra, "pca_ratio")
        lam = np.where(np.isfinite(lam) & (lam > PCA_FLOOR), lam, np.nan)
        ev = positive(column(spectra, "pca_eval_utility"))
        open_ = rank_flags(scan, spectra, rank, rho_min)
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
                edgecolors=[colors(r) for r in rank[ok]],
                zorder=2,
                gid="pca",
            )
            pca = null_model_label(
                scan, r"PCA $\lambda_k/V$", r"linear null model (PCA $\lambda_k/V$)"
            )
            handles.append(dot(pca, marker="s", ms=5.0, mfc="none", mew=0.8))
            pts.append(lam[ok])
        ok_ev = np.isfinite(lam) & np.isfinite(ev)
        if ok_ev.any():
            ax.plot(
                lam[ok_ev],
                ev[ok_ev],
                ls="none",
                marker="x",  # not "+": the seed-interval bars' legend entry is one
                ms=4.5,  # arms reach past a VAE circle sitting on it
                mew=0.8,
                color="0.2",
                zorder=CROSS_ZORDER,
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
            zorder=VAE_ZORDER,
            facecolors=_faces(rank[ok], open_[ok], colors),
            edgecolors=[colors(r) for r in rank[ok]] or "k",
            gid="vae",
        )
        handles.insert(0, dot(r"VAE $(T_k, u_k)$", mfc=_tint("0.15"), mec="0.15", mew=0.7))
        if (open_ & ok).any():
            handles.insert(1, dot(UNDER_EQUILIBRATED_TEXT, mfc="white", mew=0.7))
        pts += [thr[ok], util[ok]]
        error_bars(ax, spectra, rank, thr, util, colors, handles)  # with >= 2 seeds
        _square_log_axes(ax, pts, handles, empirical=is_nonlinear(scan))
        ax.legend(handles=handles, loc="upper left", handletextpad=0.3)
        colors.colorbar(fig, ax, fraction=0.05, aspect=25)
        return fig


def _tint(color):
    """``color`` with the VAE circles' face alpha."""
    return to_rgba(color, VAE_FACE_ALPHA)


def _faces(ranks, open_, colors):
    """Circle faces: white where ``open_`` (under-equilibrated), else the rank's tint."""
    out = [("white" if o else _tint(colors(r))) for r, o in zip(ranks, open_, strict=True)]
    return out or "k"


def _square_log_axes(ax, pts, handles, empirical: bool = False) -> None:
    """Equal log axes around every value drawn in ``pts``, with the diagonal ``u = T``
    (its legend entry appended to ``handles``). ``empirical``: a nonlinear run, whose
    ``T_k`` are empirical fits and for which the duality ``u_k = T_k`` is the linear null
    model's, not a law (docs/science.md §9); the labels say so."""
    allv = np.concatenate(pts) if pts else np.zeros(0)
    allv = allv[np.isfinite(allv) & (allv > 0)]
    if allv.size:
        lo, hi = allv.min() / 2.0, allv.max() * 2.0
    else:
        lo, hi = 1e-3, 1.0
    diagonal = "$u = T$ (linear null model's duality)" if empirical else "$u = T$"
    ax.plot([lo, hi], [lo, hi], color="0.5", lw=0.6, ls="-", zorder=1, label=diagonal)
    handles.append(ax.lines[-1])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    log_ticks(ax.xaxis, lo, hi)
    log_ticks(ax.yaxis, lo, hi)
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel(
        r"empirical collapse threshold $T_k$" if empirical else r"collapse threshold $T_k$"
    )
    ax.set_ylabel(r"utility $u_k$")
