"""The scan grid: the temperatures a run trains, their file labels, the mapped points.

:func:`scan_temperatures` expands a run's ``scan.temperatures`` (a list, or a log-spaced
range rounded to :data:`GRID_DIGITS` significant digits) and :func:`scan_point_label`
names each point's files: the one place the workflow expands a grid, so that
:func:`temperature_grid_errors` sees exactly the jobs it would run (no two points may
write the same file). :func:`map_points` chooses the scan points whose latents are mapped
(each of ``maps.temperatures`` becomes its nearest scan temperature in ``log T``; the seed
is ``maps.seed``).
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from collapse_spectroscopy.config import settings

#: The fewest significant digits of a grid's temperatures (:func:`scan_temperatures`).
GRID_DIGITS = 4


def scan_temperatures(grid) -> list[float]:
    """The temperatures T of a scan (``scan.temperatures``), as floats in config order.

    A list is taken as given; ``{min, max, num}`` is ``num`` log-spaced values from ``min``
    to ``max``, both included (``numpy.geomspace``), each rounded to the fewest significant
    digits, at least :data:`GRID_DIGITS`, that keep the grid's distinct values distinct.
    The T of a scan point is its file name (:func:`scan_point_label`), so the names stay
    short (``T=0.001655``, not ``T=0.0016552122635755085``); the rounding moves a T by at
    most 5e-5 of itself, far inside any threshold's resolution, and leaves ends written
    with at most 4 digits (``1.0e-3``, ``0.7``) as they are.
    """
    if not isinstance(grid, dict):
        return [float(t) for t in grid]
    raw = [float(t) for t in np.geomspace(grid["min"], grid["max"], grid["num"])]
    for digits in range(GRID_DIGITS, 18):  # 17 significant digits round-trip any float
        rounded = [float(f"{t:.{digits}g}") for t in raw]
        if len(set(rounded)) == len(set(raw)):
            return rounded
    return raw


#: the default ``maps.temperatures``: those of these inside the scan's range
MAP_TEMPERATURES = (1e-2, 1e-3, 1e-4)
# relative: a bound written in full (3.1622776601683795e-05) is inside the scan whose end
# scan_temperatures rounded to 4 digits (by at most 5e-5 of itself)
_RANGE_ROUNDING = 1e-4


def _inside(t: float, temps: list[float]) -> bool:
    lo, hi = min(temps), max(temps)
    return lo * (1 - _RANGE_ROUNDING) <= t <= hi * (1 + _RANGE_ROUNDING)


def map_points(run: dict) -> tuple[list[float], int]:
    """The scan points a run maps: their temperatures (scan points, config order, each
    once) and the seed.

    Each of ``maps.temperatures`` (default: those of :data:`MAP_TEMPERATURES` inside the
    scan's range) becomes its nearest scan temperature in ``log T``; the seed is
    ``maps.seed``, default the first of ``scan.seeds``. Assumes :func:`check_config`
    passed (a temperature outside the scan is an error there).
    """
    temps = scan_temperatures(run["scan"]["temperatures"])
    maps = run.get("maps") or {}
    wanted = maps.get("temperatures")
    if wanted is None:
        wanted = [t for t in MAP_TEMPERATURES if _inside(t, temps)]
    chosen: list[float] = []
    for w in wanted:
        nearest = min(temps, key=lambda t: abs(math.log(t) - math.log(w)))
        if nearest not in chosen:
            chosen.append(nearest)
    seeds = run["scan"].get("seeds") or settings.section_defaults("scan").get("seeds", [0])
    return chosen, int(maps.get("seed", seeds[0]))


def map_errors(name: str, run: dict) -> list[str]:
    """``maps.temperatures`` outside the scan's range, ``maps.seed`` not a scan seed."""
    maps = run.get("maps") or {}
    temps = scan_temperatures(run["scan"]["temperatures"])
    errors = []
    for i, t in enumerate(maps.get("temperatures") or []):
        if not _inside(t, temps):
            errors.append(
                f"config key runs.{name}.maps.temperatures[{i}] = {t}: outside the scan "
                f"(T from {min(temps):g} to {max(temps):g}): expected a temperature inside "
                "the scan's range (its nearest scan point is mapped)"
            )
    seeds = run["scan"].get("seeds") or settings.section_defaults("scan").get("seeds", [0])
    if "seed" in maps and maps["seed"] not in seeds:
        errors.append(
            f"config key runs.{name}.maps.seed = {maps['seed']}: not a seed of the scan "
            f"(scan.seeds = {list(seeds)}): expected one of them"
        )
    return errors


def scan_point_label(t) -> str:
    """T in a scan-point file name: Python's shortest repr, which ``float()`` reads back
    exactly (two different temperatures never share a label)."""
    return repr(float(t))


def temperature_grid_errors(name: str, grid) -> list[str]:
    """Problems of a run's ``scan.temperatures`` once expanded into scan points."""
    key = f"runs.{name}.scan.temperatures"
    if isinstance(grid, dict) and grid["min"] > grid["max"]:
        return [f"config key {key}: min {grid['min']} > max {grid['max']}"]
    temps = scan_temperatures(grid)
    labels = Counter(scan_point_label(t) for t in temps)
    repeated = [label for label, count in labels.items() if count > 1]
    if not repeated:
        return []
    expected = "min < max when num > 1" if isinstance(grid, dict) else "every temperature once"
    return [
        f"config key {key} = {grid}: expands to {len(temps)} temperatures but only "
        f"{len(labels)} distinct scan point(s) (T = {', '.join(repeated)} repeated; each T "
        f"names one scan-point file): expected {expected}"
    ]
