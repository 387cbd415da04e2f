"""Your own VAE: ``model.kind: custom`` (docs/custom_models.md).

A run names a *factory*, ``model.factory``: ``"package.module:function"`` (importable from
the run's environment) or ``"path/to/file.py:function"`` (relative to the working
directory). It is called as

    factory(d=..., latents=..., generator=..., dtype=..., **model.options)

plus ``sample_shape=...`` when the dataset records one (an arrays source: the shape of one
sample before flattening, so an image model can reshape) and the factory takes it, and
returns a
``torch.nn.Module`` with

    encode(x) -> (mu, logs2)      x (n, d)  ->  two (n, latents) tensors
    decode(z) -> xhat             z (n, latents)  ->  (n, d)

Everything else of the measurement needs only these two (the loss of docs/science.md §1,
the decoded observables of §9, the Jacobian maps of §10). The module is wrapped in
:class:`CustomVAE`, which gives it what the rest of the package reads (``d``, ``latents``,
``kind``, ``spec()``); its parameters are the factory's, under ``net.``.

The factory must draw its initial weights from ``generator`` (a seeded ``torch.Generator``)
for a scan point's seed to fix its initialization; one that ignores it still trains, but
two runs then differ (:func:`check_factory` cannot tell; the docs say so).
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

from collapse_spectroscopy.errors import InputError
from collapse_spectroscopy.models.factory import KEY, load_factory

CHECK_BATCH = 5  # samples of the shape check: more than one, so a batch axis is tested


class CustomVAE(nn.Module):
    """A user's VAE (``net``, built by the factory) as the package sees a model."""

    kind = "custom"

    def __init__(self, net: nn.Module, d: int, latents: int, spec: dict):
        super().__init__()
        self.net, self.d, self.latents = net, int(d), int(latents)
        self._spec = {k: v for k, v in spec.items() if k != "kind"}

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net.encode(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.net.decode(z)

    def spec(self) -> dict:
        """What rebuilds this model (saved beside the weights)."""
        return {"kind": self.kind, **self._spec}


def build_custom(spec: dict, d: int, latents: int, *, generator, dtype) -> CustomVAE:
    """The model of ``spec`` (a custom :meth:`.families.Architecture.spec`: ``factory``,
    ``options`` and, if the data has one, ``sample_shape``) for ``d`` features and
    ``latents`` latents, wrapped, saving ``spec``; InputError naming ``model.factory`` if
    the factory fails or does not return a module with ``encode`` and ``decode``."""
    factory, options, sample_shape = spec["factory"], spec["options"], spec.get("sample_shape")
    fn = load_factory(factory)
    kwargs = dict(d=int(d), latents=int(latents), generator=generator, dtype=dtype, **options)
    if sample_shape is not None and accepts(fn, "sample_shape"):
        kwargs["sample_shape"] = tuple(int(s) for s in sample_shape)
    try:
        net = fn(**kwargs)
    except Exception as exc:
        raise InputError(
            f"{KEY} = {factory!r}: calling it with {sorted(kwargs)} failed: {exc!r}"
        ) from None
    if not isinstance(net, nn.Module):
        raise InputError(
            f"{KEY} = {factory!r}: returned a {type(net).__name__}, expected a torch.nn.Module "
            "with encode(x) -> (mu, logs2) and decode(z) -> xhat"
        )
    for method in ("encode", "decode"):
        if not callable(getattr(net, method, None)):
            raise InputError(f"{KEY} = {factory!r}: the module it returned has no {method}()")
    return CustomVAE(net.to(dtype), d, latents, spec)


@torch.no_grad()
def check_custom(model: CustomVAE, seed: int = 0) -> None:
    """InputError naming ``model.factory`` unless ``encode`` of a small batch gives two
    finite ``(n, latents)`` tensors and ``decode`` a finite ``(n, d)`` one."""
    factory, n, d, K = model.spec()["factory"], CHECK_BATCH, model.d, model.latents
    dtype = next(model.parameters(), torch.zeros((), dtype=torch.float32)).dtype
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    try:
        out = model.encode(x)
    except Exception as exc:
        raise InputError(
            f"{KEY} = {factory!r}: encode of a ({n}, {d}) batch failed: {exc!r}"
        ) from None
    if not (
        isinstance(out, tuple | list) and len(out) == 2 and all(torch.is_tensor(t) for t in out)
    ):
        raise InputError(
            f"{KEY} = {factory!r}: encode(x) returned {_what(out)}, "
            "expected a pair of tensors (mu, logs2)"
        )
    _check_tensor(factory, "encode(x)[0] (mu)", out[0], (n, K))
    _check_tensor(factory, "encode(x)[1] (logs2)", out[1], (n, K))
    try:
        xhat = model.decode(out[0])
    except Exception as exc:
        raise InputError(
            f"{KEY} = {factory!r}: decode of a ({n}, {K}) batch failed: {exc!r}"
        ) from None
    if not torch.is_tensor(xhat):
        raise InputError(
            f"{KEY} = {factory!r}: decode(z) returned {_what(xhat)}, expected a tensor"
        )
    _check_tensor(factory, "decode(z)", xhat, (n, d))


def _what(value) -> str:
    if torch.is_tensor(value):
        return f"one tensor of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"


def _check_tensor(factory: str, what: str, t: torch.Tensor, shape: tuple) -> None:
    if tuple(t.shape) != shape:
        raise InputError(
            f"{KEY} = {factory!r}: {what} has shape {tuple(t.shape)}, expected {shape} "
            "(flat (n, d) samples in, (n, latents) out: a convolutional model reshapes inside)"
        )
    if not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).sum())
        raise InputError(
            f"{KEY} = {factory!r}: {what} has {bad} non-finite values on a random batch"
        )


def accepts(fn, name: str) -> bool:
    """True if ``fn`` takes keyword ``name`` (or ``**kwargs``)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.name == name or p.kind is p.VAR_KEYWORD for p in params)
