"""The drawing of a study, ``results/studies/NAME/study.png`` (docs/science.md §11).

Four panels against the varied value (x axis: log scale when every value is a positive
number spanning a factor > 3, else the values as categories in config order; ticked at the
values), one line per rank that is active at the compared scan point of at least one run
or has a fitted threshold in one, coloured by rank as in the paper's figures
(:class:`.figures.style.RankColors`):
(a) the collapse thresholds ``T_k``, (b) the utilities ``u_k``, both log scale, a
missing value (no fit) left out; (c) the largest principal angle between the leading-k
decoder subspaces of the run and the base run, (d) the correlation of each rank's latent
map with the base run's resampled map (empty, saying so, for tables). The base run's
value is marked by a dotted vertical guide.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from collapse_spectroscopy.figures.style import (
    GUIDE,
    PAGE_WIDTH,
    REFERENCE_COLOR,
    RankColors,
    style,
)


def _x_axis(values: list) -> tuple[np.ndarray, bool]:
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if numeric and min(values) > 0 and max(values) / min(values) > 3:
        return np.asarray(values, dtype=np.float64), True
    return np.arange(len(values), dtype=np.float64), False


def draw(table: pd.DataFrame, vary: str, base_value, title: str):
    """The study figure from its long table (:func:`.studies.compare.study_table`)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullLocator

    values = list(dict.fromkeys(table["value"].tolist()))
    x_of, logx = _x_axis(values)
    where = dict(zip(map(repr, values), x_of, strict=True))
    # ranks active at some run's compared scan point or with a fitted threshold in some
    # run (active somewhere in its scan); the others' u_k is round-off (~1e-8)
    fitted = table.loc[np.isfinite(table["collapse_threshold"].to_numpy(float)), "rank"]
    n_colored = max(
        int(table["active_latents"].max()) if len(table) else 1,
        int(fitted.max()) if len(fitted) else 1,
    )
    ranks = [k for k in sorted(table["rank"].unique()) if k <= n_colored]
    colors = RankColors(max(n_colored, 1))
    panels = [
        ("collapse_threshold", "collapse threshold $T_k$", True),
        ("utility", "utility $u_k$", True),
        (
            "subspace_angle_deg",
            "largest principal angle (deg),\nleading-$k$ decoders vs base",
            False,
        ),
        ("map_correlation", "correlation of rank-$k$ map\nwith the base run's", False),
    ]
    with style():
        fig = Figure(figsize=(PAGE_WIDTH, 4.6), layout="constrained")
        axes = fig.subplots(2, 2, sharex=True)
        for ax, (col, label, logy), tag in zip(axes.flat, panels, "abcd", strict=True):
            drawn = False
            for k in ranks:
                rows = table[table["rank"] == k]
                xs = np.array([where[repr(v)] for v in rows["value"]])
                ys = rows[col].to_numpy(dtype=np.float64)
                ok = np.isfinite(ys) & ((ys > 0) if logy else True)
                if not ok.any():
                    continue
                ax.plot(xs[ok], ys[ok], "o-", ms=3, lw=0.9, color=colors(int(k)))
                drawn = True
            if logy and drawn:
                ax.set_yscale("log")
            if col == "subspace_angle_deg":
                ax.set_ylim(-3, 93)
            if col == "map_correlation":
                ax.set_ylim(-1.05, 1.05)
                if not drawn:
                    ax.text(
                        0.5,
                        0.5,
                        "no maps (a table, or grids that do not nest)",
                        ha="center",
                        va="center",
                        transform=ax.transAxes,
                    )
            if base_value is not None and repr(base_value) in where:
                ax.axvline(where[repr(base_value)], color=REFERENCE_COLOR, **GUIDE)
            ax.set_ylabel(label)
            ax.set_title(f"({tag})", loc="left")
            if logx:
                ax.set_xscale("log")
        for ax in axes[1]:
            ax.set_xlabel(vary)
            # the values themselves as ticks: a log axis's 2x10^0 style labels collide
            ax.set_xticks(x_of, [str(v) for v in values])
            ax.xaxis.set_minor_locator(NullLocator())
        colors.colorbar(fig, axes, label="rank $k$")
        fig.suptitle(title)
    return fig
