"""The stacked parameters of P linear VAEs and their batched Adam update (docs/science.md §5).

:class:`StackedModels` is the linear arithmetic of :class:`.batched.BatchedEngine` (a
:class:`.point_batch.PointBatch`, which keeps the stacked buffers: parameters, gradients and
Adam moments, each one flat block-major buffer): two segments per point, the encoders ``E``
of all points then their decoders ``Wc``, so that ``E`` is one ``(P, 2K, d+1)`` tensor and
``Wc`` one ``(P, d, K+1)`` tensor that the batched products write their gradients into, and
one Adam update is still five vector operations over one flat vector; a point's row is in
the layout of :mod:`.layout` (``FastEngine``'s).

The update is FastEngine's (see :mod:`.torch_engines`), with ``beta`` a per-point
``(P, 1, 1)`` tensor and the biases inside the products (``h = [x 1] E^T``,
``xhat = [z 1] Wc^T``, ``d[E] = dh^T [x 1]``). It reads every step-dependent value (batch
rows, noise, the Adam bias corrections) from buffers filled before it, so that on CUDA it
can be captured once as a CUDA graph and replayed (``cuda_graphs``).

The engine sets what the update reads besides: ``K``, ``d``, ``sigma2``, ``lr``, ``bs``,
``betas`` (per point), ``device``, ``dtype``, ``cuda_graphs`` and ``x1`` (the training
split with a column of ones).
"""

from __future__ import annotations

import numpy as np
import torch

from collapse_spectroscopy.training.engines.layout import ADAM_BETAS, ADAM_EPS
from collapse_spectroscopy.training.engines.point_batch import capture_graph


class StackedModels:
    """The arithmetic of the stacked linear points (:attr:`active`) of a batched engine:
    the views of their parameters ``p`` and gradients ``g``, one batched Adam update of
    them with the moments ``m``, ``v`` at step ``t`` (:meth:`_step`), and the window hooks
    of :class:`.point_batch.PointBatch`."""

    # ------------------------------------------------------------------ the stack
    # Two segments per point, E (2K x (d+1)) and Wc (d x (K+1)), in the layout of .layout
    # (FastEngine's); block-major (.point_batch), so that E is one contiguous
    # (P, 2K, d+1) tensor and Wc one (P, d, K+1) tensor that the batched products write
    # their gradients into.
    def _segments(self, model) -> list[int]:
        K, d = self.K, self.d
        return [2 * K * (d + 1), d * (K + 1)]

    def _split(self, flat: torch.Tensor, P: int):
        K, d = self.K, self.d
        E, Wc = self._blocks(flat, P)
        return E.view(P, 2 * K, d + 1), Wc.view(P, d, K + 1)

    def _restack(self) -> None:
        P = len(self.active)
        self.E, self.Wc = self._split(self.p, P)
        self.gE, self.gWc = self._split(self.g, P)
        self._beta_list = [self.betas[i] for i in self.active]
        # the Adam step's constants, [-lr / bc1, bc2^(1/2)], filled before each update
        self.adam_c = self.p.new_zeros(2)
        self._bufs: dict[int, dict] = {}  # temporaries per batch size
        self._graphs: dict[int, torch.cuda.CUDAGraph] = {}

    # ------------------------------------------------------------------ the window
    def _begin_window(self, n_updates: int) -> None:
        consts = [self._adam_constants(self.t + k + 1) for k in range(n_updates)]
        self._consts = torch.stack(consts).to(self.device)
        self._losses = self.p.new_empty(n_updates, len(self.active))

    def _eps(self, nb: int) -> torch.Tensor:
        return self._buffers(nb)["eps"]

    def _advance(self, k: int, nb: int, idx: torch.Tensor) -> None:
        self._step(nb, idx, self._consts[k])
        self._losses[k].copy_(self._bufs[nb]["loss"])

    def _end_window(self, sizes: np.ndarray) -> np.ndarray:
        return self._losses.T.cpu().numpy().copy()

    def _buffers(self, nb: int) -> dict:
        # Temporaries per batch size (the last batch of an epoch may be short), reused in
        # place; the step-dependent constants of the update are tensors here too.
        if nb not in self._bufs:
            P, K, d = len(self.active), self.K, self.d
            new = self.p.new_empty
            inv_n = 1.0 / nb
            coef = [0.5 * b * inv_n for b in self._beta_list]  # as FastEngine's scalars
            coef_mu = [b * inv_n for b in self._beta_list]

            def per_point(values):
                t = torch.tensor(values, dtype=torch.float64).to(self.dtype)
                return t.to(self.device).view(P, 1, 1)

            self._bufs[nb] = {
                "idx": torch.zeros(P * nb, dtype=torch.long, device=self.device),  # graphs
                "xb1": new(P, nb, d + 1),  # [x, 1]
                "eps": new(P, nb, K),
                "h": new(P, nb, 2 * K),  # [mu, logs2]
                "dh": new(P, nb, 2 * K),  # [dmu, dlogs2]
                "s": new(P, nb, K),
                "z1": self.p.new_ones(P, nb, K + 1),  # [z, 1]
                "r": new(P, nb, d),
                "loss": new(P),
                "tmp": torch.empty_like(self.p),
                "coef_ls": per_point(coef),  # beta / (2 n_b)
                "coef_mu": per_point(coef_mu),  # beta / n_b
                "half_beta": per_point([0.5 * b for b in self._beta_list]),
                "inv_n": inv_n,
            }
        return self._bufs[nb]

    def _update(self, nb: int, idx: torch.Tensor, adam_c: torch.Tensor) -> None:
        """One Adam update of every stacked point on the rows ``idx`` (``P n_b``, point by
        point) with the noise in the ``eps`` buffer and the Adam constants ``adam_c``
        (FastEngine's update, batched; the losses go to the ``loss`` buffer). Reads
        tensors only, no Python value that changes between updates: capturable as a CUDA
        graph (with the ``idx`` buffer and :attr:`adam_c`)."""
        b = self._bufs[nb]
        K, d = self.K, self.d
        P = len(self.active)
        xb1, eps, h, dh, s, z1, r = (b[k] for k in ("xb1", "eps", "h", "dh", "s", "z1", "r"))
        xb = xb1[:, :, :d]
        E, Wc = self.E, self.Wc
        W = Wc[:, :, :K]
        mu, ls = h[:, :, :K], h[:, :, K:]
        dmu, dls = dh[:, :, :K], dh[:, :, K:]
        z = z1[:, :, :K]
        inv_n = b["inv_n"]

        torch.index_select(self.x1, 0, idx, out=xb1.view(P * nb, d + 1))  # the batches
        torch.bmm(xb1, E.transpose(1, 2), out=h)  # h = [x 1] E^T = x E^T + e
        torch.mul(ls, 0.5, out=s).exp_()  # s = exp(logs2/2)
        torch.addcmul(mu, s, eps, out=z)  # z = mu + s eps
        torch.bmm(z1, Wc.transpose(1, 2), out=r).sub_(xb)  # r = [z 1] Wc^T - x = xhat - x
        # loss per point (for the log and the finiteness check): D + beta R, batch mean
        s2 = s.square()
        kl = (mu.square() + s2 - ls).sum(dim=(1, 2)) - nb * K
        loss = r.square().sum(dim=(1, 2)) / (2.0 * self.sigma2)
        loss.add_(b["half_beta"].view(P) * kl).mul_(inv_n)
        b["loss"].copy_(loss)
        # backward
        r.mul_(inv_n / self.sigma2)  # G
        torch.bmm(r.transpose(1, 2), z1, out=self.gWc)  # [dW, dc]
        torch.bmm(r, W, out=dmu)  # dz
        dls.copy_(dmu).mul_(eps).mul_(s).mul_(0.5)  # dz eps s / 2
        dls.addcmul_(s2.sub_(1.0), b["coef_ls"])  # + beta (s2-1) / (2n)
        dmu.addcmul_(mu, b["coef_mu"])  # + beta mu / n
        torch.bmm(dh.transpose(1, 2), xb1, out=self.gE)  # d[A a; B b] = dh^T [x 1]
        self._adam(b["tmp"], adam_c)

    @torch.no_grad()
    def _adam(self, tmp: torch.Tensor, adam_c: torch.Tensor) -> None:
        # torch.optim.Adam's formula (FastEngine._adam) on all stacked points at once; the
        # step-dependent constants [-lr / bc1, bc2^(1/2)] come in the tensor adam_c.
        b1, b2 = ADAM_BETAS
        self.m.lerp_(self.g, 1.0 - b1)
        self.v.mul_(b2).addcmul_(self.g, self.g, value=1.0 - b2)
        denom = torch.sqrt(self.v, out=tmp).div_(adam_c[1]).add_(ADAM_EPS)
        # p + (value m) / denom, the order of addcdiv's arithmetic
        self.p.add_(torch.mul(self.m, adam_c[0]).div_(denom))

    def _adam_constants(self, t: int) -> torch.Tensor:
        b1, b2 = ADAM_BETAS
        bc1 = 1.0 - b1**t
        bc2_sqrt = (1.0 - b2**t) ** 0.5
        return torch.tensor([-self.lr / bc1, bc2_sqrt], dtype=torch.float64).to(self.dtype)

    def _step(self, nb: int, idx: torch.Tensor, adam_c: torch.Tensor) -> None:
        if self.cuda_graphs and nb == self.bs:  # a short last batch runs eagerly
            graph = self._graphs.get(nb)
            if graph is None:
                graph = self._graphs[nb] = self._capture(nb)
            self._bufs[nb]["idx"].copy_(idx)
            self.adam_c.copy_(adam_c)
            graph.replay()
        else:
            self._update(nb, idx, adam_c)

    def _capture(self, nb: int):  # pragma: no cover - CUDA only
        """One update (which reads only its buffers) captured as a CUDA graph."""
        args = (nb, self._bufs[nb]["idx"], self.adam_c)
        return capture_graph(lambda: self._update(*args), (self.p, self.m, self.v))
