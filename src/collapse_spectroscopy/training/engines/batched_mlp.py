"""The batched engine of the MLP VAE: P scan points as one stacked MLP (docs/science.md §5, §9).

P MLP VAEs of one architecture (``d``, ``K``, ``model.hidden``, ``model.activation``) that
share the data, ``sigma2``, the learning rate and the batch size but not ``beta`` nor the
seeds, trained as one batched model (:class:`.point_batch.PointBatch`: each point's own
batches, noise, Adam state and retirement). The update is ``mlp_fast``'s
(:class:`.mlp_update.MLPUpdate`: the same equations, forward and backward written out)
on weights with a leading P axis: every layer's product one ``torch.baddbmm`` (forward) or
``torch.bmm`` (backward) over the P points, every activation and its derivative one ATen
kernel over ``(P, n_b, w)``, ``beta`` a ``(P, 1, 1)`` tensor, and Adam one
``torch._fused_adam_`` call over the stacked flat vector (all active points share the
step count). Point ``i`` draws its batches and its noise exactly as ``mlp_fast`` (and
``mlp``) draw them for it alone, so it follows their trajectory up to rounding
(tests/training/test_batched_mlp.py: 1e-10 in float64).

**Validation** is ``mlp``'s fixed-draw estimate (:func:`.mlp.fixed_draw_loss`) of each
active point, on its own draws (seeded by its noise seed), run on the point's synced
model: the very function and draws of its single-point engine, so equal weights give an
equal estimate bit for bit. It is not batched: its chunks (16,384 validation rows) are
already large products, and the draws of a chunk depend on the chunk size.

A point's state is ``mlp_fast``'s (``p``, ``m``, ``v``, ``step``, the batch stream, the
noise generator). On CUDA, with ``cuda_graphs``, a full-batch update (the index gather,
the forward and backward passes, the fused Adam step) is captured once as a CUDA graph
and replayed; a short last batch of an epoch runs eagerly.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn.utils import parameters_to_vector

from collapse_spectroscopy.models.mlp import MLPVAE
from collapse_spectroscopy.training.engines.base import TrainingProblem
from collapse_spectroscopy.training.engines.mlp import fixed_draw_loss, validation_seed
from collapse_spectroscopy.training.engines.mlp_update import (
    MLPUpdate,
    Net,
    copy_into,
    native_kernels,
    window_losses,
)
from collapse_spectroscopy.training.engines.point_batch import PointBatch, capture_graph


class BatchedMLPEngine(MLPUpdate, PointBatch):
    """P MLP-VAE scan points trained as one batched model (the module docstring);
    :meth:`run_window`, :meth:`validation_losses` and :meth:`view` as for
    :class:`.batched.BatchedEngine`."""

    kind = "mlp"
    STEP = "step"  # mlp_fast's state

    def _setup(self, problems: list[TrainingProblem]) -> None:
        model = problems[0].model
        self.hidden, self.act = list(model.hidden), model.activation
        self.val_seeds = [validation_seed(pr.noise_seed) for pr in problems]
        # GELU on the CPU: torch's own kernels, not oneDNN's (as mlp_fast: native_kernels)
        self.native = self.act == "gelu" and self.device.type == "cpu"
        self._np_dtype = torch.empty((), dtype=self.dtype).numpy().dtype  # of the losses

    def _segments(self, model: MLPVAE) -> list[int]:
        return [param.numel() for param in model.parameters()]

    @torch.no_grad()
    def _pack(self, model: MLPVAE, row: torch.Tensor) -> None:
        row.copy_(parameters_to_vector(model.parameters()))

    def _restack(self) -> None:
        P, K, d, act = len(self.active), self.K, self.d, self.act
        self.lead = (P,)
        self.enc = Net([d, *self.hidden, 2 * K], self.p, self.g, 0, act, (K, K), points=P)
        start = self.enc.end
        self.dec = Net([K, *self.hidden[::-1], d], self.p, self.g, start, act, (d,), points=P)
        self.step_t = torch.full((), float(self.t), dtype=torch.float32, device=self.device)
        self._beta_active = np.array([self.betas[i] for i in self.active])
        self._plans: dict = {}  # buffers and plans per batch size
        self._graphs: dict[int, torch.cuda.CUDAGraph] = {}

    def _coefficients(self, nb: int) -> tuple[torch.Tensor, torch.Tensor]:
        # per point, each as mlp_fast computes its scalar
        def per_point(values):
            t = torch.tensor(values, dtype=torch.float64).to(self.dtype)
            return t.to(self.device).view(-1, 1, 1)

        betas = self._beta_active.tolist()
        return per_point([0.5 * b / nb for b in betas]), per_point([b / nb for b in betas])

    def _make_plan(self, nb: int):
        plan = super()._make_plan(nb)
        P = self.lead[0]
        plan.sums = self.p.new_empty(4, P)  # the update's sums, per point
        plan.idx = torch.zeros(P * nb, dtype=torch.long, device=self.device)  # graphs' rows
        return plan

    # ------------------------------------------------------------------ the window
    def run_window(self, n_updates: int) -> np.ndarray:
        with native_kernels(self.native):
            return super().run_window(n_updates)

    def _begin_window(self, n_updates: int) -> None:
        self._wsums = self.p.new_empty(n_updates, 4, len(self.active))

    def _eps(self, nb: int) -> torch.Tensor:
        return self._plan(nb).eps

    def _advance(self, k: int, nb: int, idx: torch.Tensor) -> None:
        plan = self._plan(nb)
        if self.cuda_graphs and nb == self.bs:  # a short last batch runs eagerly
            plan.idx.copy_(idx)
            graph = self._graphs.get(nb)
            if graph is None:  # pragma: no cover - CUDA only
                state = (self.p, self.m, self.v, self.step_t)
                graph = capture_graph(lambda: self._update(plan, plan.idx), state)
                self._graphs[nb] = graph
            graph.replay()
        else:
            self._update(plan, idx)
        self._wsums[k].copy_(plan.sums)

    def _update(self, plan, idx: torch.Tensor) -> None:
        """One update of every stacked point on the rows ``idx`` (``P n_b``, point by
        point) and the noise in the plan's ``eps``: reads tensors only (capturable)."""
        torch.index_select(self.x, 0, idx, out=plan.xb.view(-1, self.d))
        self.step(plan.sums)

    def _end_window(self, sizes: np.ndarray) -> np.ndarray:
        losses = window_losses(
            self._wsums, sizes, self.sigma2, self._beta_active, self.K, self._np_dtype
        )
        return losses.T.copy()  # (P, n_updates)

    # ------------------------------------------------------------------ validation
    def validation_losses(self) -> dict[int, tuple[float, float, float]]:
        """``{point: (L, D, R)}`` for every active point: its fixed-draw estimate
        (:func:`.mlp.fixed_draw_loss`, the draws of its own validation seed)."""
        if self._validation is None:
            self._validation = {
                i: fixed_draw_loss(
                    self.sync_point(i), self.x_val, self.betas[i], self.sigma2, self.val_seeds[i]
                )
                for i in self.active
            }
        return self._validation

    # ------------------------------------------------------------------ per point
    def sync_point(self, point: int) -> MLPVAE:
        """The model of ``point``, holding its current weights (copies)."""
        if point in self.retired:
            flat = self.retired[point]["p"].to(self.device)
        else:
            flat = self._rows(self.p)[self.active.index(point)]
        return copy_into(self.models[point], flat)

    def _rule_state(self, j: int) -> dict:
        step = torch.full((), float(self.t), dtype=torch.float32, device=self.device)
        return {**self._point_rows(j), "step": step}  # mlp_fast's state_dict format
