"""Training engines and their registry (docs/science.md §5).

Every engine implements one protocol (:class:`.base.Engine`) and trains the same way: the
same batches (:mod:`.batches`), the same Adam formula and constants and the same flat
parameter layout (:mod:`.layout`), noise of the same distribution.

``fast`` (:mod:`.torch_engines`)
    hand-written gradients and fused Adam in torch; device-agnostic (the CUDA engine).
``autograd`` (:mod:`.torch_engines`)
    the reference: autograd and ``torch.optim.Adam``; the same noise as ``fast``.
``numba`` (:mod:`.numba`)
    the same gradients and Adam, jitted, a window of updates per compiled call, on one
    CPU core; noise from its own generator (same distribution, other draws).
``mlp`` (:mod:`.mlp`)
    autograd and ``torch.optim.Adam`` for a model of any family, validated on fixed noise
    draws (no closed form for a nonlinear decoder); the engine of ``model.kind: mlp`` on
    CUDA and the reference of ``mlp_fast``.
``mlp_fast`` (:mod:`.mlp_fast`)
    the ``mlp`` engine's update for the MLP VAE with hand-written forward and backward
    passes in torch (no autograd), on the same batches and noise; ``auto``'s engine of
    ``model.kind: mlp`` on a CPU.
``batched`` (:mod:`.batched`)
    P scan points as one batched model, each point with its own batches and noise: for
    ``model.kind: linear`` ``fast``'s update over stacked parameters, for ``mlp``
    ``mlp_fast``'s (:mod:`.batched_mlp`), picked by the points' family; registered as a
    batch of one, trained for several points by
    :func:`collapse_spectroscopy.training.batched.train_scan_points_batched`. ``auto``
    never picks it (a point's result would depend on the points it is batched with).

``kinds`` says which ``model.kind`` an engine trains: the first three train the linear
VAE only (their validation, and the hand-written ones' gradients, are its closed forms),
``mlp_fast`` the MLP VAE only, ``batched`` both, ``mlp`` (autograd) any family, a custom
model (``model.kind: custom``) included.

:data:`ENGINES` is the one list of engine names: the command line's choices, the
configuration schema's ``training.engine`` enum (checked by a test) and
:meth:`collapse_spectroscopy.training.scan_point.TrainConfig.validate` read it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from collapse_spectroscopy.errors import InputError
from collapse_spectroscopy.training.engines.base import Engine, TrainingProblem


@dataclass(frozen=True)
class EngineEntry:
    """Where an engine lives (imported on first use, so that a run with a torch engine
    never imports numba), whether it runs on the CPU only, and the model families
    (``model.kind``) it trains."""

    module: str  # relative to this package
    cls: str
    cpu_only: bool = False
    kinds: tuple[str, ...] = ("linear",)


ENGINES: dict[str, EngineEntry] = {
    "fast": EngineEntry(".torch_engines", "FastEngine"),
    "autograd": EngineEntry(".torch_engines", "AutogradEngine"),
    "numba": EngineEntry(".numba.engine", "NumbaEngine", cpu_only=True),
    "mlp": EngineEntry(".mlp", "MLPEngine", kinds=("mlp", "linear", "custom")),
    "mlp_fast": EngineEntry(".mlp_fast", "MLPFastEngine", kinds=("mlp",)),
    "batched": EngineEntry(".batched", "BatchedPointEngine", kinds=("linear", "mlp")),
}


def engine_class(name: str) -> type[Engine]:
    """The class of the engine called ``name`` (a key of :data:`ENGINES`)."""
    entry = ENGINES[name]
    return getattr(importlib.import_module(entry.module, __name__), entry.cls)


def resolve_engine(name: str, device, kind: str = "linear") -> str:
    """The engine that ``name`` (a key of :data:`ENGINES` or ``auto``) means on ``device``
    (a ``torch.device``) for a model of family ``kind``; InputError for an engine that
    cannot run there or cannot train that family."""
    if name == "auto":
        if kind == "custom":  # autograd: the one engine that trains any module
            return "mlp"
        if kind != "linear":
            # mlp_fast: ~2x mlp on one CPU core (benchmarks/bench_engines.py --mlp-only);
            # mlp on CUDA, where it is the measured engine
            return "mlp_fast" if device.type == "cpu" else "mlp"
        # numba: ~7x fast on a CPU (benchmarks/bench_engines.py)
        return "numba" if device.type == "cpu" else "fast"
    if kind not in ENGINES[name].kinds:
        able = [n for n, e in ENGINES.items() if kind in e.kinds]
        raise InputError(
            f"training.engine = {name!r} cannot train model.kind = {kind!r}: "
            f"use 'auto' or {' or '.join(repr(n) for n in able)}"
        )
    if ENGINES[name].cpu_only and device.type != "cpu":
        raise InputError(
            f"training.engine = {name!r} runs on the CPU only, not on {device}: "
            f"use 'fast' (or 'auto') for {device.type.upper()}"
        )
    return name


def make_engine(name: str, problem: TrainingProblem) -> Engine:
    """A new engine ``name`` for ``problem``."""
    return engine_class(name)(problem)


__all__ = ["ENGINES", "Engine", "TrainingProblem", "engine_class", "make_engine", "resolve_engine"]
