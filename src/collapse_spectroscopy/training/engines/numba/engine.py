"""The ``numba`` engine: the engine protocol on top of the compiled window of updates.

**Noise.** The engine draws the reparameterization noise itself (:mod:`.rng`), seeded by
the problem's noise seed: the distribution of the torch engines' noise, not their draws.
For tests, :meth:`NumbaEngine.run_batches` takes explicit batches and noise, and then
the updates follow the torch engines on the same batches and noise.

**Validation.** :meth:`NumbaEngine.validation_loss` gives the loss of
:func:`collapse_spectroscopy.models.linear.expected_loss` (averaged exactly over the noise) from
the validation split's second moments, computed once per run in float64: only
``sum_x exp(logs2(x))`` needs a pass over the samples (:func:`.update.variance_sums`). At
WorldClim sizes a torch validation pass costs as much as a whole window of updates; this
one costs a tenth of that.

**Averaged weights.** With ``average`` ``ema`` or ``polyak`` (:mod:`..averaging`) the
compiled window folds the weights after every update into a float64 running average;
validation and :meth:`NumbaEngine.sync_model` then see the averaged weights (rounded to the
training dtype), and the state carries the average.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

from collapse_spectroscopy.errors import InputError
from collapse_spectroscopy.models.linear import LinearVAE
from collapse_spectroscopy.training.engines.averaging import numpy_average, numpy_state
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
from collapse_spectroscopy.training.engines.numba.rng import LANES, seed_state
from collapse_spectroscopy.training.engines.numba.update import VAL_CHUNK, run_window, variance_sums

CALL_UPDATES = 4096  # updates per compiled call at most: the row indices stay small


class ValidationSet:
    """A validation split prepared for :meth:`NumbaEngine.expected_loss`: its second
    moments ``S = sum_x [x; 1] [x; 1]^T`` (float64, exact products of the data) and the
    data in feature-major blocks. Made once per training run."""

    def __init__(self, x: np.ndarray, dtype):
        x = np.asarray(x, dtype=dtype)
        n, d = x.shape
        x1 = np.ones((n, d + 1))
        x1[:, :d] = x
        self.S = x1.T @ x1
        self.n = n
        nc = -(-n // VAL_CHUNK)
        blocks = np.zeros((nc * VAL_CHUNK, d + 1), dtype=dtype)
        blocks[:n] = x1
        self.chunks = np.ascontiguousarray(blocks.reshape(nc, VAL_CHUNK, d + 1).transpose(0, 2, 1))
        self.counts = np.full(nc, VAL_CHUNK, dtype=np.int64)
        self.counts[-1] = n - (nc - 1) * VAL_CHUNK


#: dtypes whose entry points this process has compiled or loaded (:meth:`NumbaEngine._warm_up`)
_READY: set = set()


class NumbaEngine:
    """Jitted engine (the package docstring): the protocol of :class:`..base.Engine`.

    Parameters, gradient and Adam moments are numpy arrays in the flat layout of
    :mod:`..layout`; the state adds the batch stream, the noise generator's lanes and,
    with averaging on, the running average.
    """

    name = "numba"
    averages = True  # training.average ema and polyak (module docstring)

    def __init__(self, problem: TrainingProblem):
        model = problem.model
        w = model.enc_mean.weight
        if w.device.type != "cpu":
            raise InputError(
                f"training.engine = 'numba' runs on the CPU, but the model is on {w.device}: "
                "set training.device to 'cpu' or use the 'fast' engine on a GPU"
            )
        self.model, self.beta, self.sigma2 = model, float(problem.beta), float(problem.sigma2)
        self.K, self.d = K, d = model.latents, model.d
        self.dtype = {torch.float32: np.float32, torch.float64: np.float64}[w.dtype]
        self.x = np.ascontiguousarray(problem.x_train, dtype=self.dtype)
        self.val = ValidationSet(problem.x_val, self.dtype)
        self.batches = BatchStream(self.x.shape[0], problem.batch_size, problem.shuffle_seed)
        self.noise_state = seed_state(problem.noise_seed)
        self.p = np.zeros(n_params(d, K), dtype=self.dtype)
        self.g = np.zeros_like(self.p)
        self.m = np.zeros_like(self.p)
        self.v = np.zeros_like(self.p)
        self.t = 0
        self._p_t = torch.from_numpy(self.p)  # shares memory: pack and unpack through it
        pack(model, self._p_t)
        lr = float(problem.learning_rate)
        self.hyper = np.array([self.beta, self.sigma2, lr, *ADAM_BETAS, ADAM_EPS])
        self._nb_max = 0
        self._no_noise = np.zeros((0, K), dtype=self.dtype)
        self._ls = np.empty((K, VAL_CHUNK), dtype=self.dtype)
        self.average = problem.average
        self.avg_state = numpy_state(problem.average, problem.average_horizon, self.p)
        self._warm_up()

    def _warm_up(self) -> None:
        """Compile (first run on a machine) or load from numba's on-disk cache the entry
        points for this dtype, before training starts: so that a job's log says why its
        first minute is silent, and the training's updates/s leaves the compile out.
        Zero updates and zero validation chunks: nothing of the state changes."""
        if self.dtype in _READY:
            return
        fresh = not Path(run_window._cache._cache_file._index_path).exists()
        if fresh:
            print(
                "compiling the training kernels (first run only: 20 s to a few minutes; "
                "later runs load them from numba's cache)",
                file=sys.stderr,
                flush=True,
            )
        t0 = time.perf_counter()
        self.run_batches(np.zeros(0, np.int64), np.zeros(0, np.int64))
        variance_sums(self.val.chunks[:0], self.val.counts[:0], self.p, self.d, self.K, self._ls)
        took = time.perf_counter() - t0
        how = "compiled" if run_window.stats.cache_misses else "loaded from the cache"
        print(f"training kernels {how} in {took:.1f} s", file=sys.stderr, flush=True)
        _READY.add(self.dtype)

    def run_window(self, n_updates: int) -> np.ndarray:
        chunks = [min(CALL_UPDATES, n_updates - k) for k in range(0, n_updates, CALL_UPDATES)]
        return np.concatenate([self.run_batches(*self.batches.window(k)) for k in chunks])

    def run_batches(
        self, rows: np.ndarray, sizes: np.ndarray, noise: np.ndarray | None = None
    ) -> np.ndarray:
        """Run ``len(sizes)`` updates; update ``u`` uses the training rows
        ``rows[start_u : start_u + sizes[u]]``. Returns the per-update batch losses.

        ``noise`` (optional, ``(len(rows), K)``): explicit reparameterization noise, one
        row per sample, as ``torch.randn(n_b, K)`` gives it; by default the engine draws it.
        """
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        sizes = np.ascontiguousarray(sizes, dtype=np.int64)
        if sizes.size and (sizes.min() < 1 or sizes.sum() != rows.size):
            raise ValueError("run_batches: sizes must be >= 1 and sum to len(rows)")
        if rows.size and (rows.min() < 0 or rows.max() >= self.x.shape[0]):
            raise IndexError("run_batches: a row index is outside the data")
        if noise is None:
            noise = self._no_noise
        else:
            noise = np.ascontiguousarray(noise, dtype=self.dtype)
            if noise.shape != (rows.size, self.K):
                raise ValueError(f"run_batches: noise must be {(rows.size, self.K)}")
        self._workspace(int(sizes.max()) if sizes.size else 1)
        losses = np.empty(sizes.size, dtype=self.dtype)
        work = (self.x1T, self.hT, self.zT, self.ebuf, self.GT, self.noise_state, self.ubuf)
        adam = (self.p, self.g, self.m, self.v, self.t, self.hyper)
        a = self.avg_state
        average = (a["params"], a["avg"], a["ring"], a["counters"])
        run_window(self.x, rows, sizes, *adam, self.d, self.K, *work, noise, losses, *average)
        self.t += int(sizes.size)
        return losses

    def _workspace(self, nb_max: int) -> None:
        if nb_max > self._nb_max:
            K, d, dt = self.K, self.d, self.dtype
            self.x1T = np.empty((d + 1, nb_max), dtype=dt)
            self.hT = np.empty((2 * K, nb_max), dtype=dt)
            self.zT = np.empty((K, nb_max), dtype=dt)
            self.GT = np.empty((d, nb_max), dtype=dt)
            nblk = 2 * LANES
            self.ebuf = np.empty(-(-K * nb_max // nblk) * nblk, dtype=dt)
            self.ubuf = np.empty_like(self.ebuf)
            self._nb_max = nb_max

    def validation_loss(self) -> tuple[float, float, float]:
        return self.expected_loss(self.val)

    def eval_weights(self) -> np.ndarray:
        """The weights validation and :meth:`sync_model` see: the raw iterate ``p``, or
        with averaging on its running average in the training dtype (flat layout)."""
        return numpy_average(self.avg_state, self.p)

    def expected_loss(self, val: ValidationSet) -> tuple[float, float, float]:
        """``(L, D, R)`` of :meth:`weights`, averaged exactly over the noise on ``val`` (the
        loss of :func:`collapse_spectroscopy.models.linear.expected_loss`).

        The terms quadratic in ``x`` (the residual of the posterior mean, ``mu^2``,
        ``logs2``) come from the set's second moments in float64; only
        ``sum_x exp(logs2_j(x))`` needs a pass over the samples (jitted). Same value as the
        per-sample formula; more accurate than it in float32.
        """
        K, d = self.K, self.d
        p = self.eval_weights()
        v = variance_sums(val.chunks, val.counts, p, d, K, self._ls)
        E, Wc = (a.astype(np.float64) for a in flat_views(p, d, K))
        A1, B1, W, c = E[:K], E[K:], Wc[:, :K], Wc[:, K]
        S, n = val.S, val.n
        M1 = -W @ A1  # residual x - W mu - c = M1 [x; 1]
        M1[:, :d] += np.eye(d)
        M1[:, d] -= c
        sse = float(np.einsum("ij,jk,ik->", M1, S, M1))
        var = float((W * W).sum(axis=0) @ v)
        mu2 = float(np.einsum("ij,jk,ik->", A1, S, A1))
        ls_sum = float((B1 @ S[:, d]).sum())
        distortion = (sse + var) / n / (2.0 * self.sigma2)
        rate = 0.5 * (mu2 + v.sum() - ls_sum) / n - 0.5 * K
        return distortion + self.beta * rate, distortion, rate

    def sync_model(self) -> LinearVAE:
        if self.average == "none":
            return unpack(self._p_t, self.model)
        return unpack(torch.from_numpy(self.eval_weights()), self.model)

    def state_dict(self) -> dict:
        a = self.avg_state
        average = {k: torch.from_numpy(a[k].copy()) for k in ("avg", "ring", "counters")}
        return {
            "p": torch.from_numpy(self.p.copy()),
            "m": torch.from_numpy(self.m.copy()),
            "v": torch.from_numpy(self.v.copy()),
            "t": self.t,
            "noise_state": torch.from_numpy(self.noise_state.astype(np.int64)),
            "batches": self.batches.state_dict(),
            **({"average": average} if self.average != "none" else {}),
        }

    def load_state_dict(self, state: dict) -> None:
        self.p[...] = np.asarray(state["p"])
        self.m[...] = np.asarray(state["m"])
        self.v[...] = np.asarray(state["v"])
        self.t = int(state["t"])
        noise = np.asarray(state["noise_state"])
        self.noise_state[...] = noise.astype(np.uint32)
        self.batches.load_state_dict(state["batches"])
        if self.average != "none":
            for k, value in state["average"].items():
                self.avg_state[k][...] = np.asarray(value)
