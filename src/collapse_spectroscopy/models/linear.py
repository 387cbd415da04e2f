"""The linear Gaussian VAE and its beta-VAE loss (docs/science.md §1).

::

    encoder mean      mu(x)    = A x + a        (K x d, K)
    encoder log-var   logs2(x) = B x + b        (affine in x, as in the paper)
    decoder           xhat(z)  = W z + c        (d x K, d)
    sample            z = mu + exp(logs2 / 2) * eps,   eps ~ N(0, I)

    D = ||x - xhat||^2 / (2 sigma2)              distortion per sample (nats, up to a constant)
    R = sum_j 1/2 (mu_j^2 + s2_j - 1 - logs2_j)  rate per sample (nats)
    L = D + beta R                               averaged over the batch

``beta`` comes from the temperature through
:func:`collapse_spectroscopy.analysis.temperature.temperature_to_beta`.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

DEFAULT_LATENTS = 32


# the affine maps of the observables (docs/science.md §3) and the layers that hold them
PARAM_NAMES = {
    "A": "enc_mean.weight",
    "a": "enc_mean.bias",
    "B": "enc_logvar.weight",
    "b": "enc_logvar.bias",
    "W": "dec.weight",
    "c": "dec.bias",
}


class LinearVAE(nn.Module):
    """Linear Gaussian VAE with ``d`` features and ``K`` latents (paper: K = 32 > d = 19)."""

    def __init__(self, d: int, latents: int = DEFAULT_LATENTS, *, generator=None, dtype=None):
        super().__init__()
        if d < 1 or latents < 1:
            raise ValueError(f"LinearVAE needs d >= 1 and latents >= 1, got d={d}, K={latents}")
        self.d, self.latents = int(d), int(latents)
        self.enc_mean = nn.Linear(d, latents, dtype=dtype)
        self.enc_logvar = nn.Linear(d, latents, dtype=dtype)
        self.dec = nn.Linear(latents, d, dtype=dtype)
        self.reset_parameters(generator)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Seeded initialization.

        Mean head and decoder: PyTorch's default ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``,
        drawn from ``generator`` so that a seed fixes them. Log-variance head: zero, i.e.
        every posterior starts at the prior's unit variance; this removes an arbitrary
        x-dependent variance at the start without favouring any temperature.
        """
        for lin in (self.enc_mean, self.dec):
            bound = 1.0 / math.sqrt(lin.in_features)
            lin.weight.uniform_(-bound, bound, generator=generator)
            lin.bias.uniform_(-bound, bound, generator=generator)
        self.enc_logvar.weight.zero_()
        self.enc_logvar.bias.zero_()

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior parameters ``(mu, logs2)``, each (n, K)."""
        return self.enc_mean(x), self.enc_logvar(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.dec(z)

    def numpy_params(self) -> dict[str, np.ndarray]:
        """The affine maps as float64 arrays ``A, a, B, b, W, c`` (for the observables)."""
        return {
            key: self.get_parameter(name).detach().cpu().to(torch.float64).numpy().copy()
            for key, name in PARAM_NAMES.items()
        }

    @torch.no_grad()
    def load_numpy_params(self, params: dict) -> None:
        """Set the weights from arrays ``A, a, B, b, W, c`` (:meth:`numpy_params`'s form, e.g.
        :func:`.equilibrium.equilibrium_parameters`), cast to the model's dtype."""
        for key, name in PARAM_NAMES.items():
            self.get_parameter(name).copy_(torch.as_tensor(np.asarray(params[key])))


def kl_per_latent(mu: torch.Tensor, logs2: torch.Tensor) -> torch.Tensor:
    """``KL_j = 1/2 (mu_j^2 + s2_j - 1 - logs2_j)`` against N(0, 1), per sample and latent."""
    return 0.5 * (mu.square() + logs2.exp() - 1.0 - logs2)


def sampled_loss(
    model: LinearVAE, x: torch.Tensor, eps: torch.Tensor, beta: float, sigma2: float = 1.0
):
    """Minibatch beta-VAE loss with reparameterization noise ``eps`` (docs/science.md §1).

    Returns ``(L, D, R)``, each the mean over the batch.
    """
    mu, logs2 = model.encode(x)
    z = mu + torch.exp(0.5 * logs2) * eps
    xhat = model.decode(z)
    distortion = (x - xhat).square().sum(dim=1).mean() / (2.0 * sigma2)
    rate = kl_per_latent(mu, logs2).sum(dim=1).mean()
    return distortion + beta * rate, distortion, rate


@torch.no_grad()
def expected_loss(model: LinearVAE, x: torch.Tensor, beta: float, sigma2: float = 1.0):
    """The loss averaged exactly over the reparameterization noise (no sampling).

    For a linear decoder ``E_eps ||x - W(mu + s eps) - c||^2 = ||x - W mu - c||^2 +
    sum_j s2_j ||W_j||^2``. Used for validation: it is the same objective as training,
    without Monte-Carlo noise, so early stopping compares weights and not noise draws.
    Returns ``(L, D, R)`` as Python floats (means over ``x``), accumulated in float64.
    """
    mu, logs2 = model.encode(x)
    resid = x - model.decode(mu)
    col_norm2 = model.dec.weight.square().sum(dim=0)  # ||W_j||^2, (K,)
    d_per = resid.square().sum(dim=1).double() + (logs2.exp() @ col_norm2).double()
    distortion = d_per.mean().item() / (2.0 * sigma2)
    rate = kl_per_latent(mu, logs2).sum(dim=1).double().mean().item()
    return distortion + beta * rate, distortion, rate
