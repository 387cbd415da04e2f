"""Equilibrium training of one scan point (docs/science.md §5).

Minibatch Adam on ``L = D + beta R`` with ``beta = T V / sigma2``; the whole validation split
is evaluated every ``eval_every`` updates, training stops after ``patience`` updates
without improvement (or at ``max_updates``), and the best-validation weights are kept
(:mod:`.protocol`, which drives any engine of :mod:`.engines`).

Choices the paper leaves open, made here and written down:

- **Batches**: an epoch is a seeded random permutation of the training split cut into
  consecutive batches; the last batch of an epoch may be short
  (:class:`.engines.batches.BatchStream`).
- **Validation loss**: the beta-VAE loss averaged *exactly* over the reparameterization
  noise (:func:`collapse_spectroscopy.models.linear.expected_loss`), so early stopping is not
  driven by Monte-Carlo noise of the validation pass; for the ``mlp`` engine, which has no
  closed form, an average over fixed draws, the same at every pass
  (:func:`.engines.mlp.fixed_draw_loss`).
- **Seeds**: one integer seeds three independent streams (initialization, batch order,
  reparameterization noise) through :class:`numpy.random.SeedSequence`; on CPU the same
  seed gives bit-identical weights.
- **Engine**: ``auto`` by default: for ``model.kind: linear`` ``numba`` on a CPU, ``fast``
  on CUDA; for ``mlp`` ``mlp_fast`` on a CPU, ``mlp`` on CUDA (:func:`.engines.resolve_engine`).
  The torch engines draw the same noise; ``numba`` noise of the same distribution from its
  own generator, seeded by the same noise seed.
- **Patience**: an int >= 1 is a count of updates; a float in (0, 1) a fraction of
  ``max_updates`` (the paper: 0.1 of 500,000 = 50,000; :func:`.equilibration.patience_updates`).
- **Averaged weights** (``average``, off by default: the paper's best iterate): ``ema`` or
  ``polyak`` make validation, early stopping and the kept weights those of a running
  average of the iterates over ``average_horizon`` updates (a count, or a fraction of
  ``max_updates`` as for patience; :mod:`.engines.averaging`, docs/science.md §5.4).

The defaults of :class:`TrainConfig` are the configuration schema's (:mod:`.settings`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch

from collapse_spectroscopy.analysis.equilibration import patience_updates
from collapse_spectroscopy.analysis.observables import latent_observables
from collapse_spectroscopy.analysis.temperature import temperature_to_beta, total_variance
from collapse_spectroscopy.config import settings
from collapse_spectroscopy.errors import InputError
from collapse_spectroscopy.models.families import Architecture, model_spec
from collapse_spectroscopy.models.linear import LinearVAE
from collapse_spectroscopy.store.weights import state_digest
from collapse_spectroscopy.training import protocol
from collapse_spectroscopy.training.engines import (
    ENGINES,
    TrainingProblem,
    make_engine,
    resolve_engine,
)
from collapse_spectroscopy.training.engines.averaging import AVERAGES
from collapse_spectroscopy.training.protocol import LOG_COLUMNS
from collapse_spectroscopy.training.start import load_start

_SCHEMA = settings.section_defaults("training")  # the one home of these defaults
_MODEL = settings.section_defaults("model")


@dataclass
class TrainConfig:
    """Hyperparameters of equilibrium training (docs/science.md §5).

    Defaults: the configuration schema's ``training`` section (the paper's protocol);
    ``device``, ``dtype`` and ``progress`` are not run settings (a run sets ``training.gpu``,
    which the command line turns into ``device``).
    """

    learning_rate: float = _SCHEMA["learning_rate"]
    batch_size: int = _SCHEMA["batch_size"]
    max_updates: int = _SCHEMA["max_updates"]
    patience: float = _SCHEMA["patience"]
    eval_every: int = _SCHEMA["eval_every"]
    device: str = "auto"  # CUDA if present, else the CPU
    dtype: str = "float32"
    engine: str = _SCHEMA["engine"]
    checkpoint_every: int = _SCHEMA["checkpoint_every"]  # updates between checkpoints
    progress: bool | None = None  # None: a progress bar only on a terminal
    average: str = _SCHEMA["average"]  # none | ema | polyak (engines.averaging)
    average_horizon: float = _SCHEMA["average_horizon"]  # updates, or a fraction of max_updates

    def validate(self) -> None:
        def bad(key, expected):
            raise InputError(f"training.{key} = {getattr(self, key)!r}: expected {expected}")

        def count(key, what="an integer >= 1"):
            value = getattr(self, key)
            if int(value) != value or value < 1:
                bad(key, what)

        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            bad("learning_rate", "a finite number > 0")
        count("batch_size")
        count("max_updates")
        count("eval_every")
        if not (self.patience > 0):
            bad("patience", "an update count >= 1 or a fraction of max_updates in (0, 1)")
        if self.patience >= 1 and int(self.patience) != self.patience:
            bad("patience", "an integer count when >= 1")
        if self.engine != "auto" and self.engine not in ENGINES:
            bad("engine", f"'auto' or one of {', '.join(ENGINES)}")
        count("checkpoint_every", "an integer >= 1 (updates between checkpoints)")
        if self.dtype not in ("float32", "float64"):
            bad("dtype", "'float32' or 'float64'")
        if self.average not in AVERAGES:
            bad("average", " or ".join(repr(a) for a in AVERAGES))
        horizon = self.average_horizon
        if not (horizon > 0 and math.isfinite(horizon)) or (
            horizon >= 1 and int(horizon) != horizon
        ):
            bad("average_horizon", "an update count >= 1 or a fraction of max_updates in (0, 1)")

    @property
    def patience_updates(self) -> int:
        """Patience as a number of updates."""
        return patience_updates(self.patience, self.max_updates)

    @property
    def average_updates(self) -> int:
        """The averaging horizon as a number of updates (a fraction of ``max_updates``
        below 1, as for the patience)."""
        return patience_updates(self.average_horizon, self.max_updates)


@dataclass
class TrainResult:
    """The outcome of training one scan point."""

    model: LinearVAE  # best-validation weights, on the CPU (an MLPVAE for model.kind mlp)
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

    @classmethod
    def from_run(
        cls, model, run, *, beta: float, total_variance: float, device, engine: str
    ) -> TrainResult:
        """The result of a finished :class:`.protocol.Run`: ``model`` loaded with its best
        weights (``run.best_state``) and moved to the CPU, and its log and outcome."""
        model.load_state_dict(run.best_state)
        return cls(
            model=model.cpu(),
            log=pd.DataFrame(run.rows, columns=LOG_COLUMNS),
            updates_run=run.update,
            best_update=run.best_update,
            best_val_loss=run.best_loss,
            stop_reason=run.stop_reason,
            beta=beta,
            total_variance=total_variance,
            elapsed_s=run.elapsed(),
            device=str(device),
            engine=engine,
            resumed_from=run.resumed_from,
        )

    def summary_line(self) -> str:
        """One line for a job's log: what was run and how it ended."""
        rate = self.updates_run / self.elapsed_s if self.elapsed_s > 0 else float("nan")
        resumed = self.resumed_from
        return (
            f"trained {self.updates_run} updates ({self.stop_reason}) in "
            f"{self.elapsed_s:.1f} s, {rate:.0f} updates/s on {self.device} "
            f"[{self.engine}]; best validation loss {self.best_val_loss:.6g} "
            f"at update {self.best_update}; beta = {self.beta:.6g}"
            + (f"; resumed from a checkpoint at update {resumed}" if resumed else "")
        )


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(device)
    except RuntimeError as exc:
        raise InputError(f"device {device!r} is not a torch device: {exc}") from exc


def seeded_model(arch: Architecture, d: int, latents: int, s_init: int, config):
    """A fresh model of architecture ``arch`` initialized from the seed stream ``s_init``
    (a scan point's, or an autoencoder baseline's), in ``config.dtype`` on the CPU."""
    generator = torch.Generator().manual_seed(s_init)
    dtype = getattr(torch, config.dtype)
    return arch.build(d, latents, generator=generator, dtype=dtype)


def seed_streams(seed: int) -> tuple[int, int, int]:
    """Independent integer seeds for initialization, batch order and noise."""
    s = np.random.SeedSequence(int(seed)).generate_state(3, dtype=np.uint32)
    return int(s[0]), int(s[1]), int(s[2])


def training_problem(
    model, x_train, x_val, beta: float, sigma2: float, config: TrainConfig, shuffle_seed, noise_seed
) -> TrainingProblem:
    """What an engine trains for one scan point: the model, the splits, beta and the
    optimizer settings and averaging of ``config``, with the point's shuffle and noise
    seeds (:func:`seed_streams`)."""
    return TrainingProblem(
        model=model,
        x_train=x_train,
        x_val=x_val,
        beta=beta,
        sigma2=sigma2,
        learning_rate=config.learning_rate,
        batch_size=config.batch_size,
        shuffle_seed=shuffle_seed,
        noise_seed=noise_seed,
        average=config.average,
        average_horizon=config.average_updates,
    )


def point_identity(
    temperature, seed, beta, latents, sigma2, x_train, x_val, engine: str, config, unused
) -> dict:
    """What a scan point's checkpoint must match to be resumed: the point, the data's
    shape, the engine and every training setting of ``config`` but those in ``unused``."""
    return {
        "T": float(temperature),
        "seed": int(seed),
        "beta": beta,
        "latents": int(latents),
        "sigma2": float(sigma2),
        "n_train": int(x_train.shape[0]),
        "n_val": int(x_val.shape[0]),
        "d": int(x_train.shape[1]),
        "engine": engine,
        **{k: v for k, v in asdict(config).items() if k not in unused},
    }


def point_label(temperature: float, beta: float, seed: int) -> str:
    """How errors and progress lines name a scan point."""
    return f"T={temperature:g} (beta={beta:g}), seed={seed}"


#: How many validation samples a progress line's count of active latents looks at: enough
#: to tell rho = 0.05 from 0 (its sampling error ~ 1/sqrt(n) ~ 0.02), cheap every 10 s.
PROGRESS_SAMPLES = 2048


def active_latents(x_val: np.ndarray, rho_min: float | None = None) -> Callable:
    """``describe(model)`` for the trainer's progress lines: how many latents have a signal
    fraction ``rho = E mu^2 / (E mu^2 + E s2)`` above ``rho_min`` (default
    ``spectra.rho_min``, docs/science.md §3) on the first validation samples."""
    if rho_min is None:
        rho_min = settings.section_defaults("spectra")["rho_min"]
    x = x_val[:PROGRESS_SAMPLES]

    def describe(model) -> str:
        w = next(model.parameters())
        with torch.no_grad():
            mu, logs2 = model.encode(torch.as_tensor(x, dtype=w.dtype, device=w.device))
            moments = ((mu**2).mean(0), torch.exp(logs2).mean(0), logs2.mean(0))
        m, v, l = (a.double().cpu().numpy() for a in moments)
        rho = latent_observables(m, v, l)["signal_fraction"]
        return f"{int(np.count_nonzero(rho > rho_min))} of {rho.size} latents active"

    return describe


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
    latents: int = _MODEL["latents"],
    sigma2: float = _MODEL["sigma2"],
    config: TrainConfig | None = None,
    checkpoint: str | os.PathLike | None = None,
    *,
    arch: Architecture | None = None,
    start: dict | None = None,
) -> TrainResult:
    """Train a VAE at temperature ``T`` to equilibrium (docs/science.md §5).

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
    arch : the model (:class:`.families.Architecture`: the family and its keys,
        docs/science.md §9); default the linear VAE.
    start : a ``state_dict`` to start from instead of the seed's random initialization
        (a continuation start, docs/science.md §5.8: the previous scan point's weights);
        batches and noise are the seed's all the same. Its digest joins the checkpoint's
        identity, so a checkpoint of a point started from other weights is not resumed.
    """
    config = config or TrainConfig()
    config.validate()
    arch = arch or Architecture()
    arch.check()
    check_inputs(x_train, x_val, temperature, sigma2, latents)
    device = resolve_device(config.device)
    engine_name = resolve_engine(config.engine, device, arch.kind)
    V = total_variance(x_train)
    beta = temperature_to_beta(temperature, V, sigma2)
    s_init, s_shuffle, s_noise = seed_streams(seed)
    model = seeded_model(arch, x_train.shape[1], latents, s_init, config)
    if start is not None:
        load_start(model, start)
    model = model.to(device)
    problem = training_problem(model, x_train, x_val, beta, sigma2, config, s_shuffle, s_noise)
    engine = make_engine(engine_name, problem)
    check_averaging(engine, config)
    identity = scan_point_identity(
        temperature, seed, beta, latents, sigma2, x_train, x_val, engine.name, config, model
    )
    if start is not None:  # absent for a random start: older checkpoints still resume
        identity["start"] = state_digest(start)
    run = protocol.train(
        engine,
        config,
        label=point_label(temperature, beta, seed),
        identity=identity,
        checkpoint=checkpoint,
        describe=active_latents(x_val),
    )
    return TrainResult.from_run(
        model, run, beta=beta, total_variance=V, device=device, engine=engine.name
    )


def check_averaging(engine, config: TrainConfig) -> None:
    """InputError when ``config`` asks for averaged weights that ``engine`` does not keep."""
    if config.average != "none" and not getattr(engine, "averages", False):
        raise InputError(
            f"training.average = {config.average!r} is not implemented by the "
            f"{engine.name!r} engine: use training.average 'none' or another engine"
        )


def scan_point_identity(
    temperature, seed, beta, latents, sigma2, x_train, x_val, engine: str, config, model
) -> dict:
    """:func:`point_identity` of a scan point trained alone, with the model's family."""
    # averaging off: the identity of before it existed, so that older checkpoints still resume
    unused = ("progress", "checkpoint_every", "device")
    if config.average == "none":
        unused += ("average", "average_horizon")
    return {
        **point_identity(
            temperature, seed, beta, latents, sigma2, x_train, x_val, engine, config, unused
        ),
        **model_spec(model),  # nothing for a linear model: its checkpoints stay valid
    }
