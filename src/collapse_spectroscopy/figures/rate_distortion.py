"""The rate–distortion plane of a run (docs/science.md §9.1).

One panel, one column wide: every scan point at its distortion ``D`` (the expected squared
error of a sampled reconstruction over the evaluation split's total variance, log axis)
and its total KL rate ``R`` (nats per sample), coloured by ``T`` (colour bar), each seed
its own point; the Gaussian rate–distortion function of the evaluation split's covariance
as a black line, with the region below it shaded: a point there carries less information
than any code of a Gaussian source with that covariance could at its distortion, so the
data are not Gaussian and the model uses it. A null run (the linear VAE on the same data)
is drawn as open grey squares.
"""

from __future__ import annotations

import numpy as np
from matplotlib import colors as mcolors
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from collapse_spectroscopy.figures.style import COLUMN_WIDTH, style


def _points(block) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pts = block["points"]
    return tuple(
        np.array([p[k] for p in pts], dtype=np.float64) for k in ("distortion", "rate", "T")
    )


def draw(block: dict, null_block: dict | None = None, null_name: str | None = None) -> Figure:
    """The figure of a summary's ``rate_distortion`` block, and of its null run's."""
    with style():
        return _draw(block, null_block, null_name)


def _draw(block, null_block, null_name) -> Figure:
    d, r, t = _points(block)
    bd, br = (np.asarray(block["bound"][k], dtype=np.float64) for k in ("distortion", "rate"))
    fig = Figure(figsize=(COLUMN_WIDTH, 2.6), layout="constrained")
    ax = fig.add_subplot()
    ax.fill_between(bd, 0, br, color="0.92", lw=0, zorder=0)
    ax.plot(bd, br, color="black", lw=1.0, zorder=2)
    handles = [
        Line2D([], [], color="black", lw=1.0, label="Gaussian bound $R_G(D)$"),
        Line2D([], [], color="0.85", lw=5, label="below it: non-Gaussian"),
    ]
    if null_block is not None:
        nd, nr, _ = _points(null_block)
        ax.plot(nd, nr, "s", ms=3.2, mfc="none", mec="0.45", mew=0.6, zorder=3)
        handles.append(
            Line2D(
                [],
                [],
                ls="none",
                marker="s",
                ms=3.2,
                mfc="none",
                mec="0.45",
                label=f"null run ({null_name or 'linear'})",
            )
        )
    norm = mcolors.LogNorm(vmin=t.min(), vmax=t.max()) if t.size and t.min() > 0 else None
    sc = ax.scatter(d, r, c=t, norm=norm, cmap="viridis", s=7, lw=0, zorder=4)
    handles.append(
        Line2D([], [], ls="none", marker="o", ms=3, color="tab:green", label="this run's points")
    )
    fig.colorbar(sc, ax=ax, fraction=0.05, aspect=25).set_label("temperature $T$")
    lo = min(np.r_[d[d > 0], 1.0].min(), 1.0) / 1.5  # the smallest point's distortion
    ax.set_xscale("log")
    ax.set_xlim(lo, 1.05)
    shown = [r, br[bd >= lo]] + ([nr] if null_block is not None else [])
    ax.set_ylim(0, 1.05 * max(float(np.nanmax(v, initial=0.0)) for v in shown))
    ax.set_xlabel(r"distortion $D$ (sampled, over $V_{eval}$)")
    ax.set_ylabel(r"rate $R$ (nats per sample)")
    below = block.get("points_below_bound", 0)
    ax.set_title(f"{below} of {d.size} points below the bound", fontsize=6)
    ax.legend(handles=handles, fontsize=5.5, frameon=False, loc="upper right")
    return fig
