"""The batched engine: P scan points trained as one batched model (docs/science.md §1, §5).

P linear VAEs that share the data, ``K``, ``sigma2``, the learning rate and the batch size
but not the temperature (``beta``) nor the seeds are stacked along a leading axis, and
every Adam update of all P is one sequence of batched kernels (``torch.bmm`` and
element-wise ops over ``(P, ...)`` tensors) instead of P sequences. Each point keeps
its OWN batch order (a :class:`.batches.BatchStream` seeded by its shuffle seed) and its
OWN noise generator (seeded by its noise seed, drawn ``torch.randn(n_b, K)`` per update
exactly as :class:`.torch_engines.FastEngine` draws it), so point ``i``'s trajectory is the
one ``FastEngine`` follows for point ``i`` alone, up to rounding (the batched products sum
in another order; tests/training/test_batched_engine.py: 1e-10 in float64).

The stacked parameters and the batched Adam update (FastEngine's gradients, ``beta`` per
point) are :class:`.stacked.StackedModels`, which this engine extends with the points'
batches and noise, the validation pass and the per-point state: a point's state
(:meth:`BatchedEngine.point_state`) is in the layout of :mod:`.layout`, the very format of
``FastEngine.state_dict``.

A point that stops (early stopping, a non-finite loss) is *retired*
(:meth:`BatchedEngine.retire`): its final state is kept and it leaves the stack, so it is
no longer updated and the others' batched products no longer include it; a point's
products never mix with another's, so the others' trajectories do not change.

:class:`.point_view.PointView` is point ``i`` seen through the engine protocol
(:class:`.base.Engine`), so that the trainer's per-point rule (validation, best weights,
early stopping: :mod:`collapse_spectroscopy.training.protocol`) drives each point
(:mod:`collapse_spectroscopy.training.batched`). :class:`BatchedPointEngine` is a batch of
one, registered as the engine ``batched``.

Device-agnostic torch. One update reads every step-dependent value (batch rows, noise,
the Adam bias corrections) from buffers filled before it, so that on CUDA the update can
be captured once as a CUDA graph and replayed (``cuda_graphs=True``; off by default, and
only on CUDA): per update, then, one index copy, P noise draws, one constants copy and one
graph launch, instead of ~30 kernel launches.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from collapse_spectroscopy.errors import InputError
from collapse_spectroscopy.models.linear import LinearVAE
from collapse_spectroscopy.training.engines.base import TrainingProblem
from collapse_spectroscopy.training.engines.batches import BatchStream
from collapse_spectroscopy.training.engines.layout import n_params, pack, unpack
from collapse_spectroscopy.training.engines.point_view import ENGINE_NAME, PointView
from collapse_spectroscopy.training.engines.stacked import StackedModels

# rows of the validation split per chunk of the batched validation pass, times the number
# of values per row (P (2K + d)): bounds its temporaries to ~4M values (32 MB in float64)
_VALIDATION_VALUES = 1 << 22


def _same_data(a: np.ndarray, b: np.ndarray) -> bool:
    return a is b or (a.shape == b.shape and np.array_equal(a, b))


def check_problems(problems: Sequence[TrainingProblem]) -> None:
    """InputError naming the field when the points cannot share one batched model: they
    must share the splits, the model's shape, dtype and device, ``sigma2``, the learning
    rate and the batch size (they may differ in ``beta`` and the seeds)."""
    if not problems:
        raise InputError("batched engine: no scan points to train (an empty list of problems)")
    first = problems[0]
    for i, pr in enumerate(problems):
        if not isinstance(pr.model, LinearVAE):
            raise InputError(
                f"batched engine: point {i} has a {type(pr.model).__name__}; it trains the "
                "linear VAE only (model.kind: linear)"
            )
        w, w0 = next(pr.model.parameters()), next(first.model.parameters())
        shared = {
            "model shape (d, latents)": (
                (pr.model.d, pr.model.latents),
                (first.model.d, first.model.latents),
            ),
            "model dtype": (w.dtype, w0.dtype),
            "model device": (w.device, w0.device),
            "sigma2": (pr.sigma2, first.sigma2),
            "learning_rate": (pr.learning_rate, first.learning_rate),
            "batch_size": (pr.batch_size, first.batch_size),
        }
        for what, (mine, theirs) in shared.items():
            if mine != theirs:
                raise InputError(
                    f"batched engine: point {i} has {what} {mine!r}, point 0 {theirs!r}: "
                    "the points of one batch must share it"
                )
        for split in ("x_train", "x_val"):
            if not _same_data(getattr(pr, split), getattr(first, split)):
                raise InputError(
                    f"batched engine: point {i} has another {split} than point 0: "
                    "the points of one batch train on the same data"
                )


class BatchedEngine(StackedModels):
    """P linear-VAE scan points trained as one batched model.

    Built from a sequence of :class:`.base.TrainingProblem` (point ``i`` is
    ``problems[i]``, initialized from its model). :meth:`run_window` runs ``n`` updates
    of every *active* point (those not retired) and returns their losses;
    :meth:`validation_losses` the exact noise-averaged ``(L, D, R)`` of each active point;
    :meth:`view` point ``i`` through the engine protocol.
    """

    name = ENGINE_NAME

    def __init__(self, problems: Sequence[TrainingProblem], *, cuda_graphs: bool = False):
        problems = list(problems)
        check_problems(problems)
        first = problems[0]
        self.models = [pr.model for pr in problems]
        w = next(first.model.parameters())
        self.device, self.dtype = w.device, w.dtype
        if cuda_graphs and self.device.type != "cuda":
            raise InputError(
                f"batched engine: cuda_graphs needs a CUDA device, not {self.device} "
                "(leave it off on the CPU)"
            )
        self.cuda_graphs = bool(cuda_graphs)
        self.K, self.d = first.model.latents, first.model.d
        self.sigma2, self.lr = float(first.sigma2), float(first.learning_rate)
        self.bs = int(first.batch_size)
        self.betas = [float(pr.beta) for pr in problems]

        def tensor(x):
            return torch.as_tensor(np.asarray(x), dtype=self.dtype, device=self.device)

        x = tensor(first.x_train)
        n = x.shape[0]
        self.x1 = torch.cat([x, x.new_ones(n, 1)], dim=1)  # [x, 1]: biases inside the GEMMs
        self.x_val = tensor(first.x_val)
        self.streams = [BatchStream(n, self.bs, pr.shuffle_seed, self.device) for pr in problems]
        self.gens = [
            torch.Generator(device=self.device).manual_seed(pr.noise_seed) for pr in problems
        ]
        self.retired: dict[int, dict] = {}  # point -> its final state (point_state format)
        self.last_losses: dict[int, np.ndarray] = {}  # point -> losses of the last window
        self._validation: dict[int, tuple[float, float, float]] | None = None
        p = torch.zeros(len(problems), n_params(self.d, self.K), dtype=self.dtype)
        p = p.to(self.device)
        for i, model in enumerate(self.models):
            pack(model, p[i])
        self._stack(list(range(len(problems))), p, torch.zeros_like(p), torch.zeros_like(p), 0)

    def retire(self, point: int) -> None:
        """Stop updating ``point``: keep its final state, remove it from the stack."""
        if point not in self.active:
            return
        self.retired[point] = self.point_state(point)
        keep = [i for i in self.active if i != point]
        rows = [self.active.index(i) for i in keep]
        rows = torch.tensor(rows, dtype=torch.long, device=self.device)
        p, m, v = (self._rows(t)[rows] for t in (self.p, self.m, self.v))
        self._stack(keep, p, m, v, self.t)
        self._validation = None

    @property
    def n_points(self) -> int:
        return len(self.models)

    # ------------------------------------------------------------------ training
    def run_window(self, n_updates: int) -> np.ndarray:
        """``n_updates`` Adam updates of every active point, each on its own next batches
        with its own fresh noise; the batch losses, ``(len(active), n_updates)`` (rows in
        the order of :attr:`active`; also kept per point in :attr:`last_losses`)."""
        P = len(self.active)
        rows, sizes = [], None
        for i in self.active:
            r, sizes = self.streams[i].window(n_updates)
            rows.append(r)
        rows = np.stack(rows)  # (P, sum of the batch sizes)
        # update-major: the P batches of update k are one contiguous run of rows
        ends = np.cumsum(sizes)
        runs = zip(ends, sizes, strict=True)
        idx = np.concatenate([rows[:, e - nb : e].ravel() for e, nb in runs])
        idx = torch.as_tensor(idx).to(self.device)  # one copy per window
        consts = torch.stack([self._adam_constants(self.t + k + 1) for k in range(n_updates)])
        consts = consts.to(self.device)
        losses = self.p.new_empty(n_updates, P)
        start = 0
        gens = [self.gens[i] for i in self.active]
        for k, nb in enumerate(sizes.tolist()):
            b = self._buffers(nb)
            eps = b["eps"]
            for j, g in enumerate(gens):  # each point's own noise, as FastEngine draws it
                eps[j].normal_(generator=g)  # = torch.randn(nb, K, generator=g)
            self._step(nb, idx[start : start + P * nb], consts[k])
            losses[k].copy_(b["loss"])
            start += P * nb
        self.t += n_updates
        self._validation = None
        out = losses.T.cpu().numpy().copy()  # (P, n_updates), owned (never a view)
        self.last_losses = {i: out[j] for j, i in enumerate(self.active)}
        return out

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
    def view(self, point: int) -> PointView:
        """Point ``point`` through the engine protocol."""
        return PointView(self, point)

    def sync_point(self, point: int) -> LinearVAE:
        """The model of ``point``, holding its current weights."""
        if point in self.retired:
            return unpack(self.retired[point]["p"].to(self.device), self.models[point])
        return unpack(self._rows(self.p)[self.active.index(point)], self.models[point])

    def point_state(self, point: int) -> dict:
        """``point``'s state in the format of ``FastEngine.state_dict`` (copies)."""
        if point in self.retired:
            return _copy_state(self.retired[point])
        j = self.active.index(point)
        return {
            "p": self._rows(self.p)[j].clone(),  # one row, not the P rows' storage
            "m": self._rows(self.m)[j].clone(),
            "v": self._rows(self.v)[j].clone(),
            "t": self.t,
            "batches": self.streams[point].state_dict(),
            "g_noise": self.gens[point].get_state().cpu(),
        }

    def state_dict(self) -> dict:
        """Every point's state (:meth:`point_state`; a retired point's final one) and the
        active points: everything to continue bit for bit."""
        return {
            "points": [self.point_state(i) for i in range(self.n_points)],
            "active": list(self.active),
        }

    def load_state_dict(self, state: dict) -> None:
        points, active = state["points"], [int(i) for i in state["active"]]
        if len(points) != self.n_points:
            raise InputError(
                f"batched engine: a state of {len(points)} points cannot be loaded into a "
                f"batch of {self.n_points}"
            )
        steps = {int(points[i]["t"]) for i in active}
        if len(steps) > 1:
            raise InputError(f"batched engine: the active points are at different steps {steps}")
        for i, s in enumerate(points):
            self.streams[i].load_state_dict(s["batches"])
            self.gens[i].set_state(s["g_noise"].to(self.gens[i].get_state().device))
        self.retired = {i: _copy_state(points[i]) for i in range(self.n_points) if i not in active}

        def rows(key):
            if not active:
                return self.p.new_zeros(0, n_params(self.d, self.K))
            return torch.stack([points[i][key] for i in active]).to(self.device, self.dtype)

        self._stack(active, rows("p"), rows("m"), rows("v"), steps.pop() if steps else 0)
        self._validation = None

    def load_point_state(self, point: int, state: dict) -> None:
        """Load one point's state (``FastEngine.state_dict`` format) into a batch of one."""
        if self.n_points != 1:
            raise InputError("batched engine: a single point's state loads into a batch of one")
        self.load_state_dict({"points": [state], "active": [point]})


def _copy_state(state: dict) -> dict:
    out = {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in state.items()}
    b = state["batches"]
    out["batches"] = {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in b.items()}
    return out


class BatchedPointEngine(PointView):
    """The engine ``batched`` of the registry: a batch of one point, so that the unchanged
    trainer can drive it (and the protocol tests cover it); several points are trained
    by :func:`collapse_spectroscopy.training.batched.train_scan_points_batched`."""

    def __init__(self, problem: TrainingProblem):
        super().__init__(BatchedEngine([problem]), 0)

    def run_window(self, n_updates: int) -> np.ndarray:
        return self.batch.run_window(n_updates)[0]
