"""Fig 3, the utility–threshold duality: ``u_k`` against ``T_k``, one point per ranked
mode, one column wide (docs/science.md §4.5, §6).

Filled: the VAE (spectra ``utility`` against the fitted ``collapse_threshold``); hollow
where the fit or the utility uses an under-equilibrated point; modes without a finite
positive pair (no threshold fit, or a non-positive utility) are left out. Open squares on
the diagonal: the PCA prediction ``(lambda_k/V, lambda_k/V)``; grey plus signs: the
split-matched PCA utility on the evaluation split against ``lambda_k/V`` (where the table
has it). Log–log with the guide ``u = T``. For a nonlinear run the PCA prediction is the
linear null model's, and the legend says so (docs/science.md §9).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.figure import Figure

from ..spectra import PCA_FLOOR, RHO_MIN
from .axes import log_ticks
from .common import (
    best_from_flagged,
    by_rank,
    column,
    fit_uses_flagged,
    null_model_label,
    point_flags,
    positive,
    rank_colors,
    ranks,
)
from .marks import dot, faces
from .seedbars import error_bars
from .style import COLUMN_WIDTH, style


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
        open_ = _uses_flagged(scan, rank, rho_min)
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
            facecolors=faces(rank[ok], open_[ok], colors),
            edgecolors=[colors(r) for r in rank[ok]] or "k",
            gid="vae",
        )
        handles.insert(0, dot(r"VAE $(T_k, u_k)$"))
        if (open_ & ok).any():
            handles.insert(1, dot("uses an under-equilibrated point", mfc="white", mew=0.7))
        pts += [thr[ok], util[ok]]
        error_bars(ax, spectra, rank, thr, util, colors, handles)  # with >= 2 seeds
        _square_log_axes(ax, pts, handles)
        ax.legend(handles=handles, loc="upper left", handletextpad=0.3)
        colors.colorbar(fig, ax, fraction=0.05, aspect=25)
        return fig


def _uses_flagged(scan, rank, rho_min) -> np.ndarray:
    """For each rank: do ``T_k`` (its threshold fit) or ``u_k`` (``Dn*_k`` and
    ``Dn*_{k-1}``) use an under-equilibrated point?"""
    flags = point_flags(scan)
    best_open = best_from_flagged(scan, flags)
    return (
        by_rank(fit_uses_flagged(scan, flags, rho_min), rank)
        | by_rank(best_open, rank, offset=1)  # Dn*_k
        | by_rank(best_open, rank)  # Dn*_{k-1}
    )


def _square_log_axes(ax, pts, handles) -> None:
    """Equal log axes around every value drawn in ``pts``, with the diagonal ``u = T``
    (its legend entry appended to ``handles``)."""
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
    log_ticks(ax.xaxis, lo, hi)
    log_ticks(ax.yaxis, lo, hi)
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel(r"collapse threshold $T_k$")
    ax.set_ylabel(r"utility $u_k$")
