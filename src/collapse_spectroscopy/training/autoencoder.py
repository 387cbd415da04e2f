"""The deterministic autoencoder baseline (docs/science.md §9, "Autoencoder baseline").

How much of an MLP VAE's concentration of the utility into few latents is what any
k-dimensional nonlinear code gives? The baseline is a deterministic autoencoder of the
run's architecture with a bottleneck of ``k`` latents, trained like the VAE::

    encoder   d -> model.hidden -> k            (the MLP VAE's mu head)
    decoder   k -> model.hidden reversed -> d   (the MLP VAE's decoder)
    loss      ||x - xhat(mu(x))||^2 / (2 sigma2), batch mean: the VAE's distortion term
              with no noise and no KL

**Why the VAE's own model and engines in a noise-free mode, and not an autoencoder class
with a trainer of its own.** The MLP VAE trained with ``beta = 0`` and ``eps = 0`` *is*
that autoencoder: the decoder sees ``mu(x)``, the loss is the reconstruction error, and
the log-variance head gets an exactly zero gradient (``dlogs2 = dz eps s / 2 + beta (s^2 -
1) / (2 n_b)``), so its rows keep their zero initialization and it never acts. Its engines
(``mlp_fast`` on a CPU, ``mlp`` on CUDA, :attr:`.engines.base.TrainingProblem.noise_free`)
then train it on the run's batches with the run's Adam, initialization and float32, through
the unchanged trainer (:func:`.protocol.train`): validation every ``eval_every`` updates on
the whole validation split (one exact pass: no noise to average), early stopping with the
run's patience, the best weights kept, checkpoints, signals and a bit-identical resume.
Nothing of the protocol is written twice, so the baseline cannot drift from the scan's
training. The price is a K-wide log-variance head computed and discarded at each update
(one extra output block of the encoder's last layer).

The loss keeps the VAE's ``1 / (2 sigma2)``: Adam's steps do not depend on a constant
factor of the loss (up to its ``eps``, 1e-8), and the training log's losses are then the
VAE's distortion term in the run's units. The log's rate column is the KL the VAE would
charge for ``mu`` at unit variance, ``1/2 E||mu||^2``, which ``beta = 0`` does not charge.
"""

from __future__ import annotations

import os
from dataclasses import replace

import torch

from collapse_spectroscopy.analysis.temperature import total_variance
from collapse_spectroscopy.config import settings
from collapse_spectroscopy.errors import InputError
from collapse_spectroscopy.models.families import Architecture
from collapse_spectroscopy.training import protocol
from collapse_spectroscopy.training.engines import make_engine, resolve_engine
from collapse_spectroscopy.training.scan_point import (
    TrainConfig,
    TrainResult,
    check_averaging,
    check_inputs,
    resolve_device,
    scan_point_identity,
    seed_streams,
    seeded_model,
    training_problem,
)

_MODEL = settings.section_defaults("model")  # the one home of these defaults
KIND = "mlp"  # the baseline has the MLP VAE's architecture (model.kind mlp only)
BATCHED = "batched"


def autoencoder_engine(name: str, device: torch.device) -> str:
    """The engine that trains the baseline when the run's ``training.engine`` is ``name``:
    ``mlp`` or ``mlp_fast`` as named; ``auto`` and ``batched`` as ``auto`` picks for an MLP
    (``mlp_fast`` on a CPU, ``mlp`` elsewhere): the batched engine follows ``mlp_fast``
    point for point, and the baseline's ``k`` train one after another, each its own
    architecture. InputError for an engine of the linear VAE only."""
    return resolve_engine("auto" if name == BATCHED else name, device, KIND)


def linear_engine(name: str, device: torch.device) -> str:
    """The engine of a *linear* autoencoder (``kind="linear"`` of :func:`train_autoencoder`):
    ``mlp``, the one engine with a noise-free mode that trains the linear model."""
    return resolve_engine("mlp", device, "linear")


def train_autoencoder(
    x_train,
    x_val,
    latents: int,
    seed: int = 0,
    config: TrainConfig | None = None,
    checkpoint: str | os.PathLike | None = None,
    *,
    hidden=tuple(_MODEL["hidden"]),
    activation: str = _MODEL["activation"],
    sigma2: float = _MODEL["sigma2"],
    kind: str = KIND,
) -> TrainResult:
    """Train the autoencoder with a bottleneck of ``latents`` by the protocol of ``config``
    (the module docstring); its result's ``model`` is an ``MLPVAE`` holding the best
    weights, whose ``encode(x)[0]`` is the code and ``decode`` the decoder.

    ``seed`` fixes the initialization and the batch order as a scan seed does
    (:func:`.scan_point.seed_streams`); ``checkpoint``: as for
    :func:`.scan_point.train_scan_point` (resumed from when it exists).

    ``kind="linear"`` trains the *linear* autoencoder instead (the linear VAE's encoder
    and decoder, by the ``mlp`` engine), whose optimum is PCA's projection (Baldi and
    Hornik 1989): the tests' oracle of this training, not a run's baseline.
    """
    config = config or TrainConfig()
    config.validate()
    arch = Architecture(kind, tuple(hidden), activation)
    arch.check()
    check_inputs(x_train, x_val, 1.0, sigma2, latents)  # no temperature: 1.0 passes its check
    device = resolve_device(config.device)
    engine_name = (autoencoder_engine if kind == KIND else linear_engine)(config.engine, device)
    s_init, s_shuffle, s_noise = seed_streams(seed)
    d = x_train.shape[1]
    model = seeded_model(arch, d, latents, s_init, config).to(device)
    problem = training_problem(model, x_train, x_val, 0.0, sigma2, config, s_shuffle, s_noise)
    engine = make_engine(engine_name, replace(problem, noise_free=True))
    if not getattr(engine, "trains_noise_free", False):  # autoencoder_engine picks only those
        raise InputError(f"training.engine {engine.name!r} has no noise-free mode")
    check_averaging(engine, config)
    identity = {
        "baseline": "autoencoder",  # never a scan point's checkpoint (T = 0 and beta = 0)
        **scan_point_identity(
            0.0, seed, 0.0, latents, sigma2, x_train, x_val, engine.name, config, model
        ),
    }
    run = protocol.train(
        engine,
        config,
        label=f"autoencoder k={latents}, seed={seed}",
        identity=identity,
        checkpoint=checkpoint,
    )
    return TrainResult.from_run(
        model,
        run,
        beta=0.0,
        total_variance=total_variance(x_train),
        device=device,
        engine=engine.name,
    )
