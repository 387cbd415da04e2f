"""Equilibrium training of several scan points as one batched model (docs/science.md §5).

:func:`train_scan_points_batched` trains P points ``(T, seed)`` on the same data with the
batched engine (:mod:`.engines.batched`: the linear VAE's or the MLP VAE's, by
``model.kind``) and returns one :class:`.scan_point.TrainResult` per point, each what
:func:`.scan_point.train_scan_point` returns for that point alone with the engine whose
update the batch runs (``fast`` for the linear VAE, ``mlp_fast`` for the MLP VAE: same
initialization, batches and noise, the same protocol; equal up to rounding,
tests/training/test_batched_engine.py and tests/training/test_batched_mlp.py).

The protocol is the trainer's, applied to every point (:func:`train_batch`): after each
window of ``eval_every`` updates of the batch, each point's losses are checked, its
validation loss logged and its best weights kept by the very functions of
:mod:`.protocol` (through the point's :class:`.engines.point_view.PointView`); a point whose
patience ran out stops (``early_stopping``) and is retired from the batch, which trains on
with the others, whose trajectories do not change. The batch ends when every point has
stopped or reached ``max_updates``.

One checkpoint file holds the whole batch (every point's engine state and early-stopping
state, a finished point's result included): a checkpoint every ``checkpoint_every``
updates and on SIGTERM/SIGUSR1 (then :class:`.checkpoint.Interrupted`), and a resume from
it when it exists, bit-identical on the CPU to a run never interrupted.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import torch
from tqdm.auto import tqdm

from collapse_spectroscopy.analysis.temperature import temperature_to_beta, total_variance
from collapse_spectroscopy.config import settings
from collapse_spectroscopy.errors import InputError, TrainingError
from collapse_spectroscopy.models.families import Architecture, model_spec
from collapse_spectroscopy.training import checkpoint as ckpt
from collapse_spectroscopy.training import protocol
from collapse_spectroscopy.training.engines.batched import batched_engine
from collapse_spectroscopy.training.engines.point_batch import PointBatch
from collapse_spectroscopy.training.engines.point_view import ENGINE_NAME
from collapse_spectroscopy.training.protocol import Run, Schedule
from collapse_spectroscopy.training.scan_point import (
    TrainConfig,
    TrainResult,
    check_inputs,
    point_identity,
    point_label,
    resolve_device,
    seed_streams,
    training_problem,
)

_MODEL = settings.section_defaults("model")  # the one home of these defaults
ENGINE = ENGINE_NAME


def train_batch(
    batch: PointBatch,
    config: Schedule,
    *,
    labels: Sequence[str],
    identities: Sequence[dict],
    checkpoint=None,
    keep_going: bool = False,
) -> list[PointRun | TrainingError]:
    """Train every point of ``batch`` by the protocol (:func:`.protocol.train`'s rule, per
    point); one :class:`.protocol.Run` per point. ``labels`` name the points in errors,
    ``identities`` are what a checkpoint must belong to.

    A non-finite loss raises :class:`.errors.TrainingError` naming the point and update;
    with ``keep_going`` the point is retired instead, its error takes its place in the
    result, and the others train on.
    """
    views = [batch.view(i) for i in range(batch.n_points)]
    runs, failed, update = resume(batch, checkpoint, list(identities))
    bar = tqdm(
        total=config.max_updates,
        disable=None if config.progress is None else not config.progress,
        desc=f"{batch.n_points} points",
        unit="upd",
        smoothing=0.1,
        initial=update,
    )
    flag = ckpt.SignalFlag() if checkpoint else contextlib.nullcontext()
    pause_at = ckpt.pause_update() if checkpoint else None  # tests only (ckpt.PAUSE_ENV)
    try:
        with flag:
            while batch.active and update < config.max_updates:
                window = min(config.eval_every, config.max_updates - update)
                batch.run_window(window)
                update += window
                for i in list(batch.active):
                    try:
                        losses = protocol.run_window(views[i], runs[i], window, labels[i])
                        protocol.report_spike(losses, runs[i], labels[i])
                        protocol.validate(views[i], runs[i], losses, labels[i])
                    except TrainingError as exc:
                        if not keep_going:
                            raise
                        failed[i] = str(exc)
                        runs[i].stop_reason = "failed"
                        _finish(batch, runs[i], i)
                        continue
                    if protocol.patience_ran_out(runs[i], config):
                        runs[i].stop_reason = "early_stopping"
                        _finish(batch, runs[i], i)
                bar.update(update - bar.n)
                if pause_at is not None and update - window < pause_at <= update:
                    ckpt.pause(checkpoint, update, flag)  # tests only: wait for a signal
                at = SimpleNamespace(update=update)
                if (
                    checkpoint
                    and batch.active
                    and protocol.checkpoint_due(at, config, window, flag)
                ):
                    save(checkpoint, batch, runs, failed, update, identities)
                    if flag.raised:
                        raise ckpt.Interrupted(
                            f"{flag.raised} at update {update} of the batched training of "
                            f"{batch.n_points} points ({labels[0]}, ...): checkpoint written "
                            f"to {checkpoint}; rerun the job to resume"
                        )
    finally:
        bar.close()
    for i in list(batch.active):  # reached max_updates
        _finish(batch, runs[i], i)
    return [TrainingError(failed[i]) if i in failed else run for i, run in enumerate(runs)]


@dataclass
class PointRun(Run):
    """A point's :class:`.protocol.Run` in a batch: its clock stops when the point does."""

    stopped_after: float | None = None  # seconds, once the point has stopped

    def elapsed(self) -> float:
        return self.stopped_after if self.stopped_after is not None else super().elapsed()


def _finish(batch: PointBatch, run: PointRun, point: int) -> None:
    """Retire a point that stopped; its elapsed time stops with it."""
    batch.retire(point)
    run.stopped_after = run.elapsed()


def save(path, batch: PointBatch, runs: list[PointRun], failed: dict, update: int, identities):
    """The whole batch in one checkpoint file (atomic)."""
    ckpt.save(
        path,
        {
            "identity": {"batch": list(identities)},
            "update": update,
            "engine": batch.state_dict(),
            "runs": [_run_state(r) for r in runs],
            "failed": dict(failed),
        },
    )


def _run_state(run: PointRun) -> dict:
    return {
        **protocol.run_state(run),
        "stop_reason": run.stop_reason,
        "resumed_from": run.resumed_from,
    }


def resume(batch: PointBatch, path, identities: list[dict]):
    """``(runs, failed, update)`` from the checkpoint at ``path`` (the batch restored from
    it), or fresh runs when there is none."""
    state = ckpt.load(path, {"batch": identities}) if path else None
    if state is None:
        return [PointRun() for _ in identities], {}, 0
    batch.load_state_dict(state["engine"])
    runs = []
    for i, r in enumerate(state["runs"]):
        run = protocol.restored_run(
            r,
            cls=PointRun,
            resumed_from=state["update"] if i in batch.active else r["resumed_from"],
            stop_reason=r["stop_reason"],
            # a point finished before the checkpoint keeps its time
            stopped_after=None if i in batch.active else r["elapsed_s"],
        )
        runs.append(run)
    return runs, dict(state["failed"]), int(state["update"])


def checkpoint_identity(path) -> dict | None:
    """The identity a checkpoint file holds; None when there is none or it cannot be read
    (:func:`.checkpoint.load` then names the fault)."""
    if not os.path.isfile(path):
        return None
    try:
        identity = torch.load(path, map_location="cpu", weights_only=False).get("identity")
    except Exception:
        return None
    return identity if isinstance(identity, dict) else None


def train_scan_points_batched(
    x_train: np.ndarray,
    x_val: np.ndarray,
    points: Sequence[tuple[float, int]],
    latents: int = _MODEL["latents"],
    sigma2: float = _MODEL["sigma2"],
    config: TrainConfig | None = None,
    checkpoint: str | os.PathLike | None = None,
    *,
    arch: Architecture | None = None,
    cuda_graphs: bool = False,
    keep_going: bool = False,
    on_foreign_checkpoint: Callable[[str], None] | None = None,
) -> list[TrainResult | TrainingError]:
    """Train the VAE of architecture ``arch`` (as :func:`.scan_point.train_scan_point`;
    a family the batched engine trains) at every ``(T, seed)`` of ``points`` to
    equilibrium, as one batched model (docs/science.md §5); one result per point, in order.

    Point ``(T, seed)`` is initialized, batched and noised as by
    :func:`.scan_point.train_scan_point` (the seeds' three streams), so its result equals
    that function's with ``engine='fast'`` (linear) or ``'mlp_fast'`` (mlp) up to
    rounding. ``config`` is shared
    (``training.engine`` must be ``auto`` or ``batched``); ``checkpoint`` one file for the
    whole batch (removed by the caller once every point's outputs are written);
    ``cuda_graphs`` replays each update as a CUDA graph (CUDA only). A result's
    ``elapsed_s`` is the batch's wall time until that point stopped, shared by all the
    points trained with it. With ``keep_going`` a point whose loss is not finite gets its
    :class:`.errors.TrainingError` in its place and the others train on; otherwise that
    error is raised. A ``checkpoint`` of another batch (other points, or other options) is
    refused (:class:`.errors.InputError`), unless ``on_foreign_checkpoint`` is given: it is
    then deleted, ``on_foreign_checkpoint(message)`` is called and the batch starts afresh
    (a chunk job whose rerun has fewer points left, :mod:`collapse_spectroscopy.jobs.train_job`).
    """
    config = config or TrainConfig()
    check_batched_config(config)
    arch = arch or Architecture()
    arch.check()
    points = [(float(t), int(s)) for t, s in points]
    if not points:
        raise InputError("train_scan_points_batched: no scan points (an empty list)")
    for temperature, _ in points:
        check_inputs(x_train, x_val, temperature, sigma2, latents)
    device = resolve_device(config.device)
    V = total_variance(x_train)  # measured once for all the points
    problems, identities, labels = point_problems(
        x_train, x_val, points, latents, sigma2, config, device, V, arch
    )
    if checkpoint is not None and on_foreign_checkpoint is not None:
        drop_foreign_checkpoint(checkpoint, identities, on_foreign_checkpoint)
    batch = batched_engine(problems, cuda_graphs=cuda_graphs)
    runs = train_batch(
        batch,
        config,
        labels=labels,
        identities=identities,
        checkpoint=checkpoint,
        keep_going=keep_going,
    )
    return [
        run
        if isinstance(run, TrainingError)
        else TrainResult.from_run(
            pr.model, run, beta=pr.beta, total_variance=V, device=device, engine=ENGINE
        )
        for pr, run in zip(problems, runs, strict=True)
    ]


def check_batched_config(config: TrainConfig) -> None:
    """InputError unless ``config`` is valid and one the batched engine trains."""
    config.validate()
    if config.engine not in ("auto", ENGINE):
        raise InputError(
            f"training.engine = {config.engine!r}: several points in one batched model "
            f"train with the {ENGINE!r} engine (use 'auto' or {ENGINE!r})"
        )
    if config.average != "none":
        # the batched engine keeps no running average (engines/averaging.py): training
        # on without it would silently measure the raw iterate
        raise InputError(
            f"training.average = {config.average!r}: the {ENGINE!r} engine trains the raw "
            "iterate only (use average none, or another engine)"
        )


def point_problems(x_train, x_val, points, latents, sigma2, config, device, V, arch):
    """``(problems, identities, labels)``: for each ``(T, seed)`` of ``points`` what the
    batched engine trains (a model of architecture ``arch``, initialized,
    batched and noised by the seed's three streams), what its checkpoint must belong to
    (with the model's family: a linear batch's identity is as before families existed),
    and how errors name it."""
    dtype = getattr(torch, config.dtype)
    problems, identities, labels = [], [], []
    for temperature, seed in points:
        beta = temperature_to_beta(temperature, V, sigma2)
        s_init, s_shuffle, s_noise = seed_streams(seed)
        generator = torch.Generator().manual_seed(s_init)
        model = arch.build(x_train.shape[1], latents, generator=generator, dtype=dtype)
        model = model.to(device)
        problems.append(
            training_problem(model, x_train, x_val, beta, sigma2, config, s_shuffle, s_noise)
        )
        unused = ("progress", "checkpoint_every", "device", "engine")
        identity = point_identity(
            temperature, seed, beta, latents, sigma2, x_train, x_val, ENGINE, config, unused
        )
        identities.append({**identity, **model_spec(model)})
        labels.append(point_label(temperature, beta, seed))
    return problems, identities, labels


def drop_foreign_checkpoint(checkpoint, identities: list[dict], said: Callable[[str], None]):
    """Delete ``checkpoint`` if it belongs to another batch than the points of
    ``identities`` (and call ``said`` with why)."""
    held = checkpoint_identity(checkpoint)
    if held is not None and held != {"batch": identities}:
        os.unlink(checkpoint)
        said(
            f"checkpoint {os.fspath(checkpoint)!r} belongs to another training "
            f"({len(held.get('batch') or [])} points, not these {len(identities)})"
        )
