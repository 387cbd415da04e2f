"""Fig 5, utility concentration: how many variables a distortion tolerance needs, the VAE
against the linear null model (two panels, full text width; docs/science.md §9).

(a) ``Dn*_k`` against ``k`` (log y, from ``Dn*_0 = 1``): the VAE (spectra
``best_distortion``; hollow where the best scan point is under-equilibrated), the PCA
truncation curve ``1 - sum_{i<=k} lambda_i/V`` of the training spectrum over all its
components (the linear null model), the split-matched PCA distortion on the evaluation
split where the scan has it, and, when the run names a linear ``null_run`` on the same
dataset, that run's measured ``Dn*_k``; dotted guides at the run's tolerances ``eps``.
The y range holds every curve and tolerance; a PCA level at float rounding of 0 (at most
:data:`.spectra.PCA_FLOOR`: an exactly dependent feature) is a down-triangle on the bottom
edge, as in Fig 2b.

(b) ``n(eps) = min{k : Dn*_k <= eps}`` against ``eps`` (log x) as step curves for the VAE,
PCA and the null run, all from :func:`.concentration.variables_needed` (the function that
writes ``summary.json``). A step curve of a truncation curve is exact: ``n`` only changes
at the curve's own levels, and it is evaluated there and at the tolerances. Markers: the
values at the run's tolerances (``summary.json``'s ``utility_concentration``). A curve
stops where its model never reaches ``eps`` (the VAE within ``K`` latents). The legend
gives each model's participation ratio (:func:`.concentration.participation_ratio` of the
positive utilities, or of ``lambda_k/V``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from ..concentration import TOLERANCES, participation_ratio, variables_needed
from ..spectra import PCA_FLOOR, RHO_MIN, pca_truncation_distortion
from .axes import integer_locator
from .common import NullRun, best_from_flagged, column, point_flags, positive
from .marks import below_axis, dot
from .style import GUIDE, PAGE_WIDTH, REFERENCE_COLOR, RankColors, panel_label, style

VAE_COLOR = RankColors(1)(1)  # the colour of rank 1 in Figs 1-4: the run's VAE
NULL_COLOR = "#D55E00"  # vermillion (Okabe-Ito): the measured linear null run
EVAL_COLOR = "0.45"  # the split-matched PCA, as in Fig 2b

# line and marker of each curve; the null run is a broad pale band under the thin dashed
# PCA curve it should follow (a linear VAE's Dn*_k is PCA's, docs/science.md §4.5)
LOOK = {
    "vae": {"color": VAE_COLOR, "ls": "-", "lw": 0.9, "marker": "o", "ms": 3.2, "zorder": 4},
    "pca": {"color": REFERENCE_COLOR, "ls": "--", "lw": 0.7, "marker": "s", "ms": 3.2,
            "mfc": "none", "mew": 0.7, "zorder": 3},
    "pca_eval": {"color": EVAL_COLOR, "ls": "--", "lw": 0.5, "marker": "+", "ms": 3.5,
                 "mew": 0.7, "zorder": 2.5},
    "null": {"color": NULL_COLOR, "ls": "-", "lw": 2.4, "alpha": 0.45, "marker": "D",
             "ms": 3.6, "mew": 0, "zorder": 2, "solid_capstyle": "butt"},
}  # fmt: skip


@dataclass(frozen=True)
class Curve:
    """One truncation curve ``levels[k]``, ``k = 0, 1, ...`` (``levels[0] = 1``), with the
    weights of its participation ratio and, for the VAE, which levels come from an
    under-equilibrated scan point."""

    key: str
    label: str
    levels: np.ndarray
    weights: np.ndarray | None = None
    open_: np.ndarray | None = None

    def needed(self, eps) -> np.ndarray:
        """``n(eps)`` at each ``eps`` (NaN where the curve never reaches it)."""
        out = [variables_needed(self.levels, float(e)) for e in np.atleast_1d(eps)]
        return np.array([np.nan if n is None else n for n in out], dtype=np.float64)

    def legend_label(self) -> str:
        if self.weights is None:
            return self.label
        pr = participation_ratio(self.weights)
        return f"{self.label}, PR = {'n/a' if pr is None else format(pr, '.3g')}"


def curves(scan: xr.Dataset, spectra: pd.DataFrame, null_run: NullRun | None = None):
    """The curves of Fig 5: VAE, PCA (train), PCA (eval split, panel a only) and the null
    run, those the inputs have."""
    best = np.r_[1.0, column(spectra, "best_distortion")]  # Dn*_0 = 1 by definition
    open_ = np.zeros(best.size, dtype=bool)
    if "truncated_distortion" in scan:
        flags = best_from_flagged(scan, point_flags(scan))
        open_[: min(best.size, flags.size)] = flags[: best.size]
    out = [Curve("vae", "VAE", best, column(spectra, "utility"), open_)]
    ratio = (
        np.asarray(scan["pca_ratio"].values, dtype=np.float64).ravel()
        if "pca_ratio" in scan
        else column(spectra, "pca_ratio")
    )
    ratio = ratio[np.isfinite(ratio)]
    if ratio.size:
        pca = pca_truncation_distortion(ratio)
        out.append(Curve("pca", "PCA, train (linear null model)", pca, ratio))
    if "pca_eval_distortion" in scan:
        ev = np.asarray(scan["pca_eval_distortion"].values, dtype=np.float64).ravel()
        out.append(Curve("pca_eval", "PCA, eval split", ev))
    if null_run is not None:
        levels = np.r_[1.0, column(null_run.spectra, "best_distortion")]
        label = f"linear VAE, run {null_run.name}"
        out.append(Curve("null", label, levels, column(null_run.spectra, "utility")))
    return out


def draw(
    scan: xr.Dataset,
    spectra: pd.DataFrame,
    rho_min: float = RHO_MIN,
    *,
    tolerances=TOLERANCES,
    null_run: NullRun | None = None,
) -> Figure:
    """Fig 5 of ``scan`` and its spectra table at the distortion tolerances ``tolerances``
    (the run's ``spectra.tolerances``), beside the linear ``null_run`` if given. ``rho_min``
    is not used (every figure takes the same arguments)."""
    with style():
        eps = np.sort(np.asarray(tolerances, dtype=np.float64).ravel())
        drawn = curves(scan, spectra, null_run)
        fig = Figure(figsize=(PAGE_WIDTH, 3.3), layout="constrained")
        left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.25, 1]})
        off_scale = _levels_against_k(left, drawn, eps)
        _needed_against_eps(right, [c for c in drawn if c.weights is not None], eps)
        # one legend above both panels: a concentrating VAE fills any corner of either
        handles = [Line2D([], [], label=c.legend_label(), **LOOK[c.key]) for c in drawn]
        vae = LOOK["vae"]
        if any(ln.get_gid() in ("open", "n_vae_open") for ax in (left, right) for ln in ax.lines):
            handles.append(dot("best point under-equilibrated", mfc="white", mew=0.7,
                               mec=vae["color"], color=vae["color"]))  # fmt: skip
        if off_scale:
            handles.append(dot("(a) PCA below the axis (~0)", marker="v", ms=3.5))
        eps_text = ", ".join(f"{e:g}" for e in eps[::-1])
        label = rf"(a) tolerances $\epsilon$ = {eps_text}"
        handles.append(Line2D([], [], color=REFERENCE_COLOR, label=label, **GUIDE))
        handles.append(dot(r"(b) markers: $n(\epsilon)$ at the tolerances (summary.json)"))
        fig.legend(
            handles=handles,
            loc="outside upper center",
            ncols=3,
            columnspacing=1.2,
            handletextpad=0.4,
            title="PR: participation ratio of the utilities",
        )
        return fig


def _levels_against_k(ax, drawn: list[Curve], eps: np.ndarray) -> bool:
    """Panel (a): the truncation curves against ``k``, the tolerances as guides. Returns
    whether a PCA value lies below the axis (drawn as a triangle on its bottom edge)."""
    # the y range holds every level but a PCA level at float rounding of 0 (an exactly
    # dependent feature), which goes to the bottom edge as a triangle
    shown = [np.where(c.levels > PCA_FLOOR, c.levels, np.nan) for c in drawn]
    y_lo = np.nanmin(np.concatenate([*shown, eps, [1.0]])) / 2.5
    off_scale = False
    for c in drawn:
        k = np.arange(c.levels.size)
        look = LOOK[c.key]
        values = positive(c.levels)
        if c.key.startswith("pca"):
            off_scale |= below_axis(ax, k, c.levels, y_lo, look["color"])
            values = np.where(values >= y_lo, values, np.nan)
        ok = np.isfinite(values)
        if c.key == "vae":  # a hollow marker: the best point is under-equilibrated
            line = {key: v for key, v in look.items() if key not in ("marker", "ms")}
            ax.plot(k[ok], values[ok], gid="curve_vae", **line)
            for sel, face, gid in ((~c.open_, look["color"], "vae"), (c.open_, "white", "open")):
                if (sel & ok).any():
                    ax.plot(k[sel & ok], values[sel & ok], ls="none", marker="o", ms=3.2,
                            mfc=face, mec=look["color"], mew=0.7, zorder=5, gid=gid)  # fmt: skip
        else:
            ax.plot(k[ok], values[ok], gid=f"curve_{c.key}", **look)
    for e in eps:
        ax.axhline(e, color=REFERENCE_COLOR, gid="tolerance", **GUIDE)
    n_max = max(c.levels.size for c in drawn) - 1
    ax.set_yscale("log")
    ax.set_ylim(y_lo, 1.6)
    ax.set_xlim(-0.4, n_max + 0.4)
    ax.xaxis.set_major_locator(integer_locator(max(n_max, 1)))
    ax.set_xlabel(r"rank $k$ (latents or components kept)")
    ax.set_ylabel(r"best truncated distortion $Dn^*_k$")
    panel_label(ax, "a")
    return off_scale


def _needed_against_eps(ax, drawn: list[Curve], eps: np.ndarray) -> None:
    """Panel (b): ``n(eps)`` as exact step curves, markers at the tolerances."""
    x_lo, x_hi = eps.min() / 3.0, max(eps.max(), 1.0) * 1.5
    for c in drawn:
        look = LOOK[c.key]
        jumps = positive(c.levels)
        jumps = jumps[np.isfinite(jumps) & (jumps > x_lo) & (jumps < x_hi)]
        grid = np.unique(np.concatenate([[x_lo, x_hi], eps, jumps]))
        line = {key: v for key, v in look.items() if key not in ("marker", "ms", "mfc", "mew")}
        ax.step(grid, c.needed(grid), where="post", gid=f"step_{c.key}", **line)
        n_eps = c.needed(eps)
        at = np.isfinite(n_eps)
        open_ = np.zeros(eps.size, dtype=bool)
        if c.open_ is not None:
            open_[at] = c.open_[n_eps[at].astype(int)]
        for sel, gid in ((at & ~open_, f"n_{c.key}"), (at & open_, f"n_{c.key}_open")):
            if sel.any():
                kw = {key: v for key, v in look.items() if key not in ("ls", "lw", "alpha")}
                kw["zorder"] = look["zorder"] + 2  # markers above every step line
                if gid.endswith("_open"):
                    kw = {**kw, "mfc": "white", "mec": look["color"], "mew": 0.7}
                ax.plot(eps[sel], n_eps[sel], ls="none", gid=gid, **kw)
    ax.set_xscale("log")
    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(bottom=-0.3)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=3))
    ax.set_xlabel(r"distortion tolerance $\epsilon$")
    ax.set_ylabel(r"variables needed $n(\epsilon)$")
    panel_label(ax, "b")
