"""Equilibrium training of one scan point (docs/science.md §5).

Minibatch Adam on ``L = D + beta R`` with ``beta = T V / sigma2``; the whole validation split
is evaluated every ``eval_every`` updates, training stops after ``patience`` updates
without improvement (or at ``max_updates``), and the best-validation weights are kept.

Choices the paper leaves open, made here and written down:

- **Batches**: an epoch is a seeded random permutation of the training split cut into
  consecutive batches; the last batch of an epoch may be short (499,599 samples at batch
  256 make the paper's 1952 batches).
- **Validation loss**: the beta-VAE loss averaged *exactly* over the reparameterization
  noise (:func:`collapse_spectroscopy.model.expected_loss`), so early stopping is not
  driven by Monte-Carlo noise of the validation pass.
- **Seeds**: one integer seeds three independent streams (initialization, batch order,
  reparameterization noise) through :class:`numpy.random.SeedSequence`; on CPU the same
  seed gives bit-identical weights.
- **Engine**: ``auto`` by default: ``numba`` on a CPU, ``fast`` on CUDA. ``fast``
  (hand-written gradients in torch, :mod:`.engines`) is device-agnostic; ``autograd``
  is the reference implementation with the same batches, noise and Adam formula.
  ``numba`` (:mod:`.engine_numba`, CPU) runs a whole validation window per call
  (``run_window``) on the same batches, with noise of the same distribution drawn from
  its own generator, seeded by the same noise seed; it computes the same validation loss
  itself (from the split's second moments, see ``NumbaEngine.expected_loss``).
- **Patience**: an int >= 1 is a count of updates; a float in (0, 1) a fraction of
  ``max_updates`` (the paper: 0.1 of 500,000 = 50,000).
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from . import checkpoint as ckpt
from .engines import ENGINES
from .errors import InputError, TrainingError
from .model import LinearVAE, expected_loss
from .units import temperature_to_beta

LOG_COLUMNS = ["update", "train_loss", "val_loss", "val_distortion", "val_rate", "elapsed_s"]


@dataclass
class TrainConfig:
    """Hyperparameters of equilibrium training.

    Defaults: the paper's protocol (docs/science.md §5).
    """

    learning_rate: float = 1e-3
    batch_size: int = 256
    max_updates: int = 500_000
    patience: float = 0.1
    eval_every: int = 1000
    device: str = "auto"
    dtype: str = "float32"
    engine: str = "auto"
    checkpoint_every: int = 10_000  # updates between checkpoints (with a checkpoint path)
    progress: bool | None = None  # None: a progress bar only on a terminal

    def validate(self) -> None:
        def bad(key, expected):
            raise InputError(f"training.{key} = {getattr(self, key)!r}: expected {expected}")

        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            bad("learning_rate", "a finite number > 0")
        if int(self.batch_size) != self.batch_size or self.batch_size < 1:
            bad("batch_size", "an integer >= 1")
        if int(self.max_updates) != self.max_updates or self.max_updates < 1:
            bad("max_updates", "an integer >= 1")
        if int(self.eval_every) != self.eval_every or self.eval_every < 1:
            bad("eval_every", "an integer >= 1")
        if not (self.patience > 0):
            bad("patience", "an update count >= 1 or a fraction of max_updates in (0, 1)")
        if self.patience >= 1 and int(self.patience) != self.patience:
            bad("patience", "an integer count when >= 1")
        if self.engine != "auto" and self.engine not in ENGINES:
            bad("engine", f"'auto' or one of {', '.join(ENGINES)}")
        if int(self.checkpoint_every) != self.checkpoint_every or self.checkpoint_every < 1:
            bad("checkpoint_every", "an integer >= 1 (updates between checkpoints)")
        if self.dtype not in ("float32", "float64"):
            bad("dtype", "'float32' or 'float64'")

    @property
    def patience_updates(self) -> int:
        """Patience as a number of updates."""
        if self.patience < 1:
            return max(1, int(round(self.patience * self.max_updates)))
        return int(self.patience)


@dataclass
class TrainResult:
    """The outcome of training one scan point."""

    model: LinearVAE  # best-validation weights, on the CPU
    log: pd.DataFrame  # one row per validation pass (LOG_COLUMNS)
    updates_run: int
    best_update: int
    best_val_loss: float
    stop_reason: str  # "early_stopping" or "max_updates"
    beta: float
    total_variance: float
    elapsed_s: float
    device: str
    engine: str
    resumed_from: int = 0  # update the run resumed at (0: started afresh)

    def summary_line(self) -> str:
        """One line for a job's log: what was run and how it ended."""
        rate = self.updates_run / self.elapsed_s if self.elapsed_s > 0 else float("nan")
        return (
            f"trained {self.updates_run} updates ({self.stop_reason}) in "
            f"{self.elapsed_s:.1f} s, {rate:.0f} updates/s on {self.device} "
            f"[{self.engine}]; best validation loss {self.best_val_loss:.6g} "
            f"at update {self.best_update}; beta = {self.beta:.6g}"
            + (
                f"; resumed from a checkpoint at update {self.resumed_from}"
                if self.resumed_from
                else ""
            )
        )


def resolve_engine(engine: str, device: torch.device) -> str:
    """``auto``: the jitted ``numba`` engine on a CPU (~7x ``fast`` there, measured by
    ``benchmarks/bench_engines.py``), the torch ``fast`` engine on CUDA."""
    if engine == "auto":
        return "numba" if device.type == "cpu" else "fast"
    if engine == "numba" and device.type != "cpu":
        raise InputError(
            f"training.engine = 'numba' runs on the CPU only, not on {device}: "
            "use 'fast' (or 'auto') for CUDA"
        )
    return engine


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise InputError(f"device {device!r} is not a torch device: {exc}") from exc


def total_variance(x: np.ndarray) -> float:
    """``V = trace Cov(x)`` of the training split (population convention, float64)."""
    return float(np.asarray(x, dtype=np.float64).var(axis=0).sum())


def seed_streams(seed: int) -> tuple[int, int, int]:
    """Independent integer seeds for initialization, batch order and noise."""
    s = np.random.SeedSequence(int(seed)).generate_state(3, dtype=np.uint32)
    return int(s[0]), int(s[1]), int(s[2])


def check_inputs(x_train, x_val, temperature, sigma2, latents) -> None:
    """Reject bad shapes, empty splits, non-finite data and non-positive T with a clear error."""
    for name, x in (("training split", x_train), ("validation split", x_val)):
        if x.ndim != 2:
            raise InputError(f"{name}: expected a 2-D array (samples x features), got {x.shape}")
        if x.shape[0] == 0:
            raise InputError(f"{name}: is empty (0 samples)")
        if not np.all(np.isfinite(x)):
            raise InputError(
                f"{name}: holds {int(np.count_nonzero(~np.isfinite(x)))} "
                "non-finite values (NaN/inf)"
            )
    if x_val.shape[1] != x_train.shape[1]:
        raise InputError(
            f"validation split has {x_val.shape[1]} features, training split {x_train.shape[1]}"
        )
    if not (np.isfinite(temperature) and temperature > 0):
        raise InputError(f"temperature T = {temperature!r}: expected a finite number > 0")
    if not (np.isfinite(sigma2) and sigma2 > 0):
        raise InputError(f"model.sigma2 = {sigma2!r}: expected a finite number > 0")
    if int(latents) != latents or latents < 1:
        raise InputError(f"model.latents = {latents!r}: expected an integer >= 1")


def train_scan_point(
    x_train: np.ndarray,
    x_val: np.ndarray,
    temperature: float,
    seed: int = 0,
    latents: int = 32,
    sigma2: float = 1.0,
    config: TrainConfig | None = None,
    checkpoint: str | os.PathLike | None = None,
) -> TrainResult:
    """Train the linear VAE at temperature ``T`` to equilibrium (docs/science.md §5).

    Parameters
    ----------
    x_train, x_val : (n, d) arrays, standardized with the training statistics.
    temperature : the normalized temperature ``T`` (docs/science.md §2); ``beta = T V / sigma2``.
    seed : fixes initialization, batch order and noise.
    latents : ``K``.
    sigma2 : decoder variance of the Gaussian likelihood.
    checkpoint : file to checkpoint to every ``config.checkpoint_every`` updates and on
        SIGTERM/SIGUSR1 (then :class:`~.checkpoint.Interrupted` is raised); training
        resumes from it when it exists. Removed by the caller once the outputs are written.
    """
    config = config or TrainConfig()
    config.validate()
    check_inputs(x_train, x_val, temperature, sigma2, latents)
    device = resolve_device(config.device)
    dtype = getattr(torch, config.dtype)
    V = total_variance(x_train)
    beta = temperature_to_beta(temperature, V, sigma2)
    s_init, s_shuffle, s_noise = seed_streams(seed)

    model = LinearVAE(
        x_train.shape[1], latents, generator=torch.Generator().manual_seed(s_init), dtype=dtype
    ).to(device)
    xt = torch.as_tensor(np.asarray(x_train), dtype=dtype, device=device)
    xv = torch.as_tensor(np.asarray(x_val), dtype=dtype, device=device)
    g_shuffle = torch.Generator().manual_seed(s_shuffle)  # CPU: same batches on any device
    g_noise = torch.Generator(device=device).manual_seed(s_noise)
    engine = ENGINES[resolve_engine(config.engine, device)](
        model, beta, sigma2, config.learning_rate
    )

    n, bs, K = xt.shape[0], int(config.batch_size), int(latents)
    patience, every = config.patience_updates, int(config.eval_every)
    batches = _Batches(n, bs, g_shuffle, device)
    windowed = hasattr(engine, "run_window")
    if windowed:
        # a whole validation window of updates per call; same batches, own noise stream
        engine.seed_noise(s_noise)
        x_np = np.ascontiguousarray(xt.numpy())
        val_set = engine.prepare_validation(xv.numpy())
    else:
        # per-update batch losses of the current validation window, kept on the device so
        # the hot loop never waits for a device-to-host copy; checked at each validation
        losses = torch.empty(every, dtype=dtype, device=device)
    best_loss, best_update, best_state = math.inf, 0, None
    rows, update, elapsed_before = [], 0, 0.0
    stop_reason = "max_updates"
    identity = {
        "T": float(temperature),
        "seed": int(seed),
        "beta": beta,
        "latents": K,
        "sigma2": float(sigma2),
        "n_train": n,
        "n_val": int(xv.shape[0]),
        "d": int(xt.shape[1]),
        "engine": engine.name,
        **{
            k: v
            for k, v in asdict(config).items()
            if k not in ("progress", "checkpoint_every", "device")
        },
    }
    resumed = ckpt.load(checkpoint, identity) if checkpoint else None
    if resumed:
        model.load_state_dict(resumed["model"])
        engine.load_state_dict(resumed["engine"])
        g_shuffle.set_state(resumed["g_shuffle"])
        g_noise.set_state(resumed["g_noise"].to(g_noise.get_state().device))
        batches.load_state(resumed["batches"])
        best_loss, best_update = resumed["best_loss"], resumed["best_update"]
        best_state, rows = resumed["best_state"], resumed["rows"]
        update, elapsed_before = resumed["update"], resumed["elapsed_s"]

    def save_checkpoint():
        ckpt.save(
            checkpoint,
            {
                "identity": identity,
                "update": update,
                "model": model.state_dict(),
                "engine": engine.state_dict(),
                "g_shuffle": g_shuffle.get_state(),
                "g_noise": g_noise.get_state().cpu(),
                "batches": batches.state(),
                "best_loss": best_loss,
                "best_update": best_update,
                "best_state": best_state,
                "rows": rows,
                "elapsed_s": elapsed_before + time.perf_counter() - t0,
            },
        )

    t0 = time.perf_counter()
    bar = tqdm(
        total=config.max_updates,
        disable=_bar_disabled(config.progress),
        desc=f"T={temperature:.4g} seed={seed}",
        unit="upd",
        smoothing=0.1,
        initial=update,
    )
    flag = ckpt.SignalFlag() if checkpoint else contextlib.nullcontext()
    pause_at = ckpt.pause_update() if checkpoint else None  # tests only (ckpt.PAUSE_ENV)
    try:
        with flag:
            while update < config.max_updates:
                window = min(every, config.max_updates - update)
                if windowed:  # in calls of <= 4096 updates: the row indices stay small
                    chunks = [min(4096, window - k) for k in range(0, window, 4096)]
                    window_losses = np.concatenate(
                        [engine.run_window(x_np, *batches.window(k)) for k in chunks]
                    )
                else:
                    for i in range(window):
                        xb = xt[batches.next()]
                        eps = torch.randn(
                            xb.shape[0], K, generator=g_noise, device=device, dtype=dtype
                        )
                        losses[i] = engine.step(xb, eps)
                    window_losses = losses[:window].cpu().numpy()
                update += window
                bad = np.flatnonzero(~np.isfinite(window_losses))
                if bad.size:
                    raise TrainingError(
                        f"non-finite training loss ({window_losses[bad[0]]}) at "
                        f"T={temperature:g} (beta={beta:g}), seed={seed}, "
                        f"update {update - window + int(bad[0]) + 1}"
                    )
                if (
                    windowed
                ):  # the same expected loss, jitted (a torch pass costs more than a window)
                    val, dist, rate = engine.expected_loss(val_set)
                    engine.sync_model()
                else:
                    val, dist, rate = expected_loss(engine.sync_model(), xv, beta, sigma2)
                if not math.isfinite(val):
                    raise TrainingError(
                        f"non-finite validation loss at T={temperature:g}, seed={seed}, "
                        f"update {update}"
                    )
                rows.append(
                    (
                        update,
                        float(window_losses.mean()),
                        val,
                        dist,
                        rate,
                        elapsed_before + time.perf_counter() - t0,
                    )
                )
                if val < best_loss:
                    best_loss, best_update = val, update
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                bar.update(update - bar.n)
                bar.set_postfix(best_val=f"{best_loss:.5g}", refresh=False)
                if update < config.max_updates and update - best_update >= patience:
                    stop_reason = "early_stopping"
                    break
                due = (
                    update // config.checkpoint_every > (update - window) // config.checkpoint_every
                )
                if pause_at is not None and update - window < pause_at <= update:
                    ckpt.pause(checkpoint, update, flag)  # tests only: wait for a signal
                if checkpoint and update < config.max_updates and (due or flag.raised):
                    save_checkpoint()
                    if flag.raised:
                        raise ckpt.Interrupted(
                            f"{flag.raised} at update {update} (T={temperature:g}, seed={seed}): "
                            f"checkpoint written to {checkpoint}; rerun the job to resume"
                        )
    finally:
        bar.close()
    model.load_state_dict(best_state)
    return TrainResult(
        model=model.cpu(),
        log=pd.DataFrame(rows, columns=LOG_COLUMNS),
        updates_run=update,
        best_update=best_update,
        best_val_loss=best_loss,
        stop_reason=stop_reason,
        beta=beta,
        total_variance=V,
        elapsed_s=elapsed_before + time.perf_counter() - t0,
        device=str(device),
        engine=engine.name,
        resumed_from=resumed["update"] if resumed else 0,
    )


class _Batches:
    """The batches, in order: every epoch is a fresh ``torch.randperm`` (CPU generator,
    moved to ``device`` once per epoch) cut into consecutive batches of ``bs``, the last
    one possibly short. :meth:`next` gives one batch's row indices (on the device),
    :meth:`window` the next ``k`` batches at once (CPU), drawn from the same stream."""

    def __init__(self, n: int, bs: int, g_shuffle: torch.Generator, device):
        self.n, self.bs, self.g, self.device = n, bs, g_shuffle, device
        self.pos = n  # the first call draws the first epoch

    def _epoch(self) -> None:
        self.perm = torch.randperm(self.n, generator=self.g).to(self.device)
        self.pos = 0

    def next(self) -> torch.Tensor:
        if self.pos >= self.n:
            self._epoch()
        start, self.pos = self.pos, min(self.pos + self.bs, self.n)
        return self.perm[start : self.pos]

    def state(self) -> dict:
        """Where the batch stream stands (for a checkpoint): the epoch's order and position."""
        return {"pos": self.pos, "perm": None if self.pos >= self.n else self.perm.cpu()}

    def load_state(self, state: dict) -> None:
        self.pos = int(state["pos"])
        if state["perm"] is not None:
            self.perm = state["perm"].to(self.device)

    def window(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Row indices of the next ``k`` batches, concatenated, and the batch sizes."""
        rows, sizes = [], []
        while k > 0:
            if self.pos >= self.n:
                self._epoch()
            m = min(k, -(-(self.n - self.pos) // self.bs))  # batches left in this epoch
            end = min(self.pos + m * self.bs, self.n)
            rows.append(self.perm[self.pos : end].cpu().numpy())
            full = np.full(m, self.bs, dtype=np.int64)
            full[-1] = end - self.pos - (m - 1) * self.bs
            sizes.append(full)
            self.pos, k = end, k - m
        return np.concatenate(rows), np.concatenate(sizes)


def _bar_disabled(progress: bool | None):
    # tqdm's disable=None means "off when not a terminal": quiet in logs, shown on a tty.
    return None if progress is None else not progress
