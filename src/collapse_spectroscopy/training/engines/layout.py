"""The flat parameter layout of the linear VAE, and the Adam constants (docs/science.md §1, §5).

The hand-written engines keep every parameter of
:class:`~collapse_spectroscopy.models.linear.LinearVAE` in one flat buffer ``p`` (and the
gradient and the Adam moments in buffers of the same layout), so that one Adam update is one
pass over one vector::

    p = [ E = [A a; B b]  (2K x (d+1), row-major) | Wc = [W c]  (d x (K+1), row-major) ]

``E`` stacks the encoder's mean head ``mu = A x + a`` over its log-variance head
``logs2 = B x + b``; ``Wc`` is the decoder ``xhat = W z + c``. :func:`flat_views` is the
one definition of this layout: the torch engines, the numba kernels (which jit it) and
:func:`pack` / :func:`unpack` all slice through it.
"""

from __future__ import annotations

import torch

# torch.optim.Adam's defaults, the optimizer of the paper's protocol (docs/science.md §5);
# every engine uses these, so that they follow the same trajectory.
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


def n_params(d: int, K: int) -> int:
    """Length of the flat buffer of a linear VAE with ``d`` features and ``K`` latents."""
    return 2 * K * (d + 1) + d * (K + 1)


def flat_views(p, d, K):
    """``(E, Wc)``: the ``(2K, d+1)`` encoder and ``(d, K+1)`` decoder views of the flat
    buffer ``p`` (a torch tensor, a numpy array, or an array inside a jitted kernel)."""
    n_enc = 2 * K * (d + 1)
    return p[:n_enc].reshape((2 * K, d + 1)), p[n_enc:].reshape((d, K + 1))


@torch.no_grad()
def pack(model, p: torch.Tensor) -> None:
    """Write the parameters of ``model`` (a ``LinearVAE``) into the flat buffer ``p``."""
    K, d = model.latents, model.d
    E, Wc = flat_views(p, d, K)
    E[:K, :d] = model.enc_mean.weight
    E[:K, d] = model.enc_mean.bias
    E[K:, :d] = model.enc_logvar.weight
    E[K:, d] = model.enc_logvar.bias
    Wc[:, :K] = model.dec.weight
    Wc[:, K] = model.dec.bias


@torch.no_grad()
def unpack(p: torch.Tensor, model):
    """Copy the flat buffer ``p`` back into ``model`` (a ``LinearVAE``) and return it."""
    K, d = model.latents, model.d
    E, Wc = flat_views(p, d, K)
    model.enc_mean.weight.copy_(E[:K, :d])
    model.enc_mean.bias.copy_(E[:K, d])
    model.enc_logvar.weight.copy_(E[K:, :d])
    model.enc_logvar.bias.copy_(E[K:, d])
    model.dec.weight.copy_(Wc[:, :K])
    model.dec.bias.copy_(Wc[:, K])
    return model
