"""Model factories for the custom-model tests (``model.kind: custom``, docs/custom_models.md).

``same_as_mlp`` builds the built-in MLP VAE itself, initialized from the generator it is
given: a custom run with it must measure exactly what the built-in family measures. The
others are the contract's six ways to be wrong, each caught before any training.
"""

import numpy as np
import torch
from torch import nn

from collapse_spectroscopy.models.mlp import MLPVAE


def same_as_mlp(d, latents, generator, dtype, hidden=(16,), activation="gelu"):
    """The built-in MLP VAE, as a user's factory would return it."""
    return MLPVAE(d, latents, hidden, activation, generator=generator, dtype=dtype)


def with_shape(d, latents, generator, dtype, sample_shape):
    """Records the ``sample_shape`` it is handed (an image model reshapes with it)."""
    model = same_as_mlp(d, latents, generator, dtype)
    model.sample_shape = tuple(sample_shape)
    return model


not_callable = 42


def returns_array(d, latents, generator, dtype):
    return np.zeros((d, latents))


class _Broken(nn.Module):
    """A module whose ``encode``/``decode`` break the contract in one way (``how``)."""

    def __init__(self, d, latents, how):
        super().__init__()
        self.lin = nn.Linear(d, 2 * latents)
        self.dec = nn.Linear(latents, d)
        self.latents, self.how = latents, how

    def encode(self, x):
        h = self.lin(x)
        if self.how == "one tensor":
            return h
        if self.how == "wrong shape":
            return h, h  # (n, 2K), (n, 2K)
        return h[:, : self.latents], h[:, self.latents :]

    def decode(self, z):
        xhat = self.dec(z)
        return xhat * torch.nan if self.how == "nan" else xhat


def encode_one_tensor(d, latents, generator, dtype):
    return _Broken(d, latents, "one tensor")


def wrong_shapes(d, latents, generator, dtype):
    return _Broken(d, latents, "wrong shape")


def nan_output(d, latents, generator, dtype):
    return _Broken(d, latents, "nan")
