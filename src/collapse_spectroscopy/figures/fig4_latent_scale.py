"""Fig 4 (paper Appendix C), latent-scale diagnostics: ``q_k = m_k + v_k`` and the Jensen
gap ``J_k = log v_k - l_k`` against ``T`` (two panels, full text width; docs/science.md
§6).

The equilibrium ``q = 1``, ``J = 0`` is the same for every rank and is drawn once, dashed
in black. A y axis whose values are all small gets its power of ten in the label
(``×10^-4``) instead of ``0.00030``-style tick labels. For a nonlinear run the
equilibrium is the linear null model's, and the legend says so (docs/science.md §9).
"""

from __future__ import annotations

import pandas as pd
import xarray as xr
from matplotlib.figure import Figure

from ..spectra import RHO_MIN
from .axes import power_label, t_axis
from .common import grid_values, null_model_label, point_flags, rank_colors, temperatures
from .marks import data_handles, grey_rank_label, handle, plot_ranked
from .style import PAGE_WIDTH, REFERENCE_COLOR, THEORY, panel_label, style

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
        axes = fig.subplots(1, 2, sharex=True)
        grey = False
        for ax, letter, (name, label, level) in zip(axes, "ab", PANELS, strict=True):
            if name in scan:
                grey |= plot_ranked(ax, t, grid_values(scan, name), colors, flags)
            ax.axhline(level, color=REFERENCE_COLOR, gid="theory", **THEORY)
            t_axis(ax, t)
            ax.ticklabel_format(axis="y", useOffset=False)  # no "+1" offset near q = 1
            power_label(ax, label)
            panel_label(ax, letter)
        handles = data_handles(
            scan,
            open_=bool(flags.any()),
            grey=grey,
            grey_label=grey_rank_label(colors, rho_min),
        )
        theory = null_model_label(scan, "equilibrium", "linear null model (equilibrium)")
        handles.append(handle(theory, {**THEORY}))
        fig.legend(
            handles=handles,
            loc="outside upper center",
            ncols=len(handles),
            columnspacing=1.5,
        )
        colors.colorbar(fig, list(axes), fraction=0.035, aspect=25)
        return fig
