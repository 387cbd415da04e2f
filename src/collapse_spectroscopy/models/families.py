"""The model families a run can train (``model.kind``; docs/science.md §1, §9).

``linear``
    :class:`collapse_spectroscopy.models.linear.LinearVAE`, the paper's model and the calibrated
    null model; its observables have closed forms (:func:`.observables.measure`).
``mlp``
    :class:`collapse_spectroscopy.models.mlp.MLPVAE`; its observables decode through the
    network (:func:`.observables.measure_decoded`).
``custom``
    a user's VAE, built by ``model.factory`` (:mod:`.custom`, docs/custom_models.md);
    measured like ``mlp``.

Both expose ``encode(x) -> (mu, logs2)``, ``decode(z)``, ``d`` and ``latents``, and are
trained by the loss of §1. :data:`FAMILIES` is the one list of kinds: the schema's
``model.kind`` enum (checked by a test) and the engines' ``kinds`` read it.
:class:`Architecture` is what builds a model besides ``d`` and ``latents``: the
``model.*`` keys of a run, and what its weights file saves (:meth:`Architecture.spec`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from collapse_spectroscopy.errors import InputError
from collapse_spectroscopy.models.custom import build_custom, check_custom
from collapse_spectroscopy.models.linear import LinearVAE
from collapse_spectroscopy.models.mlp import ACTIVATIONS, MLPVAE

FAMILIES = ("linear", "mlp", "custom")


def check_model(kind: str, hidden, activation: str) -> None:
    """InputError naming the key for a bad ``model.kind``, ``hidden`` or ``activation``."""
    if kind not in FAMILIES:
        raise InputError(f"model.kind = {kind!r}: expected one of {', '.join(FAMILIES)}")
    if kind != "mlp":
        return  # hidden and activation do not apply
    hidden = list(hidden) if hidden is not None else []
    if not hidden or any(int(h) != h or h < 1 for h in hidden):
        raise InputError(f"model.hidden = {hidden!r}: expected a non-empty list of integers >= 1")
    if activation not in ACTIVATIONS:
        raise InputError(
            f"model.activation = {activation!r}: expected one of {', '.join(ACTIVATIONS)}"
        )


@dataclass(frozen=True)
class Architecture:
    """What builds a model besides ``d`` and ``latents`` (the run's ``model.*`` keys).

    ``kind``: one of :data:`FAMILIES`. ``hidden``, ``activation``: the ``mlp`` family's
    widths and nonlinearity. ``factory``, ``options``: the ``custom`` family's factory and
    its keyword arguments; ``sample_shape``: the shape of one sample before flattening
    (recorded by an arrays source), handed to a custom factory. Fields that do not apply
    to ``kind`` are ignored (and dropped by :meth:`spec`).
    """

    kind: str = "linear"
    hidden: tuple = ()
    activation: str | None = None
    factory: str | None = None
    options: dict = field(default_factory=dict)
    sample_shape: tuple | None = None

    def check(self) -> None:
        """InputError naming the key for a bad ``model.*`` value (the factory itself is
        checked when it is built: :meth:`build`)."""
        check_model(self.kind, self.hidden, self.activation)
        if self.kind == "custom" and not self.factory:
            raise InputError("model.factory is required with model.kind custom")

    def build(self, d: int, latents: int, *, generator, dtype):
        """A freshly initialized model (seeded by ``generator``); a custom one is checked
        on a small batch (:func:`.custom.check_custom`)."""
        self.check()
        if self.kind == "linear":
            return LinearVAE(d, latents, generator=generator, dtype=dtype)
        if self.kind == "mlp":
            return MLPVAE(
                d, latents, self.hidden, self.activation, generator=generator, dtype=dtype
            )
        model = build_custom(self.spec(), d, latents, generator=generator, dtype=dtype)
        check_custom(model)
        return model

    def spec(self) -> dict:
        """What the weights file saves to rebuild the model ({} for the linear VAE, as
        before families existed), the same as the built model's :func:`model_spec`."""
        if self.kind == "linear":
            return {}
        if self.kind == "mlp":
            return {
                "kind": "mlp",
                "hidden": [int(h) for h in self.hidden],
                "activation": self.activation,
            }
        spec = {"kind": "custom", "factory": self.factory, "options": dict(self.options)}
        if self.sample_shape is not None:
            spec["sample_shape"] = [int(s) for s in self.sample_shape]
        return spec

    @classmethod
    def from_spec(cls, spec: dict) -> Architecture:
        """The architecture a saved weights file (or a scan file's spec) describes."""
        return cls(
            kind=spec.get("kind", "linear"),
            hidden=tuple(spec.get("hidden", ())),
            activation=spec.get("activation"),
            factory=spec.get("factory"),
            options=dict(spec.get("options") or {}),
            sample_shape=tuple(spec["sample_shape"]) if spec.get("sample_shape") else None,
        )

    def with_sample_shape(self, metadata: dict) -> Architecture:
        """This architecture with the dataset's recorded ``sample_shape`` (a custom model's
        only; the others ignore it)."""
        shape = (metadata or {}).get("sample_shape")
        if self.kind != "custom" or not shape:
            return self
        return replace(self, sample_shape=tuple(shape))


def model_kind(model) -> str:
    """The family of a built model."""
    return getattr(model, "kind", "linear")


def model_spec(model) -> dict:
    """What rebuilds ``model``'s architecture besides ``d`` and ``latents`` (saved with the
    weights; a linear model saves nothing more, as before families existed)."""
    return model.spec() if hasattr(model, "spec") else {}


# Rows per network call in numpy_codec. The measurement decodes its two splits 11 times per
# truncation level, 363 times per WorldClim MLP scan point (docs/science.md §9); 1,024
# rows keep a 64-wide float64 activation (0.5 MB) in cache, where 65,536-row calls stream
# 33 MB through memory: measured on WorldClim's MLP, a decode of 65,536 rows took 0.20 s
# instead of 0.27 s. Each row is computed alone by the networks (no layer mixes rows in
# eval mode), so the rows, and every sum over them, are the ones a single call gives
# (tests/training/test_mlp.py).
ROWS_PER_CALL = 1024


def by_rows(f, x, rows: int, join):
    """``f(x)`` computed ``rows`` rows at a time and joined by ``join`` (``np.concatenate``,
    ``torch.cat``); ``f`` returns an array or a tuple of arrays, one row per row of ``x``.
    For a network that mixes no rows (any model in eval mode) the rows are those of one
    call; smaller calls keep its activations in cache."""
    if x.shape[0] <= rows:
        return f(x)
    parts = [f(x[i : i + rows]) for i in range(0, x.shape[0], rows)]
    if isinstance(parts[0], tuple):
        return tuple(join(p) for p in zip(*parts, strict=True))
    return join(parts)


def numpy_codec(model):
    """``(encode, decode)`` of ``model`` as float64 numpy functions (a float64 copy on the
    CPU: everything measured is computed in float64, docs/science.md §1), each calling the
    network on at most ROWS_PER_CALL rows at a time."""
    net = copy.deepcopy(model).cpu().to(torch.float64).eval()

    @torch.no_grad()
    def encode_rows(x):
        mu, logs2 = net.encode(torch.from_numpy(x))
        return mu.numpy(), logs2.numpy()

    @torch.no_grad()
    def decode_rows(z):
        return net.decode(torch.from_numpy(z)).numpy()

    def encode(x):
        return by_rows(encode_rows, x, ROWS_PER_CALL, np.concatenate)

    def decode(z):
        return by_rows(decode_rows, z, ROWS_PER_CALL, np.concatenate)

    return encode, decode
