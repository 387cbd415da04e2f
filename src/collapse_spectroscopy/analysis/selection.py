"""Which truncated distortions the spectra read: the pruning rule and the selection split
(``spectra.pruning``, ``spectra.select_on``; docs/science.md §9).

``Dn*_k`` is a minimum over the scan points. Two choices shape it:

- **pruning**: a pruned latent at the prior mean 0 (``zero``, the paper's) or averaged
  over its prior (``prior``, the scan point's ``truncated_distortion_prior``); the same for
  a linear decoder, not for a curved one;
- **selection**: the point of each ``k`` chosen on the evaluation split itself (``test``,
  the paper's: a downward bias that grows with the number of points) or on the
  validation split, its value reported on the evaluation split (``val``). ``auto`` is
  ``test`` for a linear run (the paper's protocol) and ``val`` for a nonlinear one.

A scan whose points were measured before these levels existed lacks them: an explicit
choice that needs them is refused in one line (``collapse-spectroscopy measure`` adds
them from the points' weights); ``auto`` then keeps ``test`` and says why.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from collapse_spectroscopy.errors import InputError
from collapse_spectroscopy.store.scanfile import scan_model_kind

# the scan-point variable of each pruning rule, on the evaluation and the validation split
EVAL_LEVELS = {"zero": "truncated_distortion", "prior": "truncated_distortion_prior"}
VAL_LEVELS = {"zero": "truncated_distortion_val", "prior": "truncated_distortion_prior_val"}
MEASURE_HINT = (
    "its points were measured before these levels existed: run `collapse-spectroscopy "
    "measure` on them (docs/science.md §9)"
)


@dataclass(frozen=True)
class Selection:
    """The levels the spectra read: ``pruning`` and ``select_on`` as resolved, and why
    (``note``, for ``auto``)."""

    pruning: str = "zero"
    select_on: str = "test"
    note: str = ""

    @property
    def report(self) -> str:
        return EVAL_LEVELS[self.pruning]

    @property
    def choose(self) -> str | None:
        return VAL_LEVELS[self.pruning] if self.select_on == "val" else None

    def block(self) -> dict:
        """The summary's ``selection`` block."""
        return {"pruning": self.pruning, "select_on": self.select_on, "note": self.note}


def _complete(scan, name: str, ran: np.ndarray) -> bool:
    """Does every run point hold ``name`` (finite at every k)?"""
    if name not in scan:
        return False
    v = scan[name].transpose("T", "seed", "k").values.reshape(ran.size, -1)[ran]
    return bool(np.all(np.isfinite(v)))


def resolve(scan, pruning: str, select_on: str, ran: np.ndarray, where: str) -> Selection:
    """The :class:`Selection` of ``scan`` (``ran``: its run points, flat over (T, seed)),
    with ``auto`` resolved; an InputError naming ``where`` (the scan file) for a choice the
    scan cannot serve."""
    if pruning not in EVAL_LEVELS:
        raise InputError(f"spectra.pruning {pruning!r}: expected one of zero, prior")
    if select_on not in ("auto", "test", "val"):
        raise InputError(f"spectra.select_on {select_on!r}: expected one of auto, test, val")
    if not _complete(scan, EVAL_LEVELS[pruning], ran):
        raise InputError(
            f"spectra.pruning {pruning}: {where} lacks {EVAL_LEVELS[pruning]} at some "
            f"scan point; {MEASURE_HINT}"
        )
    note = ""
    if select_on == "auto":
        nonlinear = scan_model_kind(scan) != "linear"
        select_on = "val" if nonlinear else "test"
        note = "auto: " + ("val for a nonlinear model" if nonlinear else "test for the linear VAE")
        if nonlinear and not _complete(scan, VAL_LEVELS[pruning], ran):
            select_on = "test"
            note = f"auto: test, as {where} lacks the validation split's levels ({MEASURE_HINT})"
    elif select_on == "val" and not _complete(scan, VAL_LEVELS[pruning], ran):
        raise InputError(
            f"spectra.select_on val: {where} lacks {VAL_LEVELS[pruning]} at some scan point; "
            f"{MEASURE_HINT}"
        )
    return Selection(pruning, select_on, note)
