"""Resumable training: checkpoints of one scan point's training state (issue 5).

A checkpoint is written atomically at the end of a validation window, every
``checkpoint_every`` updates, and holds everything the loop needs to continue exactly
where it was: the model and engine state (weights, Adam moments and step, the engine's
own noise state), the batch-order generator and the current epoch's permutation and
position, the torch noise generator, the early-stopping state (best loss, best update,
best weights), the log rows and the update count. A run resumed from it gives on the CPU
bit-identical weights and observables to a run that was never interrupted.

A checkpoint names what it belongs to (T, seed, beta, data shape, the training options);
a checkpoint of anything else is an error, never silently used.

SIGTERM and SIGUSR1 (SLURM's warning before a time limit or a preemption) do not stop
training at once: they set a flag; at the end of the current validation window (at most
``eval_every`` updates, well under a second with the default engine) the loop writes a
checkpoint and raises :class:`Interrupted`, which the CLI turns into exit status 4 so
that Snakemake's ``restart-times`` or a requeue resumes the job.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import torch

from .errors import InputError
from .io import atomic_path

SIGNALS = (signal.SIGTERM, signal.SIGUSR1)


class Interrupted(RuntimeError):
    """Training stopped on a signal after writing a checkpoint; rerun to resume."""


def save(path: str | os.PathLike, state: dict) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load(path: str | os.PathLike, identity: dict) -> dict | None:
    """The checkpoint at ``path`` if there is one, after checking it is for ``identity``."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise InputError(
            f"checkpoint {str(path)!r} cannot be read ({exc}); delete it to "
            "start this scan point afresh"
        ) from exc
    if state.get("identity") != identity:
        raise InputError(
            f"checkpoint {str(path)!r} belongs to another training "
            f"({state.get('identity')}), not to {identity}; delete it to start "
            "afresh"
        )
    return state


class SignalFlag:
    """Context manager: SIGTERM/SIGUSR1 set ``.raised`` instead of killing the process."""

    def __init__(self):
        self.raised = None
        self._old = {}

    def __enter__(self):
        for sig in SIGNALS:
            with contextlib.suppress(ValueError):  # not the main thread: leave signals be
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.raised = signal.Signals(signum).name

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        return False
