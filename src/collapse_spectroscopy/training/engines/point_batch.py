"""P scan points as one batched model: what every batched engine shares (docs/science.md §5).

P models of one family and architecture that share the data, ``sigma2``, the learning
rate and the batch size but not the temperature (``beta``) nor the seeds are stacked
along a leading axis, and every Adam update of all P is one sequence of batched kernels
instead of P sequences. :class:`PointBatch` is what does not depend on the family:

- each point keeps its OWN batch order (a :class:`.batches.BatchStream` seeded by its
  shuffle seed) and its OWN noise generator (seeded by its noise seed; per update one
  ``torch.randn(n_b, K)`` draw, exactly as the single-point torch engines draw it), so
  point ``i``'s trajectory is the one the single-point engine follows for it alone, up to
  rounding (the batched products sum in another order);
- the stack: each point's parameters are a row in the single-point engine's flat layout,
  cut into segments (a subclass's :meth:`PointBatch._segments`); the stacked buffers
  (parameters ``p``, gradient ``g``, Adam moments ``m`` and ``v``) keep each segment of
  all active points as one contiguous block (block-major), so that the batched products
  read and write ``(P, ...)`` tensors in place and one Adam update is still one pass over
  one flat vector;
- retirement: a point that stops (early stopping, a non-finite loss) leaves the stack
  (:meth:`PointBatch.retire`) with its final state kept; a point's products never mix with
  another's, so the others' trajectories do not change;
- the state: a point's state (:meth:`PointBatch.point_state`) is in the format of its
  single-point engine's ``state_dict``; the batch's state is every point's and the active
  ones, everything to continue bit for bit;
- the window loop (:meth:`PointBatch.run_window`), with the family's update behind three
  hooks, and :meth:`PointBatch.view`: point ``i`` through the engine protocol
  (:class:`.point_view.PointView`).

The families: :class:`.batched.BatchedEngine` (linear, ``fast``'s update) and
:class:`.batched_mlp.BatchedMLPEngine` (MLP, ``mlp_fast``'s); :func:`.batched.batched_engine`
picks by ``model.kind``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from collapse_spectroscopy.errors import InputError
from collapse_spectroscopy.models.families import model_kind, model_spec
from collapse_spectroscopy.training.engines.base import TrainingProblem
from collapse_spectroscopy.training.engines.batches import BatchStream
from collapse_spectroscopy.training.engines.point_view import ENGINE_NAME, PointView


def _same_data(a: np.ndarray, b: np.ndarray) -> bool:
    return a is b or (a.shape == b.shape and np.array_equal(a, b))


def check_problems(problems: Sequence[TrainingProblem]) -> None:
    """InputError naming the field when the points cannot share one batched model: they
    must share the model's family, shape, architecture, dtype and device, the splits,
    ``sigma2``, the learning rate and the batch size (they may differ in ``beta`` and the
    seeds)."""
    if not problems:
        raise InputError("batched engine: no scan points to train (an empty list of problems)")
    first = problems[0]
    for i, pr in enumerate(problems):
        w, w0 = next(pr.model.parameters()), next(first.model.parameters())
        shared = {
            "model.kind": (model_kind(pr.model), model_kind(first.model)),
            "model shape (d, latents)": (
                (pr.model.d, pr.model.latents),
                (first.model.d, first.model.latents),
            ),
            "model architecture": (model_spec(pr.model), model_spec(first.model)),
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


class PointBatch:
    """P scan points of one family trained as one batched model (the module docstring).

    Built from a sequence of :class:`.base.TrainingProblem` (point ``i`` is
    ``problems[i]``, initialized from its model). A subclass gives the family: ``kind``,
    ``STEP`` (the key of the Adam step in a point's state), :meth:`_setup`,
    :meth:`_segments`, :meth:`_pack`, :meth:`_restack`, the window hooks
    (:meth:`_begin_window`, :meth:`_eps`, :meth:`_advance`, :meth:`_end_window`),
    :meth:`validation_losses`, :meth:`sync_point` and :meth:`_rule_state`.
    """

    name = ENGINE_NAME
    kind = ""  # the model.kind it trains
    STEP = "t"

    def __init__(self, problems: Sequence[TrainingProblem], *, cuda_graphs: bool = False):
        problems = list(problems)
        check_problems(problems)
        first = problems[0]
        if model_kind(first.model) != self.kind:
            raise InputError(
                f"batched engine: {type(self).__name__} trains model.kind {self.kind!r}, "
                f"not {model_kind(first.model)!r}"
            )
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
        self.x = self.tensor(first.x_train)
        self.x_val = self.tensor(first.x_val)
        n = self.x.shape[0]
        self.streams = [BatchStream(n, self.bs, pr.shuffle_seed, self.device) for pr in problems]
        self.gens = [
            torch.Generator(device=self.device).manual_seed(pr.noise_seed) for pr in problems
        ]
        self.retired: dict[int, dict] = {}  # point -> its final state (point_state format)
        self.last_losses: dict[int, np.ndarray] = {}  # point -> losses of the last window
        self._validation: dict[int, tuple[float, float, float]] | None = None
        self._setup(problems)
        self.segments = self._segments(first.model)
        p = torch.zeros(len(problems), sum(self.segments), dtype=self.dtype, device=self.device)
        for i, model in enumerate(self.models):
            self._pack(model, p[i])
        self._stack(list(range(len(problems))), p, torch.zeros_like(p), torch.zeros_like(p), 0)

    def tensor(self, x) -> torch.Tensor:
        return torch.as_tensor(np.asarray(x), dtype=self.dtype, device=self.device)

    @property
    def n_points(self) -> int:
        return len(self.models)

    # ------------------------------------------------------------------ the stack
    def _blocks(self, flat: torch.Tensor, P: int) -> list[torch.Tensor]:
        """The ``(P, size)`` block of each segment of a block-major buffer of P points."""
        out, start = [], 0
        for size in self.segments:
            out.append(flat[start : start + P * size].view(P, size))
            start += P * size
        return out

    def _flat(self, rows: torch.Tensor) -> torch.Tensor:
        """Block-major flat buffer from ``(P, n_params)`` rows (a point's layout)."""
        cuts = np.cumsum([0, *self.segments])
        return torch.cat([rows[:, a:b].reshape(-1) for a, b in zip(cuts, cuts[1:], strict=False)])

    def _rows(self, flat: torch.Tensor) -> torch.Tensor:
        """``(P, n_params)`` rows (a point's layout) from a block-major buffer."""
        return torch.cat(self._blocks(flat, len(self.active)), dim=1)

    def _stack(self, active: list[int], p, m, v, t: int) -> None:
        """Make ``active`` (point numbers, in order) the stacked points, with parameters
        ``p`` and Adam moments ``m``, ``v`` (``(P, n_params)`` rows in that order, each in a
        point's layout) at step ``t``."""
        self.active = list(active)
        self.p, self.m, self.v = self._flat(p), self._flat(m), self._flat(v)
        self.g = torch.zeros_like(self.p)
        self.t = int(t)
        self._restack()

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
        self._begin_window(n_updates)
        start = 0
        gens = [self.gens[i] for i in self.active]
        for k, nb in enumerate(sizes.tolist()):
            eps = self._eps(nb)
            for j, g in enumerate(gens):  # each point's own noise, as its engine draws it
                eps[j].normal_(generator=g)  # = torch.randn(nb, K, generator=g)
            self._advance(k, nb, idx[start : start + P * nb])
            start += P * nb
        out = self._end_window(sizes)  # (P, n_updates), owned (never a view)
        self.t += n_updates
        self._validation = None
        self.last_losses = {i: out[j] for j, i in enumerate(self.active)}
        return out

    # ------------------------------------------------------------------ per point
    def view(self, point: int) -> PointView:
        """Point ``point`` through the engine protocol."""
        return PointView(self, point)

    def point_state(self, point: int) -> dict:
        """``point``'s state in the format of its single-point engine's ``state_dict``
        (copies)."""
        if point in self.retired:
            return _copy_state(self.retired[point])
        return {
            **self._rule_state(self.active.index(point)),
            "batches": self.streams[point].state_dict(),
            "g_noise": self.gens[point].get_state().cpu(),
        }

    def _point_rows(self, j: int) -> dict:
        """Row ``j`` of the stacked parameters and Adam moments, as copies."""
        return {k: self._rows(getattr(self, k))[j].clone() for k in ("p", "m", "v")}

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
        steps = {int(points[i][self.STEP]) for i in active}
        if len(steps) > 1:
            raise InputError(f"batched engine: the active points are at different steps {steps}")
        for i, s in enumerate(points):
            self.streams[i].load_state_dict(s["batches"])
            self.gens[i].set_state(s["g_noise"].to(self.gens[i].get_state().device))
        self.retired = {i: _copy_state(points[i]) for i in range(self.n_points) if i not in active}

        def rows(key):
            if not active:
                return self.p.new_zeros(0, sum(self.segments))
            return torch.stack([points[i][key] for i in active]).to(self.device, self.dtype)

        self._stack(active, rows("p"), rows("m"), rows("v"), steps.pop() if steps else 0)
        self._validation = None

    def load_point_state(self, point: int, state: dict) -> None:
        """Load one point's state (its single-point engine's format) into a batch of one."""
        if self.n_points != 1:
            raise InputError("batched engine: a single point's state loads into a batch of one")
        self.load_state_dict({"points": [state], "active": [point]})

    # ------------------------------------------------------------------ the family's
    def _setup(self, problems: list[TrainingProblem]) -> None:
        """What the family's update reads besides (called before the stack is made)."""

    def _segments(self, model) -> list[int]:
        raise NotImplementedError

    def _pack(self, model, row: torch.Tensor) -> None:
        raise NotImplementedError

    def _restack(self) -> None:
        """The views and buffers of the stack :meth:`_stack` just made."""
        raise NotImplementedError

    def _rule_state(self, j: int) -> dict:
        raise NotImplementedError


def _copy_state(state: dict) -> dict:
    out = {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in state.items()}
    b = state["batches"]
    out["batches"] = {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in b.items()}
    return out


def capture_graph(update, state: Sequence[torch.Tensor]):  # pragma: no cover - CUDA only
    """``update()`` (which reads only tensors filled before it) captured as a CUDA graph.
    It runs once on a side stream first (the warm-up CUDA graphs require) and once more
    while captured; the ``state`` it changes (weights, Adam moments and step) is restored,
    so capturing changes nothing."""
    saved = [t.clone() for t in state]
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        update()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        update()
    for t, s in zip(state, saved, strict=True):
        t.copy_(s)
    return graph
