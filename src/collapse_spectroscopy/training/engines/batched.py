"""The batched engine: P scan points trained as one batched model (docs/science.md §1, §5).

P linear VAEs that share the data, ``K``, ``sigma2``, the learning rate and the batch size
but not the temperature (``beta``) nor the seeds are stacked along a leading axis, and
every Adam update of all P is one sequence of batched kernels (``torch.bmm`` and
element-wise ops over ``(P, ...)`` tensors) instead of P sequences. Each point keeps
its OWN batch order (a :class:`.batches.BatchStream` seeded by its shuffle seed) and its
OWN noise generator (seeded by its noise seed, drawn ``torch.randn(n_b, K)`` per update
exactly as :class:`.torch_engines.FastEngine` draws it), so point ``i``'s trajectory is the
one ``FastEngine`` follows for point ``i`` alone, up to rounding (the batched products sum
in another order; tests/test_batched_engine.py: 1e-10 in float64).

The gradients are FastEngine's (see :mod:`.torch_engines`), with ``beta`` a per-point
``(P, 1, 1)`` tensor and the biases inside the products (``h = [x 1] E^T``,
``xhat = [z 1] Wc^T``, ``d[E] = dh^T [x 1]``). The parameters, gradients and Adam moments
are each one flat buffer, the encoders ``E`` of all points then their decoders ``Wc``, so
that one Adam update is still five vector operations; a point's state
(:meth:`BatchedEngine.point_state`) is in the layout of :mod:`.layout`, the very format of
``FastEngine.state_dict``.

A point that stops (early stopping, a non-finite loss) is *retired*
(:meth:`BatchedEngine.retire`): its final state is kept and it leaves the stack, so it is
no longer updated and the others' batched products no longer include it; a point's
products never mix with another's, so the others' trajectories do not change.

:class:`PointView` is point ``i`` seen through the engine protocol
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
from collapse_spectroscopy.training.engines.layout import (
    ADAM_BETAS,
    ADAM_EPS,
    n_params,
    pack,
    unpack,
)

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


class BatchedEngine:
    """P linear-VAE scan points trained as one batched model.

    Built from a sequence of :class:`.base.TrainingProblem` (point ``i`` is
    ``problems[i]``, initialized from its model). :meth:`run_window` runs ``n`` updates
    of every *active* point (those not retired) and returns their losses;
    :meth:`validation_losses` the exact noise-averaged ``(L, D, R)`` of each active point;
    :meth:`view` point ``i`` through the engine protocol.
    """

    name = "batched"

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

    # ------------------------------------------------------------------ the stack
    # The stacked buffers are block-major: [E of every point | Wc of every point], so that
    # E is one contiguous (P, 2K, d+1) tensor and Wc one (P, d, K+1) tensor (the batched
    # products write their gradients in place), and the Adam update is still one pass
    # over one flat vector. A point's row in the layout of .layout (FastEngine's) is
    # gathered from it (_rows) and scattered back (_flat).
    def _split(self, flat: torch.Tensor, P: int):
        K, d = self.K, self.d
        n_enc = P * 2 * K * (d + 1)
        return flat[:n_enc].view(P, 2 * K, d + 1), flat[n_enc:].view(P, d, K + 1)

    def _flat(self, rows: torch.Tensor) -> torch.Tensor:
        """Block-major flat buffer from ``(P, n_params)`` rows in the layout of .layout."""
        n_enc = 2 * self.K * (self.d + 1)
        return torch.cat([rows[:, :n_enc].reshape(-1), rows[:, n_enc:].reshape(-1)])

    def _rows(self, flat: torch.Tensor) -> torch.Tensor:
        """``(P, n_params)`` rows in the layout of .layout from a block-major buffer."""
        P = len(self.active)
        E, Wc = self._split(flat, P)
        return torch.cat([E.reshape(P, -1), Wc.reshape(P, -1)], dim=1)

    def _stack(self, active: list[int], p, m, v, t: int) -> None:
        """Make ``active`` (point numbers, in order) the stacked points, with parameters
        ``p`` and Adam moments ``m``, ``v`` (``(P, n_params)`` rows in that order, each in
        the layout of .layout) at step ``t``."""
        self.active = list(active)
        P = len(self.active)
        self.p, self.m, self.v = self._flat(p), self._flat(m), self._flat(v)
        self.g = torch.zeros_like(self.p)
        self.t = int(t)
        self.E, self.Wc = self._split(self.p, P)
        self.gE, self.gWc = self._split(self.g, P)
        self._beta_list = [self.betas[i] for i in self.active]
        # the Adam step's constants, [-lr / bc1, bc2^(1/2)], filled before each update
        self.adam_c = self.p.new_zeros(2)
        self._bufs: dict[int, dict] = {}  # temporaries per batch size
        self._graphs: dict[int, torch.cuda.CUDAGraph] = {}

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
        """Capture one update (which reads only its buffers) as a CUDA graph. The
        capture runs the update once on a side stream first (warm-up, as CUDA graphs
        require) on copies, so the weights are not changed by capturing."""
        saved = [t.clone() for t in (self.p, self.m, self.v)]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        args = (nb, self._bufs[nb]["idx"], self.adam_c)
        with torch.cuda.stream(side):
            self._update(*args)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._update(*args)
        for t, s in zip((self.p, self.m, self.v), saved, strict=True):
            t.copy_(s)
        return graph

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


class PointView:
    """Point ``point`` of a :class:`BatchedEngine` through the engine protocol
    (:class:`.base.Engine`), for the trainer's per-point functions.

    The batch runs all its points at once, so :meth:`run_window` does not run anything:
    it returns this point's losses of the window the batch just ran (the batched trainer
    runs the batch, then hands each point's losses to the trainer's rule through its view).
    """

    name = BatchedEngine.name

    def __init__(self, batch: BatchedEngine, point: int):
        self.batch, self.point = batch, int(point)

    def run_window(self, n_updates: int) -> np.ndarray:
        losses = self.batch.last_losses.get(self.point)
        if losses is None or losses.shape[0] != n_updates:
            raise RuntimeError(
                f"point {self.point} did not run the batch's last window of {n_updates} updates"
            )
        return losses

    def validation_loss(self) -> tuple[float, float, float]:
        return self.batch.validation_losses()[self.point]

    def sync_model(self) -> LinearVAE:
        return self.batch.sync_point(self.point)

    def state_dict(self) -> dict:
        return self.batch.point_state(self.point)

    def load_state_dict(self, state: dict) -> None:
        self.batch.load_point_state(self.point, state)


class BatchedPointEngine(PointView):
    """The engine ``batched`` of the registry: a batch of one point, so that the unchanged
    trainer can drive it (and the protocol tests cover it); several points are trained
    by :func:`collapse_spectroscopy.training.batched.train_scan_points_batched`."""

    def __init__(self, problem: TrainingProblem):
        super().__init__(BatchedEngine([problem]), 0)

    def run_window(self, n_updates: int) -> np.ndarray:
        return self.batch.run_window(n_updates)[0]
