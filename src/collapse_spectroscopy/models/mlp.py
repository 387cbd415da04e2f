"""The MLP VAE: the nonlinear family of collapse spectroscopy (docs/science.md §9).

::

    encoder           h = f(... f(L_1 x) ...),   [mu, logs2] = L_out h      (in R^{2K})
    decoder           xhat(z) = L'_out f(... f(L'_1 z) ...)
    sample            z = mu + exp(logs2 / 2) * eps,   eps ~ N(0, I)

``L`` are affine layers, ``f`` the activation (``model.activation``). The encoder's hidden
widths are ``model.hidden`` (input side first); the decoder mirrors them, so the two
halves have the same capacity. The loss is the linear VAE's (docs/science.md §1,
:func:`collapse_spectroscopy.models.linear.sampled_loss` trains either family): ``D =
||x - xhat||^2 / (2 sigma2)``, ``KL_j = 1/2 (mu_j^2 + s2_j - 1 - logs2_j)``, ``L = D +
beta R``.

Initialization follows the linear VAE's: PyTorch's default ``U(-1/sqrt(fan_in),
1/sqrt(fan_in))`` for every weight and bias, drawn in layer order from one seeded
generator, and the log-variance rows of the encoder's last layer zero, so that every
posterior starts at the prior's unit variance.
"""

from __future__ import annotations

import math

import torch
from torch import nn

# model.activation -> the nonlinearity (the schema's enum is these keys; a test checks)
ACTIVATIONS = {
    "gelu": nn.GELU,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "silu": nn.SiLU,
    "softplus": nn.Softplus,
    "elu": nn.ELU,
}


def _mlp(widths: list[int], activation: str, dtype) -> nn.Sequential:
    """Affine layers between consecutive ``widths``, the activation between them."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
        if i:
            layers.append(ACTIVATIONS[activation]())
        layers.append(nn.Linear(n_in, n_out, dtype=dtype))
    return nn.Sequential(*layers)


class MLPVAE(nn.Module):
    """Gaussian VAE with MLP encoder and decoder, ``d`` features and ``K`` latents."""

    kind = "mlp"

    def __init__(
        self,
        d: int,
        latents: int,
        hidden=(64, 64),
        activation: str = "gelu",
        *,
        generator=None,
        dtype=None,
    ):
        super().__init__()
        hidden = [int(h) for h in hidden]
        if d < 1 or latents < 1 or not hidden or min(hidden) < 1:
            raise ValueError(f"MLPVAE needs d, K and hidden widths >= 1: {d}, {latents}, {hidden}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {activation!r}: one of {', '.join(ACTIVATIONS)}")
        self.d, self.latents = int(d), int(latents)
        self.hidden, self.activation = hidden, activation
        self.encoder = _mlp([d, *hidden, 2 * latents], activation, dtype)
        self.decoder = _mlp([latents, *hidden[::-1], d], activation, dtype)
        self.reset_parameters(generator)

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Seeded initialization (see the module's docstring)."""
        for lin in (m for m in self.modules() if isinstance(m, nn.Linear)):
            bound = 1.0 / math.sqrt(lin.in_features)
            lin.weight.uniform_(-bound, bound, generator=generator)
            lin.bias.uniform_(-bound, bound, generator=generator)
        out = self.encoder[-1]
        out.weight[self.latents :].zero_()
        out.bias[self.latents :].zero_()

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior parameters ``(mu, logs2)``, each (n, K)."""
        h = self.encoder(x)
        return h[:, : self.latents], h[:, self.latents :]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def spec(self) -> dict:
        """What rebuilds this architecture (saved beside the weights)."""
        return {"kind": self.kind, "hidden": list(self.hidden), "activation": self.activation}
