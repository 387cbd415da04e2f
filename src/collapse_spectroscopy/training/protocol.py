"""The trainer: the protocol of equilibrium training around any engine (docs/science.md §5).

Windows of ``eval_every`` updates; after each, the loss on the whole validation split
(averaged exactly over the noise, so that early stopping compares weights and not noise
draws); the best-validation weights are kept; training stops after ``patience`` updates
without improvement or at ``max_updates``. With a checkpoint file, a checkpoint every
``checkpoint_every`` updates and on SIGTERM/SIGUSR1 (then :class:`.checkpoint.Interrupted`),
and a resume from it when it exists (:mod:`.checkpoint`).

The trainer only calls the five members of the engine protocol
(:class:`.engines.base.Engine`); it never asks which engine it has.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from tqdm.auto import tqdm

from collapse_spectroscopy.errors import TrainingError
from collapse_spectroscopy.training import checkpoint as ckpt
from collapse_spectroscopy.training.engines.base import Engine

# train_loss is the window's mean batch loss, train_loss_max its largest (a loss spike shows
# there, docs/science.md §7b; last, so that a checkpoint's rows from before it gain a NaN)
LOG_COLUMNS = [
    "update",
    "train_loss",
    "val_loss",
    "val_distortion",
    "val_rate",
    "elapsed_s",
    "train_loss_max",
]
#: Seconds between two progress lines in a job's log (the first window always gets one),
#: so that a long training is never silent for minutes.
PROGRESS_EVERY_S = 10.0
#: A batch loss above this many times the best validation loss so far is reported as a loss
#: spike (docs/science.md §7b). Why 100: in the MLP WorldClim cooling chain a batch holding
#: one badly reconstructed extreme cell reaches 4-12 times the median batch loss, and the
#: spikes that set the posterior variance of such cells to ~exp(60) reach 1e2 to 1e12
#: times; batches differ from the validation loss only by their 256 cells and their noise.
SPIKE_FACTOR = 100.0


class Schedule(Protocol):
    """What the trainer reads of the training options (a ``training.TrainConfig``)."""

    max_updates: int
    eval_every: int
    checkpoint_every: int
    progress: bool | None  # None: a progress bar only on a terminal

    @property
    def patience_updates(self) -> int: ...


@dataclass
class Run:
    """Where a training stands: everything a checkpoint holds besides the engine's state."""

    update: int = 0
    best_loss: float = math.inf
    best_update: int = 0
    best_state: dict | None = None  # the model's state_dict at best_update
    rows: list = field(default_factory=list)  # one LOG_COLUMNS tuple per validation
    elapsed_before: float = 0.0  # seconds spent before a resume
    resumed_from: int = 0  # the update a checkpoint resumed at (0: started afresh)
    stop_reason: str = "max_updates"
    t0: float = field(default_factory=time.perf_counter)

    def elapsed(self) -> float:
        return self.elapsed_before + time.perf_counter() - self.t0


class Progress:
    """One line on stderr (the job's log) after the first validation window and then at
    most every :data:`PROGRESS_EVERY_S` seconds: the update, the window's mean batch loss,
    the validation loss and the best one, what ``describe(model)`` says (the active
    latents), and the updates/s since the previous line (training only: a job's start-up
    and the kernels' compile are not in it)."""

    def __init__(self, label: str, max_updates: int, describe: Callable | None, run: Run):
        self.label, self.max_updates, self.describe = label, max_updates, describe
        self.last_t, self.last_update = time.perf_counter(), run.update
        self.lines = 0

    def after_window(self, engine: Engine, run: Run) -> None:
        now = time.perf_counter()
        if self.lines and now - self.last_t < PROGRESS_EVERY_S:
            return
        rate = (run.update - self.last_update) / max(now - self.last_t, 1e-9)
        _, train_loss, val, *_ = run.rows[-1]
        extra = f", {self.describe(engine.sync_model())}" if self.describe else ""
        print(
            f"{self.label}: update {run.update:,}/{self.max_updates:,}, batch loss "
            f"{train_loss:.6g}, validation loss {val:.6g} (best {run.best_loss:.6g} at "
            f"{run.best_update:,}){extra}, {rate:,.0f} updates/s",
            file=sys.stderr,
            flush=True,
        )
        self.last_t, self.last_update = now, run.update
        self.lines += 1


def train(
    engine: Engine,
    config: Schedule,
    *,
    label: str,
    identity: dict,
    checkpoint=None,
    describe: Callable | None = None,
) -> Run:
    """Train ``engine`` by the protocol; ``label`` (``T=..., seed=...``) names the training in
    errors and progress lines, ``identity`` is what a checkpoint must belong to;
    ``describe(model)``, if given, adds to each progress line (:class:`Progress`)."""
    run = resume(engine, checkpoint, identity)
    progress = Progress(label, config.max_updates, describe, run)
    bar = tqdm(
        total=config.max_updates,
        disable=None if config.progress is None else not config.progress,  # None: on a tty
        desc=label,
        unit="upd",
        smoothing=0.1,
        initial=run.update,
    )
    flag = ckpt.SignalFlag() if checkpoint else contextlib.nullcontext()
    pause_at = ckpt.pause_update() if checkpoint else None  # tests only (ckpt.PAUSE_ENV)
    try:
        with flag:
            while run.update < config.max_updates:
                window = min(config.eval_every, config.max_updates - run.update)
                losses = run_window(engine, run, window, label)
                report_spike(losses, run, label)
                validate(engine, run, losses, label)
                progress.after_window(engine, run)
                bar.update(run.update - bar.n)
                bar.set_postfix(best_val=f"{run.best_loss:.5g}", refresh=False)
                if patience_ran_out(run, config):
                    run.stop_reason = "early_stopping"
                    break
                if pause_at is not None and run.update - window < pause_at <= run.update:
                    ckpt.pause(checkpoint, run.update, flag)  # tests only: wait for a signal
                if checkpoint and checkpoint_due(run, config, window, flag):
                    save(checkpoint, engine, run, identity)
                    if flag.raised:
                        raise ckpt.Interrupted(
                            f"{flag.raised} at update {run.update} of the training at {label}: "
                            f"checkpoint written to {checkpoint}; rerun the job to resume"
                        )
    finally:
        bar.close()
    return run


def run_window(engine: Engine, run: Run, n: int, label: str) -> np.ndarray:
    """``n`` updates; TrainingError naming the first update whose batch loss is not finite."""
    losses = engine.run_window(n)
    run.update += n
    bad = np.flatnonzero(~np.isfinite(losses))
    if bad.size:
        raise TrainingError(
            f"non-finite training loss ({losses[bad[0]]}) at {label}, "
            f"update {run.update - n + int(bad[0]) + 1}"
        )
    return losses


def report_spike(losses: np.ndarray, run: Run, label: str) -> None:
    """One line on stderr when the window just run (ending at ``run.update``) holds a batch
    loss above :data:`SPIKE_FACTOR` times the best validation loss of the earlier windows:
    a loss spike (docs/science.md §7b). Training goes on, and early stopping keeps the best
    weights, so a point's record is the spike's only if the best comes after it: the line
    lets a reader of the log check which."""
    if not (math.isfinite(run.best_loss) and run.best_loss > 0):
        return  # the first window: no validation loss yet to compare with
    over = np.flatnonzero(losses > SPIKE_FACTOR * run.best_loss)
    if not over.size:
        return
    i = int(over[np.argmax(losses[over])])
    first = run.update - losses.size + 1
    print(
        f"{label}: a loss spike at update {first + i:,}: batch loss {losses[i]:.3g}, "
        f"{losses[i] / run.best_loss:.3g} times the best validation loss "
        f"({run.best_loss:.6g} at {run.best_update:,}); {over.size} batch(es) of updates "
        f"{first:,}-{run.update:,} over {SPIKE_FACTOR:g} times; training goes on, early "
        "stopping keeps the best weights (docs/science.md §7b)",
        file=sys.stderr,
        flush=True,
    )


def validate(engine: Engine, run: Run, losses: np.ndarray, label: str) -> None:
    """Log the window (mean and largest batch loss, validation loss) and keep the best
    weights."""
    val, distortion, rate = engine.validation_loss()
    model = engine.sync_model()
    if not math.isfinite(val):
        raise TrainingError(f"non-finite validation loss at {label}, update {run.update}")
    mean, largest = float(losses.mean()), float(losses.max())
    run.rows.append((run.update, mean, val, distortion, rate, run.elapsed(), largest))
    if val < run.best_loss:
        run.best_loss, run.best_update = val, run.update
        run.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}


def patience_ran_out(run: Run, config: Schedule) -> bool:
    """Early stopping: ``patience`` updates without improvement, before the budget ends."""
    return run.update < config.max_updates and (
        run.update - run.best_update >= config.patience_updates
    )


def checkpoint_due(run: Run, config: Schedule, window: int, flag) -> bool:
    """A checkpoint after the window that crossed a multiple of ``checkpoint_every``, or
    after a signal; none at the end (the outputs are written then)."""
    every = config.checkpoint_every
    crossed = run.update // every > (run.update - window) // every
    return run.update < config.max_updates and (crossed or bool(flag.raised))


def save(path, engine: Engine, run: Run, identity: dict) -> None:
    ckpt.save(
        path,
        {
            "identity": identity,
            "update": run.update,
            "engine": engine.state_dict(),
            **run_state(run),
        },
    )


def run_state(run: Run) -> dict:
    """What a checkpoint stores of a run (:func:`restored_run` rebuilds it)."""
    return {
        "update": run.update,
        "best_loss": run.best_loss,
        "best_update": run.best_update,
        "best_state": run.best_state,
        "rows": run.rows,
        "elapsed_s": run.elapsed(),
    }


def _padded(row) -> tuple:
    """A log row of a checkpoint written before the last columns of LOG_COLUMNS existed,
    with NaN for them (train_loss_max: not recorded then)."""
    return (*row, *[math.nan] * (len(LOG_COLUMNS) - len(row)))


def restored_run(state: dict, *, resumed_from: int, cls: type[Run] = Run, **fields) -> Run:
    """The run (a ``cls``, with ``fields`` besides) that a checkpoint's :func:`run_state`
    ``state`` holds, resumed at update ``resumed_from``."""
    return cls(
        update=state["update"],
        best_loss=state["best_loss"],
        best_update=state["best_update"],
        best_state=state["best_state"],
        rows=[_padded(row) for row in state["rows"]],
        elapsed_before=state["elapsed_s"],
        resumed_from=resumed_from,
        **fields,
    )


def resume(engine: Engine, path, identity: dict) -> Run:
    """The run stored in the checkpoint at ``path`` (the engine restored from it), or a
    fresh run when there is none."""
    state = ckpt.load(path, identity) if path else None
    if state is None:
        return Run()
    engine.load_state_dict(state["engine"])
    return restored_run(state, resumed_from=state["update"])
