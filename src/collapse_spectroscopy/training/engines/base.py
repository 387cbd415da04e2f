"""The engine protocol: what the trainer asks of every training engine (docs/science.md §5).

An engine owns one scan point's optimization: the weights, the Adam state, the order of
the minibatches and the reparameterization noise, each drawn from a seeded stream it
owns. The trainer (:mod:`collapse_spectroscopy.training.protocol`) owns the protocol around it
(validation every window, early stopping, checkpoints, signals) and never asks which
engine it has: it only calls the five members of :class:`Engine`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from collapse_spectroscopy.models.linear import LinearVAE


@dataclass(frozen=True)
class TrainingProblem:
    """One scan point's training problem, as an engine receives it.

    ``model`` is the initialized model (on the device and in the dtype to train in);
    ``x_train`` and ``x_val`` the standardized splits (numpy, any float dtype); the loss is
    ``L = D + beta R`` with decoder variance ``sigma2`` (docs/science.md §1), minimized by
    Adam at ``learning_rate`` on batches of ``batch_size``. ``shuffle_seed`` seeds the
    batch order (:class:`.batches.BatchStream`), ``noise_seed`` the reparameterization noise.
    ``average`` (``none``, ``ema`` or ``polyak``) and ``average_horizon`` (updates): the
    running average of the weights that validation and ``sync_model`` give instead of the
    raw iterate (:mod:`.averaging`); an engine that implements it says so with a class
    attribute ``averages = True``, and training refuses the others anything but none.
    ``noise_free`` (the autoencoder baseline, docs/science.md §9): the
    reparameterization noise is zero in training and validation, so the decoder sees
    ``mu(x)``; with ``beta = 0`` the loss is then the reconstruction error alone. An engine
    that implements it says so with a class attribute ``trains_noise_free = True``
    (:mod:`.mlp`, :mod:`.mlp_fast`); the baseline refuses the others.
    """

    model: LinearVAE  # or any family of families.FAMILIES (e.g. MLPVAE)
    x_train: np.ndarray
    x_val: np.ndarray
    beta: float
    sigma2: float
    learning_rate: float
    batch_size: int
    shuffle_seed: int
    noise_seed: int
    average: str = "none"
    average_horizon: int = 1
    noise_free: bool = False


@runtime_checkable
class Engine(Protocol):
    """A training engine, constructed as ``Engine(problem: TrainingProblem)``."""

    name: str  # its key in the registry (collapse_spectroscopy.training.engines.ENGINES)

    def run_window(self, n_updates: int) -> np.ndarray:
        """Run ``n_updates`` Adam updates on the next batches with fresh noise; return
        the batch loss of each update. A non-finite loss is returned, not raised: the
        trainer names the update."""
        ...

    def validation_loss(self) -> tuple[float, float, float]:
        """``(L, D, R)`` on the validation split at the current weights, averaged over the
        noise: exactly where a closed form exists (the linear VAE,
        :func:`collapse_spectroscopy.models.linear.expected_loss`), else over draws fixed once, the
        same at every pass (:mod:`.mlp`; docs/science.md §9)."""
        ...

    def sync_model(self) -> LinearVAE:
        """The model holding the current weights (copied into it if the engine keeps
        its own copy)."""
        ...

    def state_dict(self) -> dict:
        """Everything needed to continue bit for bit: weights, Adam state, and the
        batch-order and noise streams (torch tensors and Python scalars only)."""
        ...

    def load_state_dict(self, state: dict) -> None:
        """Continue from ``state_dict()``'s result (keys it did not write are ignored)."""
        ...
