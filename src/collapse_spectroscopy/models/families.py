"""The model families a run can train (``model.kind``; docs/science.md §1, §9).

``linear``
    :class:`collapse_spectroscopy.models.linear.LinearVAE`, the paper's model and the calibrated
    null model; its observables have closed forms (:func:`.observables.measure`).
``mlp``
    :class:`collapse_spectroscopy.models.mlp.MLPVAE`; its observables decode through the
    network (:func:`.observables.measure_decoded`).

Both expose ``encode(x) -> (mu, logs2)``, ``decode(z)``, ``d`` and ``latents``, and are
trained by the loss of §1. :data:`FAMILIES` is the one list of kinds: the schema's
``model.kind`` enum (checked by a test) and the engines' ``kinds`` read it.
"""

from __future__ import annotations

import copy

import torch

from collapse_spectroscopy.errors import InputError
from collapse_spectroscopy.models.linear import LinearVAE
from collapse_spectroscopy.models.mlp import ACTIVATIONS, MLPVAE

FAMILIES = ("linear", "mlp")


def check_model(kind: str, hidden, activation: str) -> None:
    """InputError naming the key for a bad ``model.kind``, ``hidden`` or ``activation``."""
    if kind not in FAMILIES:
        raise InputError(f"model.kind = {kind!r}: expected one of {', '.join(FAMILIES)}")
    if kind == "linear":
        return  # hidden and activation do not apply
    hidden = list(hidden) if hidden is not None else []
    if not hidden or any(int(h) != h or h < 1 for h in hidden):
        raise InputError(f"model.hidden = {hidden!r}: expected a non-empty list of integers >= 1")
    if activation not in ACTIVATIONS:
        raise InputError(
            f"model.activation = {activation!r}: expected one of {', '.join(ACTIVATIONS)}"
        )


def build_model(kind: str, d: int, latents: int, hidden, activation: str, *, generator, dtype):
    """A freshly initialized model of family ``kind`` (seeded by ``generator``)."""
    check_model(kind, hidden, activation)
    if kind == "linear":
        return LinearVAE(d, latents, generator=generator, dtype=dtype)
    return MLPVAE(d, latents, hidden, activation, generator=generator, dtype=dtype)


def model_kind(model) -> str:
    """The family of a built model."""
    return getattr(model, "kind", "linear")


def model_spec(model) -> dict:
    """What rebuilds ``model``'s architecture besides ``d`` and ``latents`` (saved with the
    weights; a linear model saves nothing more, as before families existed)."""
    return model.spec() if hasattr(model, "spec") else {}


def numpy_codec(model):
    """``(encode, decode)`` of ``model`` as float64 numpy functions (a float64 copy on the
    CPU: everything measured is computed in float64, docs/science.md §1)."""
    net = copy.deepcopy(model).cpu().to(torch.float64).eval()

    @torch.no_grad()
    def encode(x):
        mu, logs2 = net.encode(torch.from_numpy(x))
        return mu.numpy(), logs2.numpy()

    @torch.no_grad()
    def decode(z):
        return net.decode(torch.from_numpy(z)).numpy()

    return encode, decode
