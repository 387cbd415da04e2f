"""A small convolutional VAE for 8 x 8 images: the factory of the ``digits`` example.

``model.factory: examples/digits/conv_vae.py:conv_vae`` (docs/custom_models.md). The
workflow calls ``conv_vae(d=64, latents=K, generator=..., dtype=..., sample_shape=(8, 8),
**model.options)`` and trains what it returns like any scan point: the same loss, batches,
noise, Adam and early stopping as the built-in families. Samples arrive flat, (n, 64), and
leave flat; the convolutions see them as one-channel images.

    encoder   (1, 8, 8) -conv3x3-> (c, 8, 8) -conv4x4/2-> (2c, 4, 4) -> 2K   (mu, log s2)
    decoder   K -> (2c, 4, 4) -convT4x4/2-> (c, 8, 8) -conv3x3-> (1, 8, 8)

Every weight is drawn from ``generator`` (PyTorch's default uniform bound 1/sqrt(fan_in)),
so a scan point's seed fixes the initialization, and the log-variance outputs start at
zero (every posterior starts at the prior's unit variance), as the built-in families do.
"""

import math

import torch
from torch import nn


class ConvVAE(nn.Module):
    def __init__(self, latents, shape, channels, activation, dtype):
        super().__init__()
        (h, w), c = shape, channels
        if h % 2 or w % 2:
            raise ValueError(f"sample_shape {shape}: expected even height and width")
        self.shape, self.latents, self.inner = (h, w), latents, (2 * c, h // 2, w // 2)
        act = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU}[activation]
        n_inner = 2 * c * (h // 2) * (w // 2)
        kw = {"dtype": dtype}
        self.encoder = nn.Sequential(
            nn.Conv2d(1, c, 3, padding=1, **kw),
            act(),
            nn.Conv2d(c, 2 * c, 4, stride=2, padding=1, **kw),
            act(),
            nn.Flatten(),
            nn.Linear(n_inner, 2 * latents, **kw),
        )
        self.decoder_in = nn.Sequential(nn.Linear(latents, n_inner, **kw), act())
        self.decoder_out = nn.Sequential(
            nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1, **kw),
            act(),
            nn.Conv2d(c, 1, 3, padding=1, **kw),
        )

    def encode(self, x):
        h = self.encoder(x.reshape(-1, 1, *self.shape))
        return h[:, : self.latents], h[:, self.latents :]

    def decode(self, z):
        h = self.decoder_in(z).reshape(-1, *self.inner)
        return self.decoder_out(h).reshape(z.shape[0], -1)


@torch.no_grad()
def _initialize(model: ConvVAE, generator: torch.Generator) -> None:
    for layer in model.modules():
        if isinstance(layer, nn.Linear | nn.Conv2d | nn.ConvTranspose2d):
            # fan_in as PyTorch's default initialization computes it for each layer type
            fan_in = nn.init._calculate_fan_in_and_fan_out(layer.weight)[0]
            bound = 1.0 / math.sqrt(fan_in)
            layer.weight.uniform_(-bound, bound, generator=generator)
            layer.bias.uniform_(-bound, bound, generator=generator)
    out = model.encoder[-1]
    out.weight[model.latents :].zero_()
    out.bias[model.latents :].zero_()


def conv_vae(d, latents, generator, dtype, sample_shape, channels=16, activation="gelu"):
    """The convolutional VAE for samples of ``sample_shape`` (h, w), ``h * w == d``."""
    shape = tuple(int(s) for s in sample_shape)
    if len(shape) != 2 or shape[0] * shape[1] != d:
        raise ValueError(f"sample_shape {shape}: expected (height, width) with {d} pixels")
    model = ConvVAE(int(latents), shape, int(channels), activation, dtype)
    _initialize(model, generator)
    return model
