"""Drawings of the latent maps and loadings (docs/science.md §10); not paper figures, so
not in :data:`.figures.REGISTRY`. Built without pyplot, in the figures' style.

- :func:`draw_latent_means`: one panel per active rank, the posterior mean ``mu_k(x)`` on
  the input grid, diverging colour map centred at 0, symmetric robust limits (the 98th
  percentile of ``|mu_k|``), a colour bar per panel, lon/lat (or CRS) ticks.
- :func:`draw_loadings`: the rank x feature heatmap of the loadings, same colour map; for
  a nonlinear model with the RMS of the local Jacobian and its sign agreement below it.

Both give each rank's ``rho`` as :func:`.maps.latent_maps.rho_text` writes it, as the GeoTIFF's band
descriptions do (:meth:`.maps.LatentMaps.labels`), so that a map, its loadings row and
its band read the same number.
"""

from __future__ import annotations

import math

import numpy as np

from collapse_spectroscopy.figures.style import PAGE_WIDTH, style
from collapse_spectroscopy.maps.latent_maps import Grid, LatentMaps, output_nodata, rho_text

CMAP = "RdBu_r"  # diverging: blue negative, white 0, red positive
ROBUST_PERCENTILE = (
    98  # colour limits +-P98 of |values|: a few extreme cells do not wash out the rest
)
SIGN_NOTE = "each latent's sign: its largest-|loading| feature positive"


def robust_limit(values: np.ndarray) -> float:
    """The symmetric colour limit: the 98th percentile of ``|values|`` (finite ones)."""
    v = np.abs(np.asarray(values, dtype=np.float64))
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 1.0
    lim = float(np.percentile(v, ROBUST_PERCENTILE))
    return lim if lim > 0 else float(v.max()) or 1.0


def draw_latent_means(bands: np.ndarray, maps: LatentMaps, grid: Grid, title: str):
    """The figure of ``bands`` ((n, h, w), NaN or nodata off the valid cells)."""
    from matplotlib.figure import Figure

    n = bands.shape[0]
    cols = min(3, n)
    rows = math.ceil(n / cols)
    h, w = grid.shape
    panel_w = PAGE_WIDTH / cols
    panel_h = panel_w * min(1.2, h / w) + 0.45
    extent = grid.extent()
    geographic = grid.is_geographic
    with style():
        fig = Figure(figsize=(PAGE_WIDTH, rows * panel_h + 0.5), layout="constrained")
        axes = fig.subplots(rows, cols, squeeze=False)
        for i, ax in enumerate(axes.ravel()):
            if i >= n:
                ax.set_visible(False)
                continue
            data = np.ma.masked_invalid(np.where(bands[i] == grid_fill(grid), np.nan, bands[i]))
            lim = robust_limit(data.compressed())
            im = ax.imshow(
                data,
                cmap=CMAP,
                vmin=-lim,
                vmax=lim,
                extent=extent,
                origin="upper",
                interpolation="nearest",
            )
            ax.set_facecolor("0.9")  # no data: light grey, unlike 0 (white)
            ax.set_title(f"rank {i + 1}: $\\rho$ = {rho_text(maps.rho[i])}", fontsize=7)
            if geographic:
                ax.set_xlabel("longitude (°)", fontsize=6)
                ax.set_ylabel("latitude (°)", fontsize=6)
            else:
                ax.set_xlabel("x (CRS units)", fontsize=6)
                ax.set_ylabel("y (CRS units)", fontsize=6)
            ax.tick_params(labelsize=5)
            bar = fig.colorbar(im, ax=ax, shrink=0.8, extend="both")
            bar.set_label(f"$\\mu_{{{i + 1}}}(x)$", fontsize=6)
            bar.ax.tick_params(labelsize=5)
        fig.suptitle(f"{title}\n{SIGN_NOTE}; grey: no data", fontsize=7)
    return fig


def grid_fill(grid: Grid) -> float:

    return output_nodata(grid)


RMS_CMAP = "Greys"  # a magnitude: white 0, black the mean panel's limit
AGREEMENT_CMAP = "viridis"  # a fraction from 0 to 1, readable without the mean's colours


def draw_loadings(maps: LatentMaps, title: str):
    """The rank x feature heatmap of ``maps.loadings`` (standardized units). For a
    nonlinear model two more panels below it: the RMS of the local Jacobian on the mean's
    colour limit (a cell dark there but pale in the mean's panel: the mean cancels), and
    the fraction of samples whose local Jacobian has the mean's sign (near 0.5: the latent's
    effect on the feature changes sign along the data). The linear model's Jacobian is
    constant (RMS ``|W_k|``, agreement 1), so it gets the one panel."""
    from matplotlib.figure import Figure

    n, d = maps.loadings.shape
    curved = maps.kind != "linear"
    # RMS >= |mean|: its largest value bounds both panels, so equal colour means equal size
    lim = float(np.nanmax(maps.jacobian_rms if curved else np.abs(maps.loadings))) or 1.0
    what = (
        "mean decoder Jacobian\n$\\langle\\partial\\hat x/\\partial z_k\\rangle$"
        if curved
        else "decoder column $W_k$"
    )
    panels = [(maps.loadings, CMAP, -lim, lim, f"{what}\n(standardized units)")]
    if curved:
        panels += [
            (maps.jacobian_rms, RMS_CMAP, 0.0, lim, "RMS of the local\nJacobian (same units)"),
            (
                maps.sign_agreement,
                AGREEMENT_CMAP,
                0.0,
                1.0,
                "fraction of samples\nwith the mean's sign",
            ),
        ]
    with style():
        fig = Figure(
            figsize=(
                min(PAGE_WIDTH, (1.6 if curved else 1.2) + 0.3 * d),
                len(panels) * (0.6 + 0.25 * n) + 1.0,
            ),
            layout="constrained",
        )
        axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
        for ax, (values, cmap, vmin, vmax, label) in zip(axes, panels, strict=True):
            im = ax.imshow(values, cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
            ax.set_yticks(
                range(n),
                [
                    f"{k} ($\\rho$ = {rho_text(r)})"
                    for k, r in zip(maps.ranks, maps.rho, strict=True)
                ],
            )
            ax.tick_params(axis="y", labelsize=6)
            ax.set_ylabel("rank $k$", fontsize=7)
            bar = fig.colorbar(im, ax=ax, shrink=0.9)
            bar.set_label(label, fontsize=6)
            bar.ax.tick_params(labelsize=5)
        axes[-1].set_xticks(range(d), maps.feature_names, rotation=90, fontsize=6)
        axes[-1].set_xlabel("feature", fontsize=7)
        note = f"{SIGN_NOTE}; RMS and agreement over every sample" if curved else SIGN_NOTE
        axes[0].set_title(f"{title}\n{note}", fontsize=7)
    return fig
