"""Training engines: one minibatch Adam update of the linear beta-VAE (docs/science.md §1, §5).

Three engines with the same semantics, driven by the same loop in :mod:`.training` (same
batches, same reparameterization noise distribution, same Adam formula; the two torch
engines also draw the very same noise):

``autograd``
    the reference: :func:`collapse_spectroscopy.model.sampled_loss`, ``loss.backward()``
    and ``torch.optim.Adam``. Plain and obviously right; slow, because the model is tiny
    and the per-step overhead of autograd and the optimizer dominates.
``fast``
    hand-written gradients of the same loss and a fused Adam on one flat parameter
    buffer, with preallocated temporaries and no autograd. Device-agnostic torch code.
``numba``
    the same gradients and Adam, jitted, a whole validation window of updates per call,
    on one CPU core (:mod:`.engine_numba`); it draws its own noise (same distribution).

The gradients of ``L = mean_b [ ||x - xhat||^2 / (2 sigma2) + beta sum_j KL_j ]`` with
``h = [mu, logs2] = x [A; B]^T + [a; b]``, ``s = exp(logs2 / 2)``, ``z = mu + s eps``,
``xhat = z W^T + c`` and ``G = (xhat - x) / (sigma2 n_b)`` are::

    dW = G^T z            dc = sum_b G            dz = G W
    dmu    = dz + beta mu / n_b
    dlogs2 = dz eps s / 2 + beta (s^2 - 1) / (2 n_b)
    d[A;B] = [dmu, dlogs2]^T x,   d[a;b] = sum_b [dmu, dlogs2]
"""

from __future__ import annotations

import torch

from .model import LinearVAE, sampled_loss

ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


class AutogradEngine:
    """Reference engine: autograd plus ``torch.optim.Adam``."""

    name = "autograd"

    def __init__(self, model: LinearVAE, beta: float, sigma2: float, lr: float):
        self.model, self.beta, self.sigma2 = model, beta, sigma2
        self.opt = torch.optim.Adam(model.parameters(), lr=lr, betas=ADAM_BETAS, eps=ADAM_EPS)

    def step(self, xb: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """One Adam update on batch ``xb`` with noise ``eps``; returns the batch loss (0-d)."""
        loss, _, _ = sampled_loss(self.model, xb, eps, self.beta, self.sigma2)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss.detach()

    def sync_model(self) -> LinearVAE:
        return self.model

    def state_dict(self) -> dict:
        return {"optimizer": self.opt.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.opt.load_state_dict(state["optimizer"])


class FastEngine:
    """Hand-written gradients and fused Adam on a flat parameter buffer (no autograd).

    Parameters live in one flat tensor ``p`` with views ``E = [A a; B b]`` (2K x (d+1))
    and ``Wc = [W c]`` (d x (K+1)); gradients and the Adam moments are flat tensors of the
    same layout, so the whole Adam update is five in-place vector operations.
    """

    name = "fast"

    def __init__(self, model: LinearVAE, beta: float, sigma2: float, lr: float):
        self.model, self.beta, self.sigma2, self.lr = model, float(beta), float(sigma2), lr
        K, d = model.latents, model.d
        self.K, self.d = K, d
        w = model.enc_mean.weight
        dev, dt = w.device, w.dtype
        nE, nW = 2 * K * (d + 1), d * (K + 1)
        self.p = torch.zeros(nE + nW, device=dev, dtype=dt)
        self.g = torch.zeros_like(self.p)
        self.m = torch.zeros_like(self.p)
        self.v = torch.zeros_like(self.p)
        self.E = self.p[:nE].view(2 * K, d + 1)
        self.Wc = self.p[nE:].view(d, K + 1)
        self.gE = self.g[:nE].view(2 * K, d + 1)
        self.gWc = self.g[nE:].view(d, K + 1)
        self.t = 0
        self._buffers_for = None
        with torch.no_grad():
            self.E[:K, :d] = model.enc_mean.weight
            self.E[:K, d] = model.enc_mean.bias
            self.E[K:, :d] = model.enc_logvar.weight
            self.E[K:, d] = model.enc_logvar.bias
            self.Wc[:, :K] = model.dec.weight
            self.Wc[:, K] = model.dec.bias

    def _buffers(self, nb: int):
        # Temporaries are allocated once per batch size (the last batch of an epoch may be
        # short), then reused in place.
        if self._buffers_for != nb:
            p = self.p
            self.h = p.new_empty(nb, 2 * self.K)  # [mu, logs2]
            self.dh = p.new_empty(nb, 2 * self.K)  # [dmu, dlogs2]
            self.s = p.new_empty(nb, self.K)
            self.z1 = p.new_ones(nb, self.K + 1)  # [z, 1]
            self.r = p.new_empty(nb, self.d)
            self._buffers_for = nb

    def step(self, xb: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """One Adam update; ``xb`` is the batch, ``eps`` its (n_b, K) noise."""
        nb, K, d = xb.shape[0], self.K, self.d
        self._buffers(nb)
        h, dh, s, z1, r = self.h, self.dh, self.s, self.z1, self.r
        E, Wc = self.E, self.Wc
        W = Wc[:, :K]
        mu, ls = h[:, :K], h[:, K:]
        dmu, dls = dh[:, :K], dh[:, K:]
        z = z1[:, :K]
        beta, inv_n = self.beta, 1.0 / nb

        torch.addmm(E[:, d], xb, E[:, :d].T, out=h)  # h = x E^T + e
        torch.mul(ls, 0.5, out=s).exp_()  # s = exp(logs2/2)
        torch.addcmul(mu, s, eps, out=z)  # z = mu + s eps
        torch.addmm(Wc[:, K], z, W.T, out=r).sub_(xb)  # r = xhat - x
        # loss (for the log and the finiteness check): D + beta R, batch mean
        s2 = s.square()
        kl = (mu.square() + s2 - ls).sum() - nb * K
        loss = (r.square().sum() / (2.0 * self.sigma2) + 0.5 * beta * kl) * inv_n
        # backward
        r.mul_(inv_n / self.sigma2)  # G
        torch.mm(r.T, z1, out=self.gWc)  # [dW, dc]
        torch.mm(r, W, out=dmu)  # dz
        dls.copy_(dmu).mul_(eps).mul_(s).mul_(0.5)  # dz eps s / 2
        dls.add_(s2.sub_(1.0), alpha=0.5 * beta * inv_n)  # + beta (s2-1) / (2n)
        dmu.add_(mu, alpha=beta * inv_n)  # + beta mu / n
        torch.mm(dh.T, xb, out=self.gE[:, :d])  # d[A;B]
        torch.sum(dh, dim=0, out=self.gE[:, d])  # d[a;b]
        self._adam()
        return loss

    @torch.no_grad()
    def _adam(self) -> None:
        # The formula of torch.optim.Adam (amsgrad off, no weight decay), fused.
        b1, b2 = ADAM_BETAS
        self.t += 1
        bc1 = 1.0 - b1**self.t
        bc2_sqrt = (1.0 - b2**self.t) ** 0.5
        self.m.lerp_(self.g, 1.0 - b1)
        self.v.mul_(b2).addcmul_(self.g, self.g, value=1.0 - b2)
        denom = self.v.sqrt().div_(bc2_sqrt).add_(ADAM_EPS)
        self.p.addcdiv_(self.m, denom, value=-self.lr / bc1)

    @torch.no_grad()
    def sync_model(self) -> LinearVAE:
        """Copy the flat parameters back into the ``LinearVAE`` and return it."""
        K, d, m = self.K, self.d, self.model
        m.enc_mean.weight.copy_(self.E[:K, :d])
        m.enc_mean.bias.copy_(self.E[:K, d])
        m.enc_logvar.weight.copy_(self.E[K:, :d])
        m.enc_logvar.bias.copy_(self.E[K:, d])
        m.dec.weight.copy_(self.Wc[:, :K])
        m.dec.bias.copy_(self.Wc[:, K])
        return m

    def state_dict(self) -> dict:
        return {"p": self.p.clone(), "m": self.m.clone(), "v": self.v.clone(), "t": self.t}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.p.copy_(state["p"])
            self.m.copy_(state["m"])
            self.v.copy_(state["v"])
        self.t = int(state["t"])


def numba_engine(model: LinearVAE, beta: float, sigma2: float, lr: float):
    """The ``numba`` engine (:mod:`.engine_numba`), imported on first use, so that runs
    with the torch engines neither import numba nor need it."""
    from .engine_numba import NumbaEngine

    return NumbaEngine(model, beta, sigma2, lr)


ENGINES = {"fast": FastEngine, "autograd": AutogradEngine, "numba": numba_engine}
