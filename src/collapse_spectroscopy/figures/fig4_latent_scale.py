"""Fig 4 (paper Appendix C), latent-scale diagnostics: ``q_k = m_k + v_k`` and the Jensen
gap ``J_k = log v_k - l_k`` against ``T`` (two panels, full text width; docs/science.md
§6).

(a) ``q_k`` on a linear axis; the equilibrium ``q = 1``, the same for every rank, is drawn
once, dashed in black. A y axis whose values are all small gets its power of ten in the
label (``×10^-4``) instead of ``0.00030``-style tick labels.

(b) ``J_k`` on a log axis with a floor, :data:`J_FLOOR`: the equilibrium ``J = 0`` cannot
sit on a log axis, so it is the grey band below the floor, and a value at or below the
floor is drawn on the band's edge. ``J >= 0`` always (Jensen), and a linear VAE's trained
``J`` is of order ``1e-4`` at every ``T`` (the jitter of its log-variance head about 0); on
a linear axis that scatter filled the panel as spikes, read as structure. Above the floor,
the log axis shows a real gap (a posterior variance that varies with ``x``, as a nonlinear
encoder may learn) by its size.

For a nonlinear run the equilibrium is the linear null model's, and the legend says so
(docs/science.md §9).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from collapse_spectroscopy.analysis.thresholds import RHO_MIN
from collapse_spectroscopy.figures.axes import log_ticks, power_label, t_axis
from collapse_spectroscopy.figures.common import (
    grid_values,
    n_latents,
    null_model_label,
    point_flags,
    rank_colors,
    temperatures,
)
from collapse_spectroscopy.figures.marks import data_handles, grey_rank_label, handle, plot_ranked
from collapse_spectroscopy.figures.style import (
    PAGE_WIDTH,
    REFERENCE_COLOR,
    THEORY,
    panel_label,
    style,
)

# The floor of panel (b). J is the gap between the measured mean log-variance l_k and the
# one-mode theory's log v_k (docs/science.md §3); to leading order J = Var_x(log s2)/2, so
# J < 1e-3 means the posterior variance is the same for every sample to sqrt(2e-3) ~ 4.5 %
# rms, and l_k = log v_k to 1e-3 nats, 1e-4 of the several nats l_k spans in Fig 1c: the
# assumption of constant variance holds to what the figures resolve. The demo's linear VAE
# measures J ~ 1e-4 (up to 6e-4), the optimizer's jitter of the log-variance head about its
# equilibrium 0: below the floor, not spikes above it.
J_FLOOR = 1e-3

PANELS = [  # (scan variable, y label, equilibrium level)
    ("latent_scale", r"latent scale $q_k = m_k + v_k$", 1.0),
    ("jensen_gap", r"Jensen gap $J_k = \log v_k - l_k$", 0.0),
]


def draw(scan: xr.Dataset, spectra: pd.DataFrame, rho_min: float = RHO_MIN) -> Figure:
    """Fig 4 of ``scan``, ranks coloured by the fit cut ``rho_min`` (the spectra table is
    not drawn: every figure takes the same arguments)."""
    with style():
        t = temperatures(scan)
        colors = rank_colors(scan, rho_min)
        flags = point_flags(scan)
        fig = Figure(figsize=(PAGE_WIDTH, 2.7), layout="constrained")
        left, right = fig.subplots(1, 2, sharex=True)
        (q_name, q_label, q_level), (j_name, j_label, _) = PANELS
        grey = False
        if q_name in scan:
            grey |= plot_ranked(left, t, grid_values(scan, q_name), colors, flags)
        left.axhline(q_level, color=REFERENCE_COLOR, gid="theory", **THEORY)
        t_axis(left, t)
        left.ticklabel_format(axis="y", useOffset=False)  # no "+1" offset near q = 1
        power_label(left, q_label)
        panel_label(left, "a")
        if j_name in scan:
            grey |= plot_ranked(
                right, t, floored(grid_values(scan, j_name)), colors, flags, log_y=True
            )
        _jensen_axis(right, scan, t, j_label)
        handles = data_handles(
            scan,
            open_=bool(flags.any()),
            grey=grey,
            grey_label=grey_rank_label(colors, rho_min),
        )
        theory = null_model_label(scan, "equilibrium", "linear null model (equilibrium)")
        handles.append(handle(theory, {**THEORY}))  # q = 1 in (a)
        expected = null_model_label(scan, "as at equilibrium", "as in the null model")
        floor_label = rf"J $\leq$ {J_FLOOR:g}: $\approx$ 0, {expected}"
        handles.append(Patch(color=FLOOR_COLOR, lw=0, label=floor_label))
        fig.legend(
            handles=handles,
            loc="outside upper center",
            ncols=len(handles),
            columnspacing=1.5,
        )
        upto = n_latents(scan) if grey else None  # the bar spans the grey ranks too
        colors.colorbar(fig, [left, right], fraction=0.035, aspect=25, upto=upto)
        return fig


FLOOR_COLOR = "0.9"  # the band of J below the floor: lighter than any drawn mark


def floored(jensen: np.ndarray) -> np.ndarray:
    """``J`` with values at or below :data:`J_FLOOR` put on the floor (NaN stays NaN)."""
    with np.errstate(invalid="ignore"):
        return np.where(np.isnan(jensen), np.nan, np.maximum(jensen, J_FLOOR))


def _jensen_axis(ax, scan, t, label: str) -> None:
    """Panel (b)'s log axis: from half the floor, the band ``J <= J_FLOOR`` (the
    equilibrium ``J = 0``), up to twice the largest ``J`` (at least a decade)."""
    top, largest = J_FLOOR * 10, np.nan
    if "jensen_gap" in scan:
        values = grid_values(scan, "jensen_gap")
        if np.isfinite(values).any():
            largest = float(np.nanmax(values))
            top = max(top, 2.0 * largest)
    bottom = J_FLOOR / 2
    ax.axhspan(bottom, J_FLOOR, color=FLOOR_COLOR, lw=0, zorder=0, gid="j_floor")
    if largest <= J_FLOOR:  # say it in words: the panel is otherwise one row of points
        ax.text(
            0.5,
            np.sqrt(bottom * J_FLOOR),
            f"every $J_k \\leq$ {J_FLOOR:g}: no gap above the floor",
            transform=ax.get_yaxis_transform(),
            ha="center",
            va="center",
            fontsize=6.5,
            color="0.35",
            gid="j_note",
        )
    ax.set_yscale("log")
    ax.set_ylim(bottom, top)
    log_ticks(ax.yaxis, bottom, top)
    t_axis(ax, t)
    ax.set_ylabel(label)
    panel_label(ax, "b")
