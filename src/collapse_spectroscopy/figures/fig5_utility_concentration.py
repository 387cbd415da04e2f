"""Fig 5, utility concentration: how many variables a distortion tolerance needs, the VAE
against the linear null model (two panels, full text width; docs/science.md §9).

(a) ``Dn*_k`` against ``k >= 1`` (log y; ``Dn*_0 = 1`` for every model, by definition;
the rank axis starts at 1, as Fig 2b's): the VAE (spectra ``best_distortion``; hollow
where the best scan point is under-equilibrated), the PCA
truncation curve ``1 - sum_{i<=k} lambda_i/V`` of the training spectrum over all its
components (the linear null model), the split-matched PCA distortion on the evaluation
split where the scan has it, and, when the run names a linear ``null_run`` on the same
dataset, that run's measured ``Dn*_k``, and, when the run has the autoencoder baseline
(``baselines.autoencoder``), the distortion of its deterministic autoencoder of ``k``
latents (the same normalization; hollow where that ``k`` stopped at its budget before the
patience passed, as the VAE's under-equilibrated points): what any ``k``-dimensional
nonlinear code of the run's architecture reaches; dotted guides at the run's tolerances
``eps``.
The y range holds every curve and tolerance; a PCA level at float rounding of 0 (at most
:data:`.pca.PCA_FLOOR`: an exactly dependent feature) is a down-triangle on the bottom
edge, as in Fig 2b. The VAE's ranks past its last active one (a latent whose ``rho``
never exceeds ``rho_min``, as in Figs 1-4) are grey points off its line: they carry no
signal, and their ``Dn*_k`` differ from the last active one's by scatter (``~1e-8``).

(b) ``n(eps) = min{k : Dn*_k <= eps}`` against ``eps`` (log x) as step curves for the VAE,
PCA, the null run and the autoencoder baseline, all from
:func:`.concentration.variables_needed` (the function that writes ``summary.json``). A
step curve of a truncation curve is exact: ``n`` only changes at the curve's own levels,
and it is evaluated there and at the tolerances. Markers, in
each model's marker and colour: the values at the run's tolerances (``summary.json``'s
``utility_concentration``). A VAE counts its active latents only (the null run too, by its
table's ``fit_points``): the scatter of the spare latents' levels made ``n`` climb to
``K - 1`` at one ``eps`` just below the last active level, a vertical line that read as
"11 variables needed". A curve stops where its model never reaches ``eps``; a tolerance it
never reaches is an up-triangle on the top edge, in its colour ("not reached"). The
legend gives each model's participation ratio PR (:func:`.concentration.participation_ratio`
of the positive utilities, or of ``lambda_k/V``); the caption says what PR is.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from collapse_spectroscopy.analysis.concentration import (
    TOLERANCES,
    participation_ratio,
    variables_needed,
)
from collapse_spectroscopy.analysis.pca import PCA_FLOOR, pca_truncation_distortion
from collapse_spectroscopy.analysis.thresholds import RHO_MIN
from collapse_spectroscopy.figures.axes import integer_locator
from collapse_spectroscopy.figures.common import (
    NullRun,
    best_from_flagged,
    column,
    n_active,
    point_flags,
    positive,
    table_n_active,
)
from collapse_spectroscopy.figures.marks import below_axis, dot, grey_rank_label
from collapse_spectroscopy.figures.style import (
    GUIDE,
    INACTIVE_COLOR,
    INACTIVE_POINTS,
    PAGE_WIDTH,
    REFERENCE_COLOR,
    RankColors,
    panel_label,
    style,
)

VAE_COLOR = RankColors(1)(1)  # the colour of rank 1 in Figs 1-4: the run's VAE
NULL_COLOR = "#D55E00"  # vermillion (Okabe-Ito): the measured linear null run
AE_COLOR = "#009E73"  # bluish green (Okabe-Ito): the autoencoder baseline
EVAL_COLOR = "0.45"  # the split-matched PCA, as in Fig 2b

# line and marker of each curve; the null run is a broad pale band under the thin dashed
# PCA curve it should follow (a linear VAE's Dn*_k is PCA's, docs/science.md §4.5). PCA's
# open square is larger than the VAE's dot: where they agree the dot sits inside it, not
# over its rim (which read as a third, "coloured square" mark)
LOOK = {
    "vae": {"color": VAE_COLOR, "ls": "-", "lw": 0.9, "marker": "o", "ms": 3.2, "zorder": 4},
    "pca": {"color": REFERENCE_COLOR, "ls": "--", "lw": 0.7, "marker": "s", "ms": 5.0,
            "mfc": "none", "mew": 0.7, "zorder": 3},
    "pca_eval": {"color": EVAL_COLOR, "ls": "--", "lw": 0.5, "marker": "+", "ms": 3.5,
                 "mew": 0.7, "zorder": 2.5},
    "null": {"color": NULL_COLOR, "ls": "-", "lw": 2.4, "alpha": 0.45, "marker": "D",
             "ms": 3.6, "mew": 0, "zorder": 2, "solid_capstyle": "butt"},
    # dash-dot and a pentagon: no other curve's line or marker (triangles are edge marks);
    # larger than the VAE's dot, which it lies under, so that where the two need the same
    # n(eps) (the manifold's 2) the dot sits inside a green pentagon rather than hiding it
    "ae": {"color": AE_COLOR, "ls": "-.", "lw": 0.9, "marker": "p", "ms": 6.0, "mew": 0,
           "zorder": 3.5},
}  # fmt: skip
# the gids of a curve's filled and hollow markers in panel (a) (the VAE's, as before)
MARK_GIDS = {"vae": ("vae", "open"), "ae": ("ae", "ae_open")}


@dataclass(frozen=True)
class Curve:
    """One truncation curve ``levels[k]``, ``k = 0, 1, ...`` (``levels[0] = 1``), with the
    weights of its participation ratio, for the VAE which levels come from an
    under-equilibrated scan point, and the levels of a VAE's never-active ranks
    (``spare``, ``k = levels.size, ...``), which ``n(eps)`` does not count."""

    key: str
    label: str
    levels: np.ndarray
    weights: np.ndarray | None = None
    open_: np.ndarray | None = None
    spare: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def needed(self, eps) -> np.ndarray:
        """``n(eps)`` at each ``eps`` (NaN where the curve never reaches it)."""
        out = [variables_needed(self.levels, float(e)) for e in np.atleast_1d(eps)]
        return np.array([np.nan if n is None else n for n in out], dtype=np.float64)

    def legend_label(self) -> str:
        if self.weights is None:
            return self.label
        pr = participation_ratio(self.weights)
        return f"{self.label}, PR = {'n/a' if pr is None else format(pr, '.3g')}"


def split_active(levels: np.ndarray, active: int | None) -> tuple[np.ndarray, np.ndarray]:
    """``levels`` (``k = 0..K``) as the counted ones, ``k = 0..active``, and the spare ones
    past them; all counted when ``active`` is unknown (``None``)."""
    if active is None:
        return levels, np.zeros(0)
    return levels[: active + 1], levels[active + 1 :]


def autoencoder_curve(table: pd.DataFrame) -> Curve:
    """The autoencoder baseline's curve from its table (``k = 1, 2, ...``, columns ``k``,
    ``distortion``, ``under_equilibrated``): ``levels[0] = 1`` (no latent: the training
    mean, as ``Dn*_0``), and its utilities ``levels[k-1] - levels[k]`` as PR weights."""
    table = table.sort_values("k")
    levels = np.r_[1.0, table["distortion"].to_numpy(dtype=np.float64)]
    flags = table["under_equilibrated"].astype(str).str.lower().eq("true").to_numpy()
    label = "autoencoder baseline"
    return Curve("ae", label, levels, levels[:-1] - levels[1:], np.r_[False, flags])


def curves(
    scan: xr.Dataset,
    spectra: pd.DataFrame,
    null_run: NullRun | None = None,
    rho_min: float = RHO_MIN,
    autoencoder: pd.DataFrame | None = None,
    selection=None,
):
    """The curves of Fig 5: VAE, PCA (train), PCA (eval split, panel a only), the null run
    and the autoencoder baseline, those the inputs have. A VAE counts its ranks up to the
    last whose ``rho`` ever exceeds ``rho_min`` (from the scan, or for the null run its
    table's ``fit_points``)."""
    best = np.r_[1.0, column(spectra, "best_distortion")]  # Dn*_0 = 1 by definition
    open_ = np.zeros(best.size, dtype=bool)
    if "truncated_distortion" in scan:
        flags = best_from_flagged(scan, point_flags(scan), selection)
        open_[: min(best.size, flags.size)] = flags[: best.size]
    active = n_active(scan, rho_min) if "signal_fraction" in scan else table_n_active(spectra)
    best, spare = split_active(best, active)
    vae = Curve("vae", "VAE", best, column(spectra, "utility"), open_[: best.size], spare)
    out = [vae]
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
        levels, _ = split_active(levels, table_n_active(null_run.spectra))
        label = f"linear VAE, run {null_run.name}"
        out.append(Curve("null", label, levels, column(null_run.spectra, "utility")))
    if autoencoder is not None:
        out.append(autoencoder_curve(autoencoder))
    return out


def draw(
    scan: xr.Dataset,
    spectra: pd.DataFrame,
    rho_min: float = RHO_MIN,
    *,
    tolerances=TOLERANCES,
    null_run: NullRun | None = None,
    autoencoder: pd.DataFrame | None = None,
    selection=None,
) -> Figure:
    """Fig 5 of ``scan`` and its spectra table at the distortion tolerances ``tolerances``
    (the run's ``spectra.tolerances``), beside the linear ``null_run`` and the
    ``autoencoder`` baseline's table (``baselines/autoencoder.csv``) if given; the VAE
    counts the ranks whose ``rho`` ever exceeds ``rho_min``."""
    with style():
        eps = np.sort(np.asarray(tolerances, dtype=np.float64).ravel())
        drawn = curves(scan, spectra, null_run, rho_min, autoencoder, selection)
        fig = Figure(figsize=(PAGE_WIDTH, 3.3), layout="constrained")
        left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.25, 1]})
        off_scale = _levels_against_k(left, drawn, eps)
        # (b) compares like with like too: the VAE's test-split levels against PCA's on the
        # same split (pca_eval), beside the training spectrum's
        counted = [c for c in drawn if c.weights is not None or c.key == "pca_eval"]
        unreached = _needed_against_eps(right, counted, eps)
        # one legend above both panels: a concentrating VAE fills any corner of either. Each
        # model's entry shows its line and its marker, as drawn in both panels; the marks
        # are drawn in one panel each, so no entry names a panel
        handles = [Line2D([], [], label=c.legend_label(), **LOOK[c.key]) for c in drawn]
        vae = LOOK["vae"]
        if any(ln.get_gid() in ("open", "n_vae_open") for ax in (left, right) for ln in ax.lines):
            handles.append(dot("best point under-equilibrated", mfc="white", mew=0.7,
                               mec=vae["color"], color=vae["color"]))  # fmt: skip
        if any(ln.get_gid() in ("ae_open", "n_ae_open") for ax in (left, right) for ln in ax.lines):
            ae = LOOK["ae"]
            handles.append(dot("autoencoder under-equilibrated", marker=ae["marker"], ms=ae["ms"],
                               mfc="white", mew=0.7, mec=ae["color"]))  # fmt: skip
        spare = next((c for c in drawn if c.key == "vae" and c.spare.size), None)
        if spare is not None:
            label = "VAE " + grey_rank_label(RankColors(spare.levels.size - 1), rho_min, "k")
            handles.append(dot(label, color=INACTIVE_COLOR, ms=3.0))
        if off_scale:
            handles.append(dot("PCA below the axis (~0)", marker="v", ms=3.5))
        handles.append(
            Line2D([], [], color=REFERENCE_COLOR, label=r"tolerances $\epsilon$", **GUIDE)
        )
        if unreached:
            handles.append(dot(r"$\epsilon$ not reached", marker="^", ms=3.5))
        fig.legend(
            handles=handles,
            loc="outside upper center",
            ncols=4,
            columnspacing=1.2,
            handletextpad=0.4,
        )
        return fig


def _levels_against_k(ax, drawn: list[Curve], eps: np.ndarray) -> bool:
    """Panel (a): the truncation curves against ``k >= 1``, the VAE's never-active ranks as
    grey points, the tolerances as guides. Returns whether a PCA value lies below the axis
    (drawn as a triangle on its bottom edge)."""
    # the y range holds every level but a PCA level at float rounding of 0 (an exactly
    # dependent feature), which goes to the bottom edge as a triangle
    shown = [np.where(c.levels > PCA_FLOOR, c.levels, np.nan) for c in drawn]
    spare = [c.spare for c in drawn]
    y_lo = np.nanmin(np.concatenate([*shown, *spare, eps, [1.0]])) / 2.5
    off_scale = False
    for c in drawn:
        # k = 0 is Dn*_0 = 1 for every model: the rank axis starts at 1, as in Fig 2b
        k = np.arange(1, c.levels.size)
        look = LOOK[c.key]
        raw = c.levels[1:]
        values = positive(raw)
        if c.key.startswith("pca"):
            off_scale |= below_axis(ax, k, raw, y_lo, look["color"])
            values = np.where(values >= y_lo, values, np.nan)
        ok = np.isfinite(values)
        if c.key in MARK_GIDS:  # a hollow marker: the level's training is under-equilibrated
            line = {key: v for key, v in look.items() if key not in ("marker", "ms", "mew")}
            ax.plot(k[ok], values[ok], gid=f"curve_{c.key}", **line)
            open_ = c.open_[1:]
            filled, hollow = MARK_GIDS[c.key]
            for sel, face, gid in ((~open_, look["color"], filled), (open_, "white", hollow)):
                if (sel & ok).any():
                    ax.plot(k[sel & ok], values[sel & ok], ls="none", marker=look["marker"],
                            ms=look["ms"], mfc=face, mec=look["color"], mew=0.7,
                            zorder=look["zorder"] + 1, gid=gid)  # fmt: skip
            if c.key == "vae":
                k_spare = np.arange(c.levels.size, c.levels.size + c.spare.size)
                ax.plot(k_spare, positive(c.spare), color=INACTIVE_COLOR, gid="vae_spare",
                        **{**INACTIVE_POINTS, "ms": 3.2, "alpha": 1.0})  # fmt: skip
        else:
            ax.plot(k[ok], values[ok], gid=f"curve_{c.key}", **look)
    for e in eps:
        ax.axhline(e, color=REFERENCE_COLOR, gid="tolerance", **GUIDE)
    n_max = max(c.levels.size + c.spare.size for c in drawn) - 1
    ax.set_yscale("log")
    ax.set_ylim(y_lo, 1.6)
    ax.set_xlim(0.3, max(n_max, 1) + 0.7)  # Fig 2b's rank axis
    ax.xaxis.set_major_locator(integer_locator(max(n_max, 1)))
    ax.set_xlabel(r"rank $k$ (latents or components kept)")
    ax.set_ylabel(r"best truncated distortion $Dn^*_k$")
    panel_label(ax, "a")
    return off_scale


def _needed_against_eps(ax, drawn: list[Curve], eps: np.ndarray) -> bool:
    """Panel (b): ``n(eps)`` as exact step curves, markers at the tolerances, and at a
    tolerance a model never reaches an up-triangle on the top edge in its colour. Returns
    whether there was one."""
    x_lo, x_hi = eps.min() / 3.0, max(eps.max(), 1.0) * 1.5
    n_top = 0.0
    n_rows = 0  # models with a tolerance they never reach
    for c in drawn:
        look = LOOK[c.key]
        jumps = positive(c.levels)
        jumps = jumps[np.isfinite(jumps) & (jumps > x_lo) & (jumps < x_hi)]
        grid = np.unique(np.concatenate([[x_lo, x_hi], eps, jumps]))
        line = {key: v for key, v in look.items() if key not in ("marker", "ms", "mfc", "mew")}
        n_grid = c.needed(grid)
        ax.step(grid, n_grid, where="post", gid=f"step_{c.key}", **line)
        if np.isfinite(n_grid).any():
            n_top = max(n_top, float(np.nanmax(n_grid)))
        n_eps = c.needed(eps)
        at = np.isfinite(n_eps)
        open_ = np.zeros(eps.size, dtype=bool)
        if c.open_ is not None:
            open_[at] = c.open_[n_eps[at].astype(int)]
        kw = {key: v for key, v in look.items() if key not in ("ls", "lw", "alpha")}
        kw["zorder"] = look["zorder"] + 2  # markers above every step line
        for sel, gid in ((at & ~open_, f"n_{c.key}"), (at & open_, f"n_{c.key}_open")):
            if sel.any():
                mk = (
                    {**kw, "mfc": "white", "mec": look["color"], "mew": 0.7}
                    if "open" in gid
                    else kw
                )
                ax.plot(eps[sel], n_eps[sel], ls="none", gid=gid, **mk)
        if (~at).any():  # n(eps) is undefined there: say so, along the top edge
            # one row per model that misses a tolerance, so that none hides another's
            row = 0.96 - 0.05 * n_rows
            n_rows += 1
            ax.plot(eps[~at], np.full((~at).sum(), row), transform=ax.get_xaxis_transform(),
                    ls="none", marker="^", ms=4.5, mew=0, color=look["color"],
                    zorder=kw["zorder"], gid=f"unreached_{c.key}")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(-0.3, n_top + 0.8 + 0.35 * max(n_rows - 1, 0))  # room for the rows
    ax.yaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=3))
    ax.set_xlabel(r"distortion tolerance $\epsilon$")
    ax.set_ylabel(r"variables needed $n(\epsilon)$")
    panel_label(ax, "b")
    return n_rows > 0
