"""Axis helpers shared by the figures (docs/science.md §6): the temperature axis, and
tick labels that stay readable on a column-wide figure.

Temperatures are plotted on a log axis over the scanned range (:func:`t_range`). Log axes
spanning less than :data:`SHORT_LOG_SPAN` decades get 1-2-5 ticks in plain numbers
(:func:`log_ticks`), never the crowded minor labels matplotlib would put there; a linear
axis of small values names its power of ten in the label (:func:`power_label`).
"""

from __future__ import annotations

import numpy as np
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

T_LABEL = r"normalized temperature $T = \beta\sigma^2/V$"
SHORT_LOG_SPAN = 2.0  # decades: below this a log axis gets 1-2-5 ticks (:func:`log_ticks`)


def t_range(t: np.ndarray) -> tuple[float, float]:
    """Log-axis limits around the scanned temperatures (a decade if there is one point)."""
    tp = t[np.isfinite(t) & (t > 0)]
    if tp.size == 0:
        return 1e-3, 1.0
    lo, hi = float(tp.min()), float(tp.max())
    if hi / lo < 1.5:
        return lo / 3.0, hi * 3.0
    pad = (hi / lo) ** 0.03
    return lo / pad, hi * pad


def t_grid(t: np.ndarray, n: int = 240) -> np.ndarray:
    """A fine log grid over :func:`t_range`, for the equilibrium curves."""
    lo, hi = t_range(t)
    return np.geomspace(lo, hi, n)


def tick_text(value: float) -> str:
    """A short tick label: plain decimals from 1e-3 to 1e4, else ``a×10^b``."""
    if value <= 0 or not np.isfinite(value):
        return ""
    if 1e-3 <= value < 1e4:
        return f"{value:g}"
    exponent = int(np.floor(np.log10(value) + 1e-9))
    mantissa = value / 10.0**exponent
    if abs(mantissa - 1.0) < 1e-6:
        return rf"$10^{{{exponent}}}$"
    return rf"${mantissa:g}\times10^{{{exponent}}}$"


def log_ticks(axis, lo: float, hi: float) -> None:
    """Readable ticks on a log axis spanning ``lo..hi``.

    Over :data:`SHORT_LOG_SPAN` decades or more, matplotlib's decade labels are kept (two
    or more of them). Below, matplotlib labels minor ticks too (``2×10^-1``, ``3×10^-1``,
    ...) once the span is under a decade, and they overlap on a column-wide axis; between
    one and two decades it shows only two or three decade labels. There the labels are
    1, 2, 5 per decade (1..9 below half a decade) in plain numbers, minor ticks unlabelled:
    at most about 7 labels, each ~0.3 in wide at 7 pt, on an axis of >= 2 in. Outside
    1e-3..1e4 the labels read ``a×10^b``, about twice as wide, and below half a decade
    they are 1, 2, 3, 5, 7 per decade (a scan from 5e-7 to 1e-6: three labels).
    """
    decades = np.log10(hi / lo)
    if not np.isfinite(decades) or decades >= SHORT_LOG_SPAN:
        return
    subs = (1.0, 2.0, 5.0) if decades >= 0.5 else tuple(float(i) for i in range(1, 10))
    if decades < 0.5 and not (1e-3 <= lo and hi < 1e4):
        subs = (1.0, 2.0, 3.0, 5.0, 7.0)  # labels a×10^b are twice as wide: fewer of them
    axis.set_major_locator(LogLocator(base=10.0, subs=subs))
    axis.set_major_formatter(FuncFormatter(lambda v, _: tick_text(v)))
    axis.set_minor_formatter(NullFormatter())


def t_axis(ax, t: np.ndarray) -> None:
    """The temperature axis of ``ax``: log scale over :func:`t_range` of the scanned ``t``,
    readable ticks (:func:`log_ticks`) and the label."""
    lo, hi = t_range(t)
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    log_ticks(ax.xaxis, lo, hi)
    ax.set_xlabel(T_LABEL)


def power_label(ax, label: str) -> None:
    """Set the y label; for an axis whose values are all below 1e-2 in size, tick labels
    in units of a power of ten named in the label (``J (×10^-4)`` with ticks ``0 .. 3``),
    not ``0.00030``. Matplotlib's own offset text would sit above the axes and push the
    panel below its neighbour's top."""
    top = max(abs(v) for v in ax.get_ylim())  # autoscaled to the data drawn so far
    if not (np.isfinite(top) and 0 < top < 1e-2):
        ax.set_ylabel(label)
        return
    exponent = int(np.floor(np.log10(top)))
    scale = 10.0**exponent
    # + 0.0 turns -0.0 into 0.0: no "-0" tick
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / scale + 0.0:.3g}"))
    ax.set_ylabel(rf"{label} ($\times10^{{{exponent}}}$)")


def integer_locator(n: int):
    """Integer ticks for a rank axis ``1..n``: at most 8 of them."""
    return MaxNLocator(nbins=min(n, 8), integer=True, steps=[1, 2, 4, 5, 10])
