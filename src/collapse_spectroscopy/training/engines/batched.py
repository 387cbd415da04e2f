"""The batched engine: P scan points trained as one batched model (docs/science.md §1, §5).

P models of one family (``model.kind``) that share the data, the architecture, ``sigma2``,
the learning rate and the batch size but not the temperature (``beta``) nor the seeds are
stacked along a leading axis, and every Adam update of all P is one sequence of batched
kernels (``torch.bmm`` and element-wise ops over ``(P, ...)`` tensors) instead of P
sequences. Each point keeps its OWN batch order and its OWN noise generator, so point
``i``'s trajectory is the one its single-point engine follows for it alone, up to rounding
(the batched products sum in another order): what every family shares (the stack, the
window loop, retirement, the per-point state) is :class:`.point_batch.PointBatch`.

:func:`batched_engine` picks the family's engine from the points' ``model.kind``:

``linear``: :class:`BatchedEngine`
    :class:`.torch_engines.FastEngine`'s update over the stacked parameters
    (:class:`.stacked.StackedModels`, ``beta`` per point), validated exactly (the closed
    form of :func:`collapse_spectroscopy.models.linear.expected_loss`, batched); a point's
    state is ``FastEngine.state_dict``'s format (tests/training/test_batched_engine.py:
    1e-10 in float64).
``mlp``: :class:`.batched_mlp.BatchedMLPEngine`
    :class:`.mlp_fast.MLPFastEngine`'s update (:mod:`.mlp_update`) over P stacked MLP VAEs,
    validated on each point's fixed draws as ``mlp`` does (tests/training/test_batched_mlp.py).

:class:`.point_view.PointView` is point ``i`` seen through the engine protocol
(:class:`.base.Engine`), so that the trainer's per-point rule (validation, best weights,
early stopping: :mod:`collapse_spectroscopy.training.protocol`) drives each point
(:mod:`collapse_spectroscopy.training.batched`). :class:`BatchedPointEngine` is a batch of
one, registered as the engine ``batched`` (for either family).

Device-agnostic torch. One update reads every step-dependent value (batch rows, noise,
the Adam step) from buffers filled before it, so that on CUDA the update can be captured
once as a CUDA graph and replayed (``cuda_graphs=True``; off by default, and only on
CUDA): per update, then, one index copy, P noise draws and one graph launch, instead of
~30 kernel launches (linear) or ~10 per layer (MLP).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from collapse_spectroscopy.errors import InputError
from collapse_spectroscopy.models.families import model_kind
from collapse_spectroscopy.models.linear import LinearVAE
from collapse_spectroscopy.training.engines.base import TrainingProblem
from collapse_spectroscopy.training.engines.batched_mlp import BatchedMLPEngine
from collapse_spectroscopy.training.engines.layout import pack, unpack
from collapse_spectroscopy.training.engines.point_batch import PointBatch
from collapse_spectroscopy.training.engines.point_view import PointView
from collapse_spectroscopy.training.engines.stacked import StackedModels

# rows of the validation split per chunk of the batched validation pass, times the number
# of values per row (P (2K + d)): bounds its temporaries to ~4M values (32 MB in float64)
_VALIDATION_VALUES = 1 << 22


class BatchedEngine(StackedModels, PointBatch):
    """P linear-VAE scan points trained as one batched model.

    Built from a sequence of :class:`.base.TrainingProblem` (point ``i`` is
    ``problems[i]``, initialized from its model). :meth:`run_window` runs ``n`` updates
    of every *active* point (those not retired) and returns their losses;
    :meth:`validation_losses` the exact noise-averaged ``(L, D, R)`` of each active point;
    :meth:`view` point ``i`` through the engine protocol.
    """

    kind = "linear"

    def _setup(self, problems: list[TrainingProblem]) -> None:
        n = self.x.shape[0]
        self.x1 = torch.cat([self.x, self.x.new_ones(n, 1)], dim=1)  # biases inside the GEMMs

    def _pack(self, model: LinearVAE, row: torch.Tensor) -> None:
        pack(model, row)

    # ------------------------------------------------------------------ validation
    @torch.no_grad()
    def validation_losses(self) -> dict[int, tuple[float, float, float]]:
        """``{point: (L, D, R)}`` for every active point on the validation split, averaged
        exactly over the noise (:func:`collapse_spectroscopy.models.linear.expected_loss`,
        batched: one pass over the split for all points, accumulated in float64)."""
        if self._validation is not None:
            return self._validation
        P, K, d = len(self.active), self.K, self.d
        E, Wc = self.E, self.Wc
        W, c = Wc[:, :, :K], Wc[:, :, K]
        col_norm2 = W.square().sum(dim=1)  # ||W_j||^2, (P, K)
        n = self.x_val.shape[0]
        chunk = max(1, _VALIDATION_VALUES // (P * (2 * K + d)))
        dist = torch.zeros(P, dtype=torch.float64, device=self.device)
        rate = torch.zeros_like(dist)
        for start in range(0, n, chunk):
            xc = self.x_val[start : start + chunk]
            h = torch.matmul(xc, E[:, :, :d].transpose(1, 2)).add_(E[:, None, :, d])
            mu, logs2 = h[:, :, :K], h[:, :, K:]
            resid = torch.baddbmm(c[:, None, :], mu, W.transpose(1, 2)).sub_(xc)
            var = logs2.exp()
            d_per = resid.square().sum(dim=2).double()
            d_per += torch.bmm(var, col_norm2[:, :, None])[:, :, 0].double()
            kl = 0.5 * (mu.square() + var - 1.0 - logs2)
            dist += d_per.sum(dim=1)
            rate += kl.sum(dim=2).double().sum(dim=1)
        dist = (dist / n / (2.0 * self.sigma2)).tolist()
        rate = (rate / n).tolist()
        self._validation = {
            i: (dist[j] + self.betas[i] * rate[j], dist[j], rate[j])
            for j, i in enumerate(self.active)
        }
        return self._validation

    # ------------------------------------------------------------------ per point
    def sync_point(self, point: int) -> LinearVAE:
        """The model of ``point``, holding its current weights."""
        if point in self.retired:
            return unpack(self.retired[point]["p"].to(self.device), self.models[point])
        return unpack(self._rows(self.p)[self.active.index(point)], self.models[point])

    def _rule_state(self, j: int) -> dict:
        return {**self._point_rows(j), "t": self.t}  # FastEngine.state_dict's format


#: the batched engine of each model.kind it trains (the registry's ``kinds`` of ``batched``)
FAMILY_ENGINES: dict[str, type[PointBatch]] = {"linear": BatchedEngine, "mlp": BatchedMLPEngine}


def batched_engine(problems: Sequence[TrainingProblem], *, cuda_graphs: bool = False) -> PointBatch:
    """The batched engine of the points' family (:data:`FAMILY_ENGINES`, by the first
    point's ``model.kind``; :func:`.point_batch.check_problems` refuses a mix) for
    ``problems``."""
    problems = list(problems)
    if not problems:
        raise InputError("batched engine: no scan points to train (an empty list of problems)")
    kind = model_kind(problems[0].model)
    if kind not in FAMILY_ENGINES:
        raise InputError(f"batched engine: no batched engine for model.kind {kind!r}")
    return FAMILY_ENGINES[kind](problems, cuda_graphs=cuda_graphs)


class BatchedPointEngine(PointView):
    """The engine ``batched`` of the registry: a batch of one point, so that the unchanged
    trainer can drive it (and the protocol tests cover it); several points are trained
    by :func:`collapse_spectroscopy.training.batched.train_scan_points_batched`."""

    def __init__(self, problem: TrainingProblem):
        super().__init__(batched_engine([problem]), 0)

    def run_window(self, n_updates: int) -> np.ndarray:
        return self.batch.run_window(n_updates)[0]
