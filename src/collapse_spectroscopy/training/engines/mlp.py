"""The ``mlp`` engine: autograd and Adam for a model of any family (docs/science.md §5, §9).

One update: the next batch of :class:`.batches.BatchStream` (data on the device, rows
gathered by index: no DataLoader), noise ``torch.randn`` from one generator seeded by the
noise seed (the torch engines' noise), :func:`collapse_spectroscopy.models.linear.sampled_loss`,
``backward`` and ``torch.optim.Adam``. It trains any family: ``auto``'s engine for
``model.kind: mlp`` on CUDA, and on a CPU the reference that ``mlp_fast`` follows to
round-off (:mod:`.mlp_fast`); a linear model too (the estimator's control), with the same
batches and noise as ``autograd``.

**Validation: a fixed-draw estimate.** A nonlinear decoder has no closed form for
``E_eps D``. The validation loss is

    L_val = mean_x [ 1/S sum_{s=1..S} ||x - xhat(mu(x) + s(x) eps_{x,s})||^2 / (2 sigma2)
                     + beta R(x) ]

with the rate ``R`` exact (its KL is closed form) and ``S`` =
:data:`VALIDATION_DRAWS` draws per validation sample. The draws ``eps_{x,s}`` are
regenerated at every pass from one fixed seed (derived from the noise seed), so every
pass sees the *same* draws: two weight settings are compared on common random numbers and
early stopping compares weights, not noise. The estimate is unbiased for the noise
average; its noise (docs/science.md §9) is measured in ``tests/training/test_mlp.py``.

**Noise-free mode** (``TrainingProblem.noise_free``; the autoencoder baseline,
:mod:`collapse_spectroscopy.training.autoencoder`): ``eps = 0`` in every update and in
validation, which is then one exact pass, ``||x - xhat(mu(x))||^2 / (2 sigma2)`` plus
``beta`` times the rate (the baseline's ``beta`` is 0).
"""

from __future__ import annotations

import numpy as np
import torch

from collapse_spectroscopy.models.families import by_rows
from collapse_spectroscopy.models.linear import kl_per_latent
from collapse_spectroscopy.training.engines.base import TrainingProblem
from collapse_spectroscopy.training.engines.layout import ADAM_BETAS, ADAM_EPS
from collapse_spectroscopy.training.engines.torch_engines import AutogradEngine

# S, draws per validation sample. The draws are common to every pass, so what early
# stopping sees is the *difference* between passes, whose draw noise is far below the
# level's; S = 4 halves the level's standard error at 4x a forward pass of the split.
VALIDATION_DRAWS = 4
VALIDATION_CHUNK = 16384  # validation samples per forward pass (bounds the memory)
# On a CPU a chunk goes through the networks this many rows at a time, so that a layer's
# activations stay in cache: measured on WorldClim's 149,731 validation samples (64-64
# GELU, float32, one thread), a pass took 0.27 s instead of 0.32 s (0.28 at 2,048 rows, 0.30
# at 1,024). Only the network calls are split: the draws and every sum are the chunk's, and
# no layer mixes rows, so the loss is bitwise the same (tests/training/test_mlp.py).
VALIDATION_ROWS = 4096
# the most bytes a single-point engine keeps its validation draws in: regenerating them
# is ~17 % of a pass (WorldClim: 149,731 x 32 x 4 float32 draws, 77 MB, every 1,000
# updates); a larger split regenerates them at every pass instead
DRAW_CACHE_BYTES = 256 * 2**20
_VALIDATION_STREAM = 0x5EED  # the validation draws' seed: noise_seed mixed with this


def validation_seed(noise_seed: int) -> int:
    """The seed of the fixed validation draws: independent of the training noise."""
    seq = np.random.SeedSequence([int(noise_seed), _VALIDATION_STREAM])
    return int(seq.generate_state(1, dtype=np.uint32)[0])


class DrawCache:
    """The fixed validation draws of one engine, kept after the first pass when they fit
    in :data:`DRAW_CACHE_BYTES` (a later pass then reads the very tensors the generator
    gave, so every level is bitwise what regenerating them gives); empty otherwise."""

    def __init__(self, limit_bytes: int = DRAW_CACHE_BYTES):
        self.limit_bytes = limit_bytes
        self.draws: list[torch.Tensor] = []

    def fits(self, x, latents: int, draws: int) -> bool:
        return x.shape[0] * latents * draws * x.element_size() <= self.limit_bytes


@torch.no_grad()
def fixed_draw_loss(
    model,
    x,
    beta,
    sigma2,
    seed,
    draws=VALIDATION_DRAWS,
    chunk=VALIDATION_CHUNK,
    *,
    noise=True,
    cache: DrawCache | None = None,
):
    """``(L, D, R)``: the loss on ``x`` averaged over ``draws`` noise draws per sample,
    the draws generated from ``seed`` (the same seed gives the same draws), the rate exact;
    means over ``x`` as Python floats, accumulated in float64. ``noise=False``: one pass
    decoding ``mu`` (the noise-free mode), exact. ``cache``: where the draws are kept
    between passes of the same ``x`` and ``seed`` (:class:`DrawCache`)."""
    g = torch.Generator(device=x.device).manual_seed(int(seed))
    n, K = x.shape[0], model.latents
    draws = draws if noise else 1
    kept = cache.draws if cache is not None and noise and cache.fits(x, K, draws) else None
    fresh = kept is not None and not kept
    d_sum = r_sum = 0.0
    for c, start in enumerate(range(0, n, chunk)):
        xc = x[start : start + chunk]
        mu, logs2 = _by_rows(model.encode, xc)
        s = torch.exp(0.5 * logs2)
        for i in range(draws):
            if kept is not None and not fresh:
                eps = kept[c * draws + i]
            elif noise:
                eps = torch.randn(xc.shape[0], K, generator=g, device=x.device, dtype=x.dtype)
                if fresh:
                    kept.append(eps)
            else:
                eps = torch.zeros_like(mu)
            xhat = _by_rows(model.decode, mu + s * eps)
            d_sum += (xc - xhat).square().sum(dim=1).double().sum().item()
        r_sum += kl_per_latent(mu, logs2).sum(dim=1).double().sum().item()
    distortion = d_sum / (draws * n) / (2.0 * sigma2)
    rate = r_sum / n
    return distortion + beta * rate, distortion, rate


def _by_rows(f, x):
    """``f(x)``, on a CPU :data:`VALIDATION_ROWS` rows at a time (:func:`.by_rows`);
    elsewhere in one call, which keeps a GPU's kernels full."""
    if x.device.type != "cpu":
        return f(x)
    return by_rows(f, x, VALIDATION_ROWS, torch.cat)


class MLPEngine(AutogradEngine):
    """The engine protocol (:class:`.base.Engine`) by autograd, for any family: the
    ``autograd`` engine's update (same batches, noise and Adam formula) with a fused Adam
    and the fixed-draw validation estimate above."""

    name = "mlp"
    trains_noise_free = True

    def __init__(self, problem: TrainingProblem):
        super().__init__(problem)
        self.val_seed = validation_seed(problem.noise_seed)
        self.val_draws = DrawCache()

    def _optimizer(self) -> torch.optim.Adam:
        return torch.optim.Adam(
            self.model.parameters(),
            lr=self.lr,
            betas=ADAM_BETAS,
            eps=ADAM_EPS,
            fused=True,  # one kernel for all parameters, not one per tensor (CPU: ~5 % faster)
        )

    def _load_rule_state(self, state: dict) -> None:
        if "model" in state:
            return super()._load_rule_state(state)
        # mlp_fast's flat state (its checkpoint resumed here, e.g. by auto on CUDA):
        # the same parameters and Adam moments, in model.parameters() order
        start = 0
        with torch.no_grad():
            for param in self.model.parameters():

                def take(key, start=start, param=param):
                    flat = state[key][start : start + param.numel()]
                    return torch.empty_like(param).copy_(flat.view_as(param))

                param.copy_(take("p"))
                step = torch.as_tensor(state["step"], dtype=torch.float32)
                self.opt.state[param] = {
                    "step": step.to(param.device, copy=True),  # fused Adam: on the device
                    "exp_avg": take("m"),
                    "exp_avg_sq": take("v"),
                }
                start += param.numel()
        return None

    def validation_loss(self) -> tuple[float, float, float]:
        return engine_validation(self)


def engine_validation(engine) -> tuple[float, float, float]:
    """A single-point MLP engine's validation loss (``mlp``, ``mlp_fast``): the fixed-draw
    estimate at the weights it keeps (``sync_model``: the averaged ones when
    ``training.average`` is on), with its own validation draws, kept between passes."""
    return fixed_draw_loss(
        engine.sync_model(),
        engine.x_val,
        engine.beta,
        engine.sigma2,
        engine.val_seed,
        noise=not engine.noise_free,
        cache=engine.val_draws,
    )
