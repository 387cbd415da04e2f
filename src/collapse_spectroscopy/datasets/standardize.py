"""Standardization of a run's samples by statistics of the training split only
(``dataset.standardize``, docs/science.md §1 and §5.3).

Three modes, each giving a mean and a standard deviation per feature, so that every split
becomes ``(x - mean) / std`` and the prepared file's ``mean`` and ``std`` stay (d,):

``features`` (the default)
    each feature by its own training mean and standard deviation (``ddof = 0``); the
    training split then has total variance ``V = d``.
``global``
    one mean and one standard deviation over every entry of the training split, repeated
    d times: features keep their relative scales, and a constant feature (a pixel that is
    black in every image) is no error.
``none``
    mean 0 and standard deviation 1: the values as they are.
"""

from __future__ import annotations

import numpy as np

from collapse_spectroscopy.config.settings import section_defaults
from collapse_spectroscopy.errors import InputError

MODES = ("features", "global", "none")
DEFAULT_MODE = section_defaults("dataset")["standardize"]  # the schema's
# constant features named in the error; an image has many
_NAMES_SHOWN = 5


def check_mode(mode: str) -> str:
    """``mode`` if it is one of :data:`MODES`, else InputError naming the key."""
    if mode not in MODES:
        raise InputError(
            f"dataset.standardize = {mode!r} is unknown: expected one of {', '.join(MODES)}"
        )
    return mode


def _constant_error(names: list[str]) -> InputError:
    shown = ", ".join(map(repr, names[:_NAMES_SHOWN]))
    more = f" and {len(names) - _NAMES_SHOWN} more" if len(names) > _NAMES_SHOWN else ""
    return InputError(
        f"{len(names)} feature(s) ({shown}{more}) are constant over the training split, so "
        "dataset.standardize: features cannot divide by their standard deviation (0): "
        "expected varying features; use dataset.standardize: global (one scale for all "
        "features, e.g. for pixels) or leave them out of the data"
    )


def standardization(
    x: np.ndarray, train: np.ndarray, names: list[str], mode: str = DEFAULT_MODE
) -> tuple[np.ndarray, np.ndarray]:
    """The mean and standard deviation (float64, (d,)) that standardize every split,
    computed on the training rows ``x[train]`` as ``mode`` says (:data:`MODES`).

    Raises
    ------
    InputError
        ``features``: a feature constant over the training split (named, with the
        alternative); ``global``: a training split whose entries are all equal.
    """
    d = x.shape[1]
    if check_mode(mode) == "none":
        return np.zeros(d), np.ones(d)
    xt = x[train].astype(np.float64)
    if mode == "global":
        mean, std = xt.mean(), xt.std()
        if not std > 0:
            raise InputError(
                f"every value of the training split is {mean:g}: dataset.standardize: "
                "global expected values that vary"
            )
        return np.full(d, mean), np.full(d, std)
    mean = xt.mean(axis=0)
    std = xt.std(axis=0)
    const = [n for n, s in zip(names, std, strict=True) if not s > 0]
    if const:
        raise _constant_error(const)
    return mean, std


def standardized(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """``(x - mean) / std`` in float64, returned as float32 (the prepared file's type)."""
    return ((x.astype(np.float64) - mean) / std).astype(np.float32)
