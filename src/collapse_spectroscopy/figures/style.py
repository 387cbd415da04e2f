"""The one plot style shared by the paper's figures: rcParams, sizes, colours, line kinds
(docs/science.md §6).

- :func:`style` — an rcParams context: serif-free 8 pt text (7 pt ticks and legends) sized
  for a printed column, thin lines, TrueType fonts in PDF, no figure-level clutter.
- Figure widths: :data:`COLUMN_WIDTH` (~3.4 in, single-column figures) and
  :data:`PAGE_WIDTH` (~7 in, two-panel figures); text stays >= 7 pt at these sizes.
- Colour = ranked mode throughout: :class:`RankColors` maps rank 1..n to a discrete
  sequential colormap (dark = rank 1, the most active) and any rank beyond ``n`` — a latent
  that never becomes active — to light grey; :meth:`RankColors.colorbar` draws the
  matching discrete colour bar.
- Line conventions: data are small filled markers (per seed) with a thin solid line
  through the seed mean; a scan point that is under-equilibrated (stopped at its update
  budget, :func:`.equilibration.under_equilibrated`) is the same marker hollow (:func:`hollow`);
  the analytic equilibrium is a thin dashed line (:data:`THEORY`); fits are broad pale
  solid bands (:data:`FIT`), unlike the thin mean lines; reference guides are dotted
  (:data:`GUIDE`). Four line kinds, four looks: none is told apart by colour alone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import matplotlib as mpl
import numpy as np
from matplotlib.colors import BoundaryNorm, ListedColormap

COLUMN_WIDTH = 3.4  # inches: one column of a two-column paper
PAGE_WIDTH = 7.0  # inches: the full text width
DPI = 300  # raster output (>= 200)

INACTIVE_COLOR = "0.78"  # latents that never become active
REFERENCE_COLOR = "0.15"  # PCA references, constant guides
CMAP_NAME = "viridis"
CMAP_RANGE = (0.0, 0.88)  # drop viridis' palest yellow: invisible as a thin line on white

RC = {
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"],
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "legend.title_fontsize": 7,
    "legend.frameon": False,
    "legend.handlelength": 1.6,
    "legend.borderaxespad": 0.3,
    "legend.labelspacing": 0.25,
    "axes.linewidth": 0.6,
    "axes.labelpad": 2.0,
    "axes.titlepad": 3.0,
    "axes.spines.top": True,
    "axes.spines.right": True,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "xtick.minor.width": 0.4,
    "ytick.minor.width": 0.4,
    "xtick.major.size": 3.0,
    "ytick.major.size": 3.0,
    "xtick.minor.size": 1.6,
    "ytick.minor.size": 1.6,
    "xtick.direction": "in",
    "ytick.direction": "in",
    "xtick.top": True,
    "ytick.right": True,
    "lines.linewidth": 0.9,
    "lines.markersize": 2.5,
    "mathtext.default": "regular",
    "figure.dpi": 100,
    "figure.constrained_layout.use": True,
    "figure.constrained_layout.h_pad": 0.02,
    "figure.constrained_layout.w_pad": 0.02,
    "savefig.dpi": DPI,
    "savefig.bbox": "standard",
    "pdf.fonttype": 42,  # TrueType: editable text, accepted by journals
    "ps.fonttype": 42,
}

# Line and marker conventions (keyword dicts for Axes.plot).
THEORY = {"ls": (0, (3.0, 1.6)), "lw": 0.7, "alpha": 0.9, "zorder": 4}
FIT = {"ls": "-", "lw": 2.4, "alpha": 0.35, "zorder": 1.5, "solid_capstyle": "butt"}
MEAN = {"ls": "-", "lw": 0.8, "alpha": 0.75, "zorder": 2}
GUIDE = {"ls": ":", "lw": 0.6, "alpha": 0.7, "zorder": 1}
POINTS = {"ls": "none", "marker": "o", "ms": 2.2, "mew": 0, "alpha": 0.75, "zorder": 2}
INACTIVE_POINTS = {"ls": "none", "marker": "o", "ms": 1.6, "mew": 0, "alpha": 0.6, "zorder": 1}


def hollow(points: dict) -> dict:
    """The hollow version of a marker style: white face, coloured rim, drawn above the
    seed-mean line so that the line does not fill it."""
    ms = points.get("ms", 2.5)
    return {
        **points,
        "ms": ms + 0.6,  # the rim takes room from the face: keep the visible size
        "mfc": "white",
        "mew": 0.6,
        "alpha": 1.0,
        "zorder": points.get("zorder", 2) + 0.5,
    }


@contextlib.contextmanager
def style() -> Iterator[None]:
    """Apply the figures' rcParams inside the block (restored afterwards)."""
    with mpl.rc_context(RC):
        yield


class RankColors:
    """Colour of a ranked mode: ranks ``1..n`` on a discrete sequential map, others grey."""

    def __init__(self, n: int):
        self.n = max(int(n), 1)
        base = mpl.colormaps[CMAP_NAME]
        self.cmap = ListedColormap(base(np.linspace(*CMAP_RANGE, self.n)), name="rank")
        self.norm = BoundaryNorm(np.arange(0.5, self.n + 1.5), self.n)

    def __call__(self, rank: int):
        """RGBA colour of ``rank`` (1-based); light grey beyond :attr:`n`."""
        if 1 <= rank <= self.n:
            return self.cmap(rank - 1)
        return mpl.colors.to_rgba(INACTIVE_COLOR)

    def colored(self, rank: int) -> bool:
        return 1 <= rank <= self.n

    def ticks(self) -> list[int]:
        """Colour-bar ticks: every rank up to 10, else 1, multiples of 5 and the last."""
        if self.n <= 10:
            return list(range(1, self.n + 1))
        ticks = [1, *range(5, self.n + 1, 5)]
        if self.n - ticks[-1] >= 2:
            ticks.append(self.n)
        return ticks

    def colorbar(self, fig, ax, *, label: str = "rank $k$", upto: int | None = None, **kwargs):
        """A discrete colour bar of the coloured ranks beside ``ax`` (an Axes or a list).

        ``upto`` (the number of latents ``K``, when the figure draws grey ranks beyond
        :attr:`n`): the bar runs on to ``K`` with one grey segment ``n+1..K``, so that it
        names every rank drawn and says what grey is. With ``spacing="proportional"`` the
        segment is as long as those ranks, for a figure with a rank axis (Fig 2b); by
        default it is as long as one rank.
        """
        ticks, labels = self.ticks(), None
        if upto is not None and upto > self.n:
            colors = [*self.cmap(np.arange(self.n)), mpl.colors.to_rgba(INACTIVE_COLOR)]
            cmap = ListedColormap(colors, name="rank_and_grey")
            norm = BoundaryNorm([*np.arange(0.5, self.n + 1.0), upto + 0.5], cmap.N)
            grey_mid = (self.n + 1 + upto) / 2
            grey_text = str(upto) if upto == self.n + 1 else f"{self.n + 1}\u2013{upto}"
            labels = [str(t) for t in ticks] + [grey_text]
            ticks = [*ticks, grey_mid]
        else:
            cmap, norm = self.cmap, self.norm
        sm = mpl.cm.ScalarMappable(norm=norm, cmap=cmap)
        kwargs = {"fraction": 0.05, "pad": 0.02, "aspect": 30, **kwargs}
        cb = fig.colorbar(sm, ax=ax, **kwargs)
        cb.set_label(label)
        cb.set_ticks(ticks, labels=labels)
        cb.ax.yaxis.set_minor_locator(mpl.ticker.NullLocator())
        cb.ax.tick_params(direction="out", length=2.0)
        cb.ax.invert_yaxis()  # rank 1 (most active) at the top
        cb.outline.set_linewidth(0.5)
        return cb


def panel_label(ax, letter: str) -> None:
    """A small bold panel letter, left above the axes."""
    ax.set_title(f"({letter})", loc="left", fontweight="bold")
