"""Fig 1, the collapse scan: ``m_k``, ``rho_k`` and ``l_k`` against ``T`` (three panels,
one column wide; docs/science.md §6).

Middle panel: the fixed-exponent fits ``rho = 1 - T/T_k`` (spectra ``collapse_threshold``,
broad pale bands, drawn for ``T < T_k``) replace the seed-mean lines, a dotted line marks
``rho_min`` (only points above it enter the fits), and the PCA-predicted thresholds
``lambda_k/V`` inside the scanned range are marked by triangles on the top edge. Dashed:
the analytic equilibrium of every panel; where the scan stores the evaluation split's
variance along the training PCs (``pca_eval_ratio``), panels (a) and (b) draw the
split-aware equilibrium instead: the training equilibrium measured on the evaluation split
(docs/science.md §4.7), which is what the measured points should follow. For a nonlinear
run (``model.kind: mlp``) the equilibrium and the PCA thresholds are the linear null
model's and the legend says so (docs/science.md §9).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.figure import Figure

from .. import equilibrium
from ..spectra import RHO_MIN
from .axes import T_LABEL, t_grid, t_range
from .common import (
    column,
    eval_theory_spectrum,
    grid_values,
    null_model_label,
    point_flags,
    rank_colors,
    ranks,
    temperatures,
    theory_spectrum,
)
from .marks import data_handles, grey_rank_label, handle, plot_ranked, plot_theory
from .style import COLUMN_WIDTH, FIT, GUIDE, REFERENCE_COLOR, THEORY, panel_label, style

PANELS = [  # (scan variable, its equilibrium law, y label, draw seed means)
    ("posterior_mean_square", equilibrium.posterior_mean_square, r"mean square $m_k$", True),
    ("signal_fraction", equilibrium.signal_fraction, r"signal fraction $\rho_k$", False),
    ("posterior_log_variance", equilibrium.posterior_log_variance, r"log-variance $l_k$", True),
]


def split_aware_laws(eval_spectrum, n: int) -> dict:
    """Panel variable -> its split-aware equilibrium law ``law(tk, grid)`` (docs/science.md
    §4.7), for the panels whose equilibrium depends on the evaluation split (``m_k`` and
    ``rho_k``; ``l_k`` does not); empty when the scan has no ``pca_eval_ratio``."""
    if eval_spectrum is None or eval_spectrum.size != n or n == 0:
        return {}
    return {
        "posterior_mean_square": lambda tk, grid: equilibrium.split_posterior_mean_square(
            tk, eval_spectrum, grid
        ),
        "signal_fraction": lambda tk, grid: equilibrium.split_signal_fraction(
            tk, eval_spectrum, grid
        ),
    }


def draw(scan: xr.Dataset, spectra: pd.DataFrame, rho_min: float = RHO_MIN) -> Figure:
    """Fig 1 of ``scan`` and its spectra table, ranks coloured by the fit cut ``rho_min``."""
    with style():
        t = temperatures(scan)
        colors = rank_colors(scan, rho_min)
        flags = point_flags(scan)
        tk = theory_spectrum(scan)
        laws = split_aware_laws(eval_theory_spectrum(scan), tk.size)
        grid = t_grid(t)
        fig = Figure(figsize=(COLUMN_WIDTH, 5.8), layout="constrained")
        axes = fig.subplots(3, 1, sharex=True)
        grey = False
        for ax, letter, (name, law, label, mean) in zip(axes, "abc", PANELS, strict=True):
            if name in scan:
                grey |= plot_ranked(ax, t, grid_values(scan, name), colors, flags, mean=mean)
            if tk.size:
                law = laws.get(name, law)
                plot_theory(ax, grid, law(tk, grid), colors)
            ax.set_ylabel(label)
            panel_label(ax, letter)
        ax = axes[1]
        lo, hi = t_range(t)
        thresholds = column(spectra, "collapse_threshold")
        for rank, tk_fit in zip(ranks(spectra), thresholds, strict=True):
            if not (np.isfinite(tk_fit) and tk_fit > 0) or tk_fit <= lo:
                continue
            # the fitted law is the equilibrium's rho = 1 - T/T_k at the fitted T_k
            tt = np.geomspace(lo, min(tk_fit, hi), 80)
            fit = equilibrium.signal_fraction([tk_fit], tt)[:, 0]
            ax.plot(tt, fit, color=colors(rank), gid="fit", **FIT)
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
        handles = data_handles(
            scan,
            open_=bool(flags.any()),
            grey=grey,
            grey_label=grey_rank_label(colors, rho_min),
        )
        handles.append(handle(r"(b) fit $\rho_k = 1-T/T_k$", FIT))
        handles.append(handle(rf"(b) fit cut $\rho_{{min}}$ = {rho_min:g}", GUIDE))
        if tk.size:
            theory = null_model_label(
                scan, "equilibrium (PCA)", "linear null model (PCA equilibrium)"
            )
            pca_tk = null_model_label(
                scan, r"(b) PCA $T_k = \lambda_k/V$", r"(b) linear null model $T_k = \lambda_k/V$"
            )
            if laws:  # (a) and (b): the training equilibrium seen on the eval split
                theory += "; (a, b) on the eval split"
            handles.append(handle(theory, THEORY))
            handles.append(handle(pca_tk, {"ls": "none", "marker": "v", "ms": 4}))
        fig.legend(
            handles=handles,
            loc="outside upper center",
            ncols=2,
            columnspacing=1.0,
            handletextpad=0.4,
        )
        colors.colorbar(fig, list(axes), fraction=0.04, aspect=40)
        return fig
