"""The early-stopping rule of the protocol, and which scan points ended before it passed
(docs/science.md §5.4, §7b).

Training stops once the validation loss has not improved for ``patience`` updates; the
update budget ``max_updates`` only caps the cost. :func:`patience_updates` turns the
configured ``patience`` into updates (the one home of that rule: the trainer and the
readers of a scan both use it), :func:`under_equilibrated` says which points ran out of
budget before the test passed, and :func:`equilibration_summary` is the block of
``summary.json`` that lists them. Torch-free, so that reading a scan never imports it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np

from collapse_spectroscopy.store.scanfile import point_grid

BUDGET_STOP = "max_updates"  # the stop reason of a point that used its whole update budget

UNDER_EQUILIBRATED_RULE = (
    "stopped at max_updates with fewer than patience updates since the best validation "
    "loss: the early-stopping test of the protocol never passed"
)


def patience_updates(patience: float, max_updates: int) -> int:
    """The early-stopping patience in updates: ``patience`` below 1 is a fraction of
    ``max_updates`` (at least one update), otherwise a count."""
    if patience < 1:
        return max(1, int(round(patience * max_updates)))
    return int(patience)


def scan_patience(training: Mapping) -> int | None:
    """:func:`patience_updates` of a run's training settings as a scan records them;
    ``None`` when ``patience`` or ``max_updates`` is missing or unusable."""
    try:
        patience, budget = float(training["patience"]), float(training["max_updates"])
    except (KeyError, TypeError, ValueError):
        return None
    if not (np.isfinite(patience) and np.isfinite(budget) and patience > 0):
        return None
    return patience_updates(patience, budget)


def under_equilibrated(stop_reason, updates_run, best_update, patience=None) -> np.ndarray:
    """Which scan points are under-equilibrated: a boolean array of the inputs' shape.

    The protocol (docs/science.md §5) calls a point equilibrated when its validation loss
    has not improved for ``patience`` updates (early stopping); ``max_updates`` only caps
    the cost. A point is **under-equilibrated** when it stopped at ``max_updates`` with
    fewer than ``patience`` updates since its best validation loss: the budget ran out
    before that test passed, so the loss may still have been falling (at low T the slow
    latent-scale and rotation relaxations, docs/science.md §7b).

    Why this and not a narrower rule:

    - *Best loss at the last evaluation* misses points that are still improving: the
      validation loss jitters between evaluations (SGD noise of the weights; about 3e-4
      in the demo), so a point drifting down by a few 1e-3 per patience window often has
      its best an evaluation or two before the end.
    - *Best within the last few per cent of the budget* needs a threshold of its own;
      the patience is the run's own measure of "no longer improving", chosen with the
      jitter in mind.

    The training loop makes no early-stopping test at the final update, so a point whose
    patience ran out exactly there stops with ``max_updates`` but has passed the test: the
    second clause leaves it out. With ``patience`` unknown (``None``: points gathered from
    different training settings) every budget stop counts. Points that did not run
    (missing stop reason) are False.
    """
    stop = np.asarray(stop_reason, dtype=object)
    at_budget = np.array([s == BUDGET_STOP for s in stop.ravel()], dtype=bool).reshape(stop.shape)
    if patience is None:
        return at_budget
    since_best = np.asarray(updates_run, np.float64) - np.asarray(best_update, np.float64)
    return at_budget & ~(since_best >= patience)


def scan_training(scan) -> dict:
    """The training settings a gathered scan carries (its ``training`` attribute, JSON);
    empty when the points disagreed (gather drops conflicting attributes) or it is absent."""
    raw = scan.attrs.get("training")
    if isinstance(raw, Mapping):
        return dict(raw)
    try:
        value = json.loads(raw) if isinstance(raw, str) else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def scan_under_equilibrated(scan) -> np.ndarray:
    """:func:`under_equilibrated` of every (T, seed) point of a gathered scan, shape
    ``(T, seed)``; all False when the scan lacks the training outcome."""
    shape = (scan.sizes.get("T", 1), scan.sizes.get("seed", 1))
    if not all(v in scan for v in ("stop_reason", "updates_run", "best_update")):
        return np.zeros(shape, dtype=bool)
    outcome = (point_grid(scan, name) for name in ("stop_reason", "updates_run", "best_update"))
    return under_equilibrated(*outcome, scan_patience(scan_training(scan)))


def training_cost(scan) -> dict:
    """The ``training_cost`` block of the summary: what the scan's training cost.

    ``points`` counts the points that report a training outcome; ``updates`` is their Adam
    updates in all and ``updates_per_point`` the smallest, median and largest count; empty
    when the scan lacks the outcome (points written before it was recorded). Counts only:
    the points' wall times (``elapsed_s`` in ``scan.nc``) are left out so that the summary
    of a scan is the same file on every rerun and every executor, as the SLURM test checks.
    """
    if "updates_run" not in scan:
        return {"points": 0, "updates": 0, "updates_per_point": None}
    runs = np.asarray(point_grid(scan, "updates_run"), np.float64).ravel()
    runs = runs[np.isfinite(runs)]
    spread = None
    if runs.size:
        spread = {"min": int(runs.min()), "median": float(np.median(runs)), "max": int(runs.max())}
    return {"points": int(runs.size), "updates": int(runs.sum()), "updates_per_point": spread}


def equilibration_summary(scan) -> dict:
    """The ``under_equilibrated`` block of the summary: count, rule and the points."""
    flags = scan_under_equilibrated(scan)
    t = np.atleast_1d(scan["T"].values)
    seeds = np.atleast_1d(scan["seed"].values)
    rho = scan["signal_fraction"].transpose("T", "seed", "latent").values
    ran = np.all(np.isfinite(rho), axis=-1)
    points = []
    for i, j in zip(*np.nonzero(flags & ran), strict=True):
        point = {"T": float(t[i]), "seed": int(seeds[j])}
        for name in ("updates_run", "best_update"):
            point[name] = int(scan[name].transpose("T", "seed").values[i, j])
        points.append(point)
    return {
        "count": len(points),
        "of": int(ran.sum()),
        "rule": UNDER_EQUILIBRATED_RULE,
        "patience_updates": scan_patience(scan_training(scan)),
        "points": points,
    }
