"""Resumable training: checkpoints of one scan point's training state.

A checkpoint is written atomically at the end of a validation window, every
``checkpoint_every`` updates, and holds everything the trainer needs to continue exactly
where it was: the engine's state (``Engine.state_dict``: weights, Adam moments and step,
the batch-order generator with the current epoch's permutation and position, the noise
generator), the early-stopping state (best loss, best update, best weights), the log rows
and the update count. A run resumed from it gives on the CPU bit-identical weights and
observables to a run that was never interrupted.

A checkpoint names what it belongs to (T, seed, beta, data shape, the training options);
a checkpoint of anything else is an error, never silently used.

SIGTERM and SIGUSR1 (SLURM's warning before a time limit or a preemption), and SIGINT
(Ctrl-C), do not stop training at once: they set a flag; at the end of the current
validation window (at most ``eval_every`` updates, well under a second with the default
engine) the trainer writes a checkpoint and raises :class:`Interrupted`, which the CLI
turns into exit status 4 so that Snakemake's ``restart-times`` or a requeue resumes the job.

For tests only, :data:`PAUSE_ENV` stops a training at a known update and waits there for
a signal (:func:`pause`), so that kill and interrupt tests never race a timer.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import torch

from collapse_spectroscopy.errors import InputError, Interrupted  # noqa: F401 (ckpt.Interrupted, as before)
from collapse_spectroscopy.store.atomic import atomic_path, save_torch

# SIGINT too: Ctrl-C at a terminal (to the whole process group) checkpoints like SLURM's
# signals, rather than ending in a KeyboardInterrupt traceback with no checkpoint.
SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)

# Test-only (tests/training/test_resume.py, tests/workflow/test_workflow.py): a kill or
# interrupt test must signal a training at a known update; a sleep before the signal races
# the training, which may finish first on a fast or idle machine. With this variable set to
# N, a training with a checkpoint file stops at the end of the validation window that
# reaches update N, before that window's checkpoint, and waits (see :func:`pause`). Never
# set in a real run.
PAUSE_ENV = "COLLAPSE_SPECTROSCOPY_TEST_PAUSE_AT_UPDATE"


def save(path: str | os.PathLike, state: dict) -> None:
    save_torch(path, state)  # a full disk gives one line naming the checkpoint


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
    return _upgrade(state)


def _upgrade(state: dict) -> dict:
    """A checkpoint of the first format (before the engine protocol) kept the model, the
    batch stream and the torch noise generator beside the engine's state: move them in."""
    if "g_shuffle" not in state:
        return state
    engine = {
        **state.pop("engine"),
        "model": state.pop("model"),
        "g_noise": state.pop("g_noise"),
        "batches": {**state.pop("batches"), "generator": state.pop("g_shuffle")},
    }
    return {**state, "engine": engine}


def pause_update() -> int | None:
    """The update N of the test-only pause (:data:`PAUSE_ENV`); None when it is unset."""
    value = os.environ.get(PAUSE_ENV, "")
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise InputError(
            f"{PAUSE_ENV}={value!r}: expected an update number (a test-only setting: unset it)"
        ) from None


def pause(checkpoint: str | os.PathLike, update: int, flag: SignalFlag) -> None:
    """Test-only: write ``<checkpoint>.paused`` (holding ``update``) and wait for a signal.

    SIGKILL ends the process here, with the checkpoints of earlier updates on disk;
    SIGTERM/SIGUSR1 set ``flag`` and training goes on as after any such signal: a
    checkpoint at ``update``, then :class:`Interrupted`.
    """
    with atomic_path(f"{os.fspath(checkpoint)}.paused") as tmp:
        tmp.write_text(f"{update}\n")
    while not flag.raised:
        time.sleep(0.01)  # the signal handler sets the flag; sleep returns after it ran


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
