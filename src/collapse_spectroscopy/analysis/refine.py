"""Adaptive temperature refinement: the scan points a round adds (docs/science.md §4.9).

A crossing threshold (:func:`.thresholds.crossing_threshold`) is only as sharp as the scan
points around it: it is read off the chord between the last temperature ``T_a`` where the
seed-mean ``rho_k`` is above ``rho_min`` and the next one, ``T_b``. A refinement round
reads every point trained so far and, for each rank with a crossing inside the scan, adds
``points_per_mode`` temperatures splitting its bracket ``[T_a, T_b]`` into
``points_per_mode + 1`` equal steps in ``log T`` (1: bisection; 2, the default: thirds).
All seeds train the same added temperatures: the brackets are the seed-mean curve's.

The points depend on the measured ``rho`` only through *which* interval holds a crossing,
not through where inside it the chord puts it: a rerun with the same points adds the same
temperatures (stable), and a kink of ``rho`` at ``T_k`` (``rho = 0`` above, not negative)
that pulls the chord's estimate toward ``T_b`` cannot push the new points off the
crossing. Centring points on the chord's estimate instead was measured worse on the
analytic curves (an 8-point grid, two rounds of 2 points: up to 4.2 % off against 0.23 %).

A candidate within :data:`NEAR` (relative) of a temperature already in the scan is not
added, and ranks whose crossings share a bracket ask for the same temperatures, which are
added once and recorded with every rank that asked.
"""

from __future__ import annotations

import math

import numpy as np

from collapse_spectroscopy.analysis.thresholds import (
    RHO_MIN,
    crossing_bracket,
    crossing_threshold,
)
from collapse_spectroscopy.config.grid import GRID_DIGITS, scan_point_label

# A candidate this close (relative) to a scan temperature is that temperature: rounding
# the label moves a T by at most 5e-5 of itself, and a bracket narrower than 0.1 % in T is
# far inside the training noise of a threshold (the 95 % seed intervals of §4.8 are
# 0.6-1.0 % of T_k), so refining it further would only retrain the same point.
NEAR = 1e-3


def label_digits(step: float) -> int:
    """Significant digits of an added temperature whose steps are ``step`` apart in
    ``log T``: at least :data:`GRID_DIGITS` (the grid's), and enough that rounding moves a
    point by under 1 % of a step (half a unit of the last digit, ``5 * 10**-digits`` of T)."""
    return max(GRID_DIGITS, math.ceil(-math.log10(0.01 * step / 5)))


def bracket_points(low: float, high: float, per_mode: int) -> list[float]:
    """``per_mode`` temperatures splitting ``[low, high]`` into ``per_mode + 1`` equal steps
    in ``log T``, each rounded as :func:`label_digits` says (its label names its files)."""
    step = math.log(high / low) / (per_mode + 1)
    digits = label_digits(step)
    return [float(f"{low * math.exp(i * step):.{digits}g}") for i in range(1, per_mode + 1)]


def _near(t: float, temps: np.ndarray) -> bool:
    return bool(temps.size) and bool(np.min(np.abs(temps / t - 1)) < NEAR)


def refine_round(temperature, rho, rho_min: float = RHO_MIN, per_mode: int = 2) -> dict:
    """The temperatures one refinement round adds to a scan, and why.

    ``temperature`` (P,) and ``rho`` (P, K): every scan point trained so far (all seeds,
    ranked signal fractions, as :func:`.spectra.scan_arrays` gives them). Returns
    ``{"added": [{"T", "ranks"}], "brackets": [{"rank", "low", "high", "crossing",
    "points"}]}``: the added temperatures (ascending, each once, with the ranks that asked
    for it) and, per rank with a crossing inside the scan, its bracket, crossing threshold
    and the temperatures it asked for (those already in the scan left out).
    """
    t = np.asarray(temperature, dtype=np.float64)
    rho = np.asarray(rho, dtype=np.float64)
    scan_temps = np.unique(t[np.isfinite(t)])
    added: dict[str, dict] = {}
    brackets = []
    for k in range(rho.shape[1]):
        bracket = crossing_bracket(t, rho[:, k], rho_min)
        if bracket is None:
            continue
        points = [p for p in bracket_points(*bracket, per_mode) if not _near(p, scan_temps)]
        for p in points:
            added.setdefault(scan_point_label(p), {"T": p, "ranks": []})["ranks"].append(k + 1)
        brackets.append(
            {
                "rank": k + 1,
                "low": bracket[0],
                "high": bracket[1],
                "crossing": crossing_threshold(t, rho[:, k], rho_min).threshold,
                "points": points,
            }
        )
    return {"added": sorted(added.values(), key=lambda a: a["T"]), "brackets": brackets}


def refinement_summary(rounds: list[dict], temperature, rho, rho_min: float = RHO_MIN) -> dict:
    """The ``refinement`` block of ``summary.json``: the points each round added (from the
    round records, ``refine_round_i.json``) and, per rank with a crossing in the final
    scan, its bracket ``[T_a, T_b]`` and width ``T_b / T_a``."""
    t = np.asarray(temperature, dtype=np.float64)
    rho = np.asarray(rho, dtype=np.float64)
    widths = {}
    for k in range(rho.shape[1]):
        bracket = crossing_bracket(t, rho[:, k], rho_min)
        if bracket is not None:
            low, high = bracket
            widths[k + 1] = {"low": low, "high": high, "ratio": high / low}
    return {
        "rounds": [
            {"round": r["round"], "added": len(r["added"]), "T": [a["T"] for a in r["added"]]}
            for r in rounds
        ],
        "added": sum(len(r["added"]) for r in rounds),
        "bracket": widths,
    }
