"""Fig 1, the collapse scan: ``m_k``, ``rho_k`` and ``l_k`` against ``T`` (three panels,
one column wide; docs/science.md §6).

Middle panel: the fixed-exponent fits ``rho = 1 - T/T_k`` (spectra ``collapse_threshold``,
broad pale bands, drawn for ``T < T_k``; dotted for a rank the table flags
``under_equilibrated``, docs/science.md §4.1) replace the seed-mean lines, a dotted line marks
``rho_min`` (only points above it enter the fits), and the PCA-predicted thresholds
``lambda_k/V`` inside the scanned range are marked by triangles on the top edge. Dashed:
the analytic equilibrium of every panel; where the scan stores the evaluation split's
variance along the training PCs (``pca_eval_ratio``), panels (a) and (b) draw the
split-aware equilibrium instead: the training equilibrium measured on the evaluation split
(docs/science.md §4.7), which is what the measured points should follow. For a nonlinear
run (``model.kind: mlp``) the equilibrium and the PCA thresholds are the linear null
model's and the legend says so (docs/science.md §9).

``fig1_view="modes"`` (the run's ``figures.fig1_view``) draws the linear VAE's per-mode
totals instead of the ranked latents (docs/science.md §10.1): colour = PCA mode ``k`` (the
latents whose decoder column lies closest to training PC ``k``, summed), panel (c) the log
of the mode's posterior variance ``log v_k`` (equal to ``l_k`` for a latent of constant
variance, as at equilibrium), and the fits in (b) are the spectra table's
``mode_collapse_threshold``. A mode spread over several latents then counts once, and its
``rho`` follows ``1 - T/T_k`` where each member latent alone falls short of it.

``refined`` (the temperatures each refinement round added, docs/science.md §4.9): one row
of ticks per round along the bottom of panel (c), round 1 lowest, so that the points the
scan placed itself read apart from the configured grid.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.figure import Figure

from collapse_spectroscopy.analysis import equilibrium
from collapse_spectroscopy.analysis.thresholds import RHO_MIN
from collapse_spectroscopy.config import settings
from collapse_spectroscopy.errors import InputError
from collapse_spectroscopy.figures.axes import t_axis, t_grid, t_range
from collapse_spectroscopy.figures.common import (
    column,
    eval_theory_spectrum,
    grid_values,
    null_model_label,
    point_flags,
    positive,
    rank_colors,
    rank_flags,
    ranks,
    temperatures,
    theory_spectrum,
)
from collapse_spectroscopy.figures.marks import (
    data_handles,
    grey_rank_label,
    handle,
    plot_ranked,
    plot_theory,
)
from collapse_spectroscopy.figures.style import (
    COLUMN_WIDTH,
    FIT,
    GUIDE,
    REFERENCE_COLOR,
    THEORY,
    panel_label,
    style,
)

# the fit band of a rank spectra.csv flags under_equilibrated: dotted, the hollow of a band
FIT_FLAGGED = {**FIT, "ls": (0, (1, 0.8))}

PANELS = [  # (scan variable, its equilibrium law, y label, draw seed means)
    ("posterior_mean_square", equilibrium.posterior_mean_square, r"mean square $m_k$", True),
    ("signal_fraction", equilibrium.signal_fraction, r"signal fraction $\rho_k$", False),
    ("posterior_log_variance", equilibrium.posterior_log_variance, r"log-variance $l_k$", True),
]
# the same panels from the per-mode totals (scanfile.PER_MODE); the log of the mode's
# variance stands for l_k, as at equilibrium, where each latent's variance is constant
MODE_PANELS = [
    ("mode_posterior_mean_square", *PANELS[0][1:]),
    ("mode_signal_fraction", *PANELS[1][1:]),
    ("mode_posterior_variance", PANELS[2][1], r"log-variance $\log v_k$", True),
]
VIEWS = tuple(settings.key_schema("figures.fig1_view")["enum"])  # latents, modes
# the tick rows of the refinement rounds: a vertical bar, a row every ROUND_ROW of the
# panel's height above its bottom edge
ROUND_TICK = {"ls": "none", "marker": "|", "ms": 5, "mew": 0.8}
ROUND_ROW = 0.07


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


def view_values(scan: xr.Dataset, name: str, view: str) -> np.ndarray:
    """Panel variable ``name`` on ``(T, seed, rank or mode)``; a mode's variance as its log."""
    if view == "latents":
        return grid_values(scan, name)
    values = grid_values(scan, name, last="mode")
    return np.log(positive(values)) if name == "mode_posterior_variance" else values


def _check_view(scan: xr.Dataset, fig1_view) -> bool:
    """Whether ``fig1_view`` is ``modes``; raises InputError for an unknown view, or for
    ``modes`` on a scan without per-mode totals."""
    if fig1_view not in VIEWS:
        raise InputError(f"figures.fig1_view = {fig1_view!r}: expected one of {', '.join(VIEWS)}")
    modes = fig1_view == "modes"
    if modes and "mode_signal_fraction" not in scan:
        raise InputError(
            "figures.fig1_view = 'modes': the scan has no per-mode totals (mode_signal_fraction"
            "; a linear run writes them): expected fig1_view latents"
        )
    return modes


def _draw_panels(axes, scan: xr.Dataset, t, tk, colors, flags, fig1_view: str) -> bool:
    """The measured points and seed means of every panel with the equilibrium under them;
    returns whether grey (never active) ranks were drawn."""
    modes = fig1_view == "modes"
    laws = split_aware_laws(eval_theory_spectrum(scan), tk.size)
    laws = {f"mode_{k}" if modes else k: law for k, law in laws.items()}
    grid = t_grid(t)
    grey = False
    panels = MODE_PANELS if modes else PANELS
    for ax, letter, (name, law, label, mean) in zip(axes, "abc", panels, strict=True):
        if name in scan:
            values = view_values(scan, name, fig1_view)
            grey |= plot_ranked(ax, t, values, colors, flags, mean=mean)
        if tk.size:
            law = laws.get(name, law)
            plot_theory(ax, grid, law(tk, grid), colors)
        ax.set_ylabel(label)
        panel_label(ax, letter)
    return grey


def _draw_fits(ax, scan, spectra, t, tk, colors, rho_min: float, modes: bool) -> np.ndarray:
    """Panel (b)'s fitted thresholds: a band ``rho = 1 - T/T_k`` per rank (or mode) below
    its ``T_k``, the ``rho_min`` guide and the PCA thresholds on the top edge; returns the
    ranks' under_equilibrated flags."""
    lo, hi = t_range(t)
    thresholds = column(spectra, "mode_collapse_threshold" if modes else "collapse_threshold")
    # a rank spectra.csv flags under_equilibrated (its T_k or u_k moves by more than
    # 5 % without the under-equilibrated points): its band dotted, as Fig 3's circle
    # is hollow; the flag is the ranked latents', so the mode view draws none
    rank_of = ranks(spectra)
    flagged = np.zeros(rank_of.size, bool) if modes else rank_flags(scan, spectra, rank_of, rho_min)
    for rank, tk_fit, weak in zip(rank_of, thresholds, flagged, strict=True):
        if not (np.isfinite(tk_fit) and tk_fit > 0) or tk_fit <= lo:
            continue
        # the fitted law is the equilibrium's rho = 1 - T/T_k at the fitted T_k
        tt = np.geomspace(lo, min(tk_fit, hi), 80)
        fit = equilibrium.signal_fraction([tk_fit], tt)[:, 0]
        style_ = FIT_FLAGGED if weak else FIT
        ax.plot(tt, fit, color=colors(rank), gid="fit_flagged" if weak else "fit", **style_)
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
    return flagged


def _draw_rounds(ax, refined) -> None:
    """A row of ticks per refinement round at the temperatures it added (panel (c))."""
    for i, temps in enumerate(refined, start=1):
        ax.plot(
            temps,
            np.full(len(temps), ROUND_ROW * i),
            transform=ax.get_xaxis_transform(),
            color=REFERENCE_COLOR,
            clip_on=False,
            zorder=6,
            gid=f"refine_round_{i}",
            **ROUND_TICK,
        )


def _round_handles(refined) -> list:
    """The legend entry of the tick rows: one, naming the rounds and what each added."""
    if not refined:
        return []
    counts = ", ".join(str(len(temps)) for temps in refined)
    label = f"T added by refinement rounds 1-{len(refined)} ({counts}), rows bottom up"
    return [handle(label if len(refined) > 1 else f"T added by refinement ({counts})", ROUND_TICK)]


def _legend_handles(scan, tk, colors, flags, rho_min: float, modes: bool, grey, flagged) -> list:
    """The legend entries: the data's, then the fits', the fit cut's and the theory's."""
    handles = data_handles(
        scan,
        open_=bool(flags.any()),
        grey=grey,
        grey_label=grey_rank_label(colors, rho_min, "mode" if modes else "rank"),
    )
    if modes:
        handles[0].set_label(f"{handles[0].get_label()}: mode totals")
    # each of these marks is drawn in one panel only, so the legend names no panel;
    # that (a, b)'s equilibrium is measured on the eval split is the caption's to say
    # the law holds near a linear model's equilibrium only: for a nonlinear family the fit
    # is an empirical summary of where rho falls, and the label says so (docs/science.md §9)
    fit = null_model_label(scan, r"fit $\rho_k = 1-T/T_k$", r"empirical fit $\rho_k = 1-T/T_k$")
    handles.append(handle(fit, FIT))
    if flagged.any():
        handles.append(handle("fit of an under-equilibrated rank", FIT_FLAGGED))
    handles.append(handle(rf"fit cut $\rho_{{min}}$ = {rho_min:g}", GUIDE))
    if tk.size:
        theory = null_model_label(scan, "equilibrium (PCA)", "linear null model (PCA equilibrium)")
        pca_tk = null_model_label(
            scan, r"PCA $T_k = \lambda_k/V$", r"null model $T_k = \lambda_k/V$"
        )
        handles.append(handle(theory, THEORY))
        handles.append(handle(pca_tk, {"ls": "none", "marker": "v", "ms": 4}))
    return handles


def draw(
    scan: xr.Dataset,
    spectra: pd.DataFrame,
    rho_min: float = RHO_MIN,
    *,
    fig1_view="latents",
    refined=(),
) -> Figure:
    """Fig 1 of ``scan`` and its spectra table, ranks coloured by the fit cut ``rho_min``;
    ``fig1_view`` ``modes``: the per-mode totals; ``refined``: the temperatures each
    refinement round added, a tick row each (the module docstring)."""
    modes = _check_view(scan, fig1_view)
    with style():
        t = temperatures(scan)
        # modes: colours as for the ranks, from the mode totals' rho on dim mode
        colors = (
            rank_colors(scan, rho_min, "mode_signal_fraction", "mode")
            if modes
            else rank_colors(scan, rho_min)
        )
        flags = point_flags(scan)
        tk = theory_spectrum(scan)
        fig = Figure(figsize=(COLUMN_WIDTH, 5.8), layout="constrained")
        axes = fig.subplots(3, 1, sharex=True)
        grey = _draw_panels(axes, scan, t, tk, colors, flags, fig1_view)
        flagged = _draw_fits(axes[1], scan, spectra, t, tk, colors, rho_min, modes)
        _draw_rounds(axes[-1], refined)
        t_axis(axes[-1], t)
        handles = _legend_handles(scan, tk, colors, flags, rho_min, modes, grey, flagged)
        fig.legend(
            handles=handles + _round_handles(refined),
            loc="outside upper center",
            ncols=2,
            columnspacing=1.0,
            handletextpad=0.4,
        )
        label = "PCA mode $k$" if modes else "rank $k$"
        upto = int(scan.sizes["mode" if modes else "latent"]) if grey else None
        colors.colorbar(fig, list(axes), label=label, fraction=0.04, aspect=40, upto=upto)
        return fig
