"""The torch engines: one minibatch Adam update at a time (docs/science.md §1, §5).

``autograd``
    the reference: :func:`collapse_spectroscopy.models.linear.sampled_loss`, ``loss.backward()``
    and ``torch.optim.Adam``. Plain and obviously right; slow, because the model is tiny
    and the per-step overhead of autograd and the optimizer dominates.
``fast``
    hand-written gradients of the same loss and a fused Adam on one flat parameter
    buffer (:mod:`.layout`), with preallocated temporaries and no autograd.
    Device-agnostic torch code: the engine for CUDA.

Both draw the same batches (:class:`.batches.BatchStream`) and the very same noise
(``torch.randn`` from one generator seeded by the noise seed), so on the same seed they
follow the same trajectory up to rounding (tests/training/test_training.py).

With ``average`` ``ema`` or ``polyak`` (:mod:`.averaging`) the window loop folds the
weights after every update into a float64 running average, and validation and
``sync_model`` give the averaged weights; training itself goes on from the raw iterate.

The gradients of ``L = mean_b [ ||x - xhat||^2 / (2 sigma2) + beta sum_j KL_j ]`` with
``h = [mu, logs2] = x [A; B]^T + [a; b]``, ``s = exp(logs2 / 2)``, ``z = mu + s eps``,
``xhat = z W^T + c`` and ``G = (xhat - x) / (sigma2 n_b)`` are::

    dW = G^T z            dc = sum_b G            dz = G W
    dmu    = dz + beta mu / n_b
    dlogs2 = dz eps s / 2 + beta (s^2 - 1) / (2 n_b)
    d[A;B] = [dmu, dlogs2]^T x,   d[a;b] = sum_b [dmu, dlogs2]
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch.nn.utils import parameters_to_vector

from collapse_spectroscopy.models.linear import LinearVAE, expected_loss, sampled_loss
from collapse_spectroscopy.training.engines.averaging import TorchAverage
from collapse_spectroscopy.training.engines.base import TrainingProblem
from collapse_spectroscopy.training.engines.batches import BatchStream
from collapse_spectroscopy.training.engines.layout import (
    ADAM_BETAS,
    ADAM_EPS,
    flat_views,
    n_params,
    pack,
    unpack,
)


class TorchEngine:
    """The engine protocol (:class:`.base.Engine`) for an update rule written in torch:
    a subclass gives :meth:`step` (one update on a given batch and noise),
    :meth:`weights` (its flat weights), ``sync_model`` and the state of its weights and
    optimizer."""

    name = ""
    averages = True  # training.average ema and polyak (module docstring)
    # TrainingProblem.noise_free (eps = 0): only an engine whose validation then decodes
    # mu (the mlp engines) may say True; the linear ones validate by the closed form
    # expected_loss, which adds the posterior variance's term whatever eps was
    trains_noise_free = False

    def __init__(self, problem: TrainingProblem):
        self.model = problem.model
        w = next(self.model.parameters())
        self.device, self.dtype = w.device, w.dtype
        self.beta, self.sigma2 = float(problem.beta), float(problem.sigma2)
        self.lr = float(problem.learning_rate)

        def tensor(x):
            return torch.as_tensor(np.asarray(x), dtype=self.dtype, device=self.device)

        self.x, self.x_val = tensor(problem.x_train), tensor(problem.x_val)
        self.batches = BatchStream(
            self.x.shape[0], problem.batch_size, problem.shuffle_seed, self.device
        )
        self.g_noise = torch.Generator(device=self.device).manual_seed(problem.noise_seed)
        if problem.noise_free and not self.trains_noise_free:
            raise ValueError(f"the {self.name!r} engine has no noise-free mode")
        self.noise_free = bool(problem.noise_free)
        self._losses = torch.empty(0)
        self.average = None  # a TorchAverage once the subclass has its weights (start_average)
        self._average_of = (problem.average, problem.average_horizon)

    def start_average(self) -> None:
        """Start the running average of :meth:`weights`, if the problem asks for one (a
        subclass calls it once its weights exist)."""
        kind, horizon = self._average_of
        if kind != "none":
            self.average = TorchAverage(kind, horizon, self.weights())

    def weights(self) -> torch.Tensor:
        """The current weights (the raw iterate) as one flat vector."""
        raise NotImplementedError

    def step(self, xb: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """One Adam update on batch ``xb`` with noise ``eps`` ``(n_b, K)``; the batch loss."""
        raise NotImplementedError

    def run_window(self, n_updates: int) -> np.ndarray:
        # the per-update losses stay on the device until the window ends, so that the hot
        # loop never waits for a device-to-host copy
        if self._losses.numel() < n_updates:
            self._losses = torch.empty(n_updates, dtype=self.dtype, device=self.device)
        losses, K = self._losses, self.model.latents
        for i in range(n_updates):
            xb = self.x[self.batches.next()]
            if self.noise_free:  # the decoder sees mu; the noise generator is not drawn
                eps = xb.new_zeros(xb.shape[0], K)
            else:
                eps = torch.randn(
                    xb.shape[0], K, generator=self.g_noise, device=self.device, dtype=self.dtype
                )
            losses[i] = self.step(xb, eps)
            if self.average is not None:
                self.average.update(self.weights())
        # a copy: on the CPU .numpy() would share the buffer that the next window overwrites
        return losses[:n_updates].cpu().numpy().copy()

    def validation_loss(self) -> tuple[float, float, float]:
        return expected_loss(self.sync_model(), self.x_val, self.beta, self.sigma2)

    def state_dict(self) -> dict:
        average = {"average": self.average.state_dict()} if self.average is not None else {}
        return {
            **self._rule_state(),
            "batches": self.batches.state_dict(),
            "g_noise": self.g_noise.get_state().cpu(),
            **average,
        }

    def load_state_dict(self, state: dict) -> None:
        self._load_rule_state(state)
        self.batches.load_state_dict(state["batches"])
        self.g_noise.set_state(state["g_noise"].to(self.g_noise.get_state().device))
        if self.average is not None:
            self.average.load_state_dict(state["average"])


class AutogradEngine(TorchEngine):
    """Reference engine: autograd plus ``torch.optim.Adam``."""

    name = "autograd"

    def __init__(self, problem: TrainingProblem):
        super().__init__(problem)
        self.opt = self._optimizer()
        self.start_average()
        # the averaged weights live in a copy of the model (the model is the raw iterate)
        self.averaged_model = copy.deepcopy(self.model) if self.average is not None else None

    def _optimizer(self) -> torch.optim.Adam:
        return torch.optim.Adam(self.model.parameters(), lr=self.lr, betas=ADAM_BETAS, eps=ADAM_EPS)

    def step(self, xb: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        loss, _, _ = sampled_loss(self.model, xb, eps, self.beta, self.sigma2)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss.detach()

    @torch.no_grad()
    def weights(self) -> torch.Tensor:
        return parameters_to_vector(self.model.parameters())

    def sync_model(self) -> LinearVAE:
        if self.average is None:
            return self.model  # the model is the weights
        with torch.no_grad():
            mean, start = self.average.value(self.weights()), 0
            for param in self.averaged_model.parameters():  # copies: the average moves on
                param.copy_(mean[start : start + param.numel()].view_as(param))
                start += param.numel()
        return self.averaged_model

    def _rule_state(self) -> dict:
        model = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        return {"model": model, "optimizer": copy.deepcopy(self.opt.state_dict())}

    def _load_rule_state(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        # torch adopts the given moment tensors and updates them in place: give it copies
        self.opt.load_state_dict(copy.deepcopy(state["optimizer"]))


class FastEngine(TorchEngine):
    """Hand-written gradients and fused Adam on a flat parameter buffer (no autograd).

    Parameters live in one flat tensor ``p`` with views ``E = [A a; B b]`` and
    ``Wc = [W c]`` (:mod:`.layout`); gradients and the Adam moments are flat tensors of
    the same layout, so the whole Adam update is five in-place vector operations.
    """

    name = "fast"

    def __init__(self, problem: TrainingProblem):
        super().__init__(problem)
        self.K, self.d = K, d = self.model.latents, self.model.d
        self.p = torch.zeros(n_params(d, K), device=self.device, dtype=self.dtype)
        self.g = torch.zeros_like(self.p)
        self.m = torch.zeros_like(self.p)
        self.v = torch.zeros_like(self.p)
        self.E, self.Wc = flat_views(self.p, d, K)
        self.gE, self.gWc = flat_views(self.g, d, K)
        self.t = 0
        self._buffers_for = None
        pack(self.model, self.p)
        self.start_average()

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

    def weights(self) -> torch.Tensor:
        return self.p

    def sync_model(self) -> LinearVAE:
        p = self.p if self.average is None else self.average.value(self.p)
        return unpack(p, self.model)

    def _rule_state(self) -> dict:
        return {"p": self.p.clone(), "m": self.m.clone(), "v": self.v.clone(), "t": self.t}

    def _load_rule_state(self, state: dict) -> None:
        with torch.no_grad():
            self.p.copy_(state["p"])
            self.m.copy_(state["m"])
            self.v.copy_(state["v"])
        self.t = int(state["t"])
