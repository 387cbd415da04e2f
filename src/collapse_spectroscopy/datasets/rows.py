"""Samples with a missing value, for the sources of one sample per row (table, arrays).

A row with a missing or non-finite value in any feature is dropped, not filled: the
model sees measured values only. The drop is counted, so that ``prepare`` reports it in
its log line and in ``split_summary.json`` (``dropped_rows``).
"""

from __future__ import annotations

import numpy as np

from collapse_spectroscopy.errors import InputError


def complete_rows(x: np.ndarray, what: str) -> np.ndarray:
    """The mask (n,) of the rows of ``x`` (n, d) that are finite in every feature.

    Raises InputError naming ``what`` when no row is.
    """
    complete = np.all(np.isfinite(x), axis=1)
    if not complete.any():
        raise InputError(f"{what}: no row has finite values in all {x.shape[1]} features")
    return complete


def row_counts(complete: np.ndarray, reason: str) -> dict:
    """The source-info entries that count the rows left out by the mask ``complete``:
    ``n_rows``, ``n_rows_dropped_nonfinite`` and ``dropped_rows`` (count, of, ``reason``)."""
    n_rows, dropped = int(complete.size), int((~complete).sum())
    return {
        "n_rows": n_rows,
        "n_rows_dropped_nonfinite": dropped,
        "dropped_rows": {"count": dropped, "of": n_rows, "reason": reason},
    }
