"""Averaged weights: what validation, early stopping and the measurement see when
``training.average`` is ``ema`` or ``polyak`` (docs/science.md §5.4).

Minibatch Adam does not settle at the equilibrium: at stationarity the weights keep
fluctuating about it with a spread set by the learning rate and the batch noise (the SGD
noise floor). Along the weak directions of the loss (the latent scale, mean and rotation
at low ``T``, whose restoring forces are proportional to ``beta``, docs/science.md §7b) the
spread is largest and the fluctuation slowest. An average of the iterates over a horizon
``H`` much longer than their correlation time keeps the equilibrium and divides that
spread by about ``H / (2 tau)``. With averaging on, the engine still trains the raw
iterate ``p``; what it hands out (``validation_loss``, ``sync_model``) is the average, so
the trainer keeps the best *averaged* weights without knowing it.

``none``
    the raw iterate (the paper's best-iterate rule; nothing is stored or computed).
``ema``
    an exponential moving average of time constant ``H`` updates: after update ``n``,
    ``avg += (p - avg) / min(n, H)``. For ``n <= H`` this is the plain mean of the updates
    so far, so the initialization carries no extra weight; after it, each update's weight
    decays as ``exp(-age / H)``. Mean age of what it averages ``H``; noise variance about
    that of a uniform mean over ``2 H`` updates.
``polyak``
    the uniform (Polyak-Ruppert) mean of the *last* ``H`` to ``1.1 H`` updates, a sliding
    tail average: the updates are summed in blocks of ``b = H // 10`` (``nblocks = H // b``
    blocks, 10 for ``H >= 10``), the last ``nblocks`` completed blocks are kept, and the
    average is their sum plus the current partial block's over the count (a mean since the
    start until the first ``nblocks`` blocks are complete). Mean age ``H / 2``: half the lag
    of ``ema`` at the same noise as ``ema`` of horizon ``H / 2``.

Why a sliding tail and not a mean restarted every ``H`` updates: early stopping compares
the validation loss of every evaluation with the best so far. A restarted mean, evaluated
every ``eval_every`` updates, averages 1, 2, ... ``H / eval_every`` windows in turn, so the
first evaluation after each restart is ``sqrt(H / eval_every)`` times noisier than the
last; the best-so-far rule then picks lucky noisy evaluations, the selection bias that
averaging is meant to remove. The sliding tail has (nearly) the same number of updates
behind every evaluation, so their noise is comparable, and it is never stale by more than
``1.1 H``. ``ema`` shares that property.

The averages are kept in float64 whatever the training dtype: an EMA step of
``(p - avg) / 1e4`` on a fluctuation of 1e-3 is ~1e-7, below float32 resolution near 1.
The averaged weights are rounded to the training dtype when handed out, so that the
validation loss is the loss of the very model that is kept.

:class:`TorchAverage` is the torch engines' implementation; the ``numba`` engine runs the
same updates inside its compiled window (:func:`.numba.update.average_update`) on the
arrays of :func:`numpy_state`, and both form the ``polyak`` mean with :func:`polyak_mean`.
"""

from __future__ import annotations

import numpy as np
import torch

AVERAGES = ("none", "ema", "polyak")  # training.average (the schema's enum agrees, a test)
MODES = {name: i for i, name in enumerate(AVERAGES)}  # as the compiled loop reads them
POLYAK_BLOCKS = 10  # blocks per horizon: the tail covers H to (1 + 1/10) H updates


def polyak_blocks(horizon: int) -> tuple[int, int]:
    """``(nblocks, block)``: the blocks kept and their length for a horizon of ``horizon``
    updates (``nblocks * block <= horizon``, equal when ``POLYAK_BLOCKS`` divides it)."""
    block = max(1, int(horizon) // POLYAK_BLOCKS)
    return int(horizon) // block, block


def polyak_mean(cur, ring, filled: int, in_block: int, block: int):
    """The ``polyak`` average: the current block's sum ``cur`` plus the ``filled`` completed
    block sums in ``ring``, over the updates they hold (numpy or torch, one order of sums)."""
    total = cur
    for i in range(filled):
        total = total + ring[i]
    return total / (filled * block + in_block)


def numpy_state(kind: str, horizon: int, p: np.ndarray) -> dict:
    """The averaging state of the ``numba`` engine for the flat weights ``p``: ``params``
    (int64: mode, horizon, block length, blocks kept), ``avg`` (float64: the EMA, or the
    current block's sum), ``ring`` (float64, ``(blocks, n)``: completed block sums) and
    ``counters`` (int64: updates averaged, updates in the current block, next ring slot,
    blocks filled)."""
    nblocks, block = polyak_blocks(horizon) if kind == "polyak" else (0, 1)
    avg = p.astype(np.float64) if kind == "ema" else np.zeros(p.size)
    return {
        "params": np.array([MODES[kind], int(horizon), block, nblocks], dtype=np.int64),
        "avg": avg,
        "ring": np.zeros((nblocks, p.size)),
        "counters": np.zeros(4, dtype=np.int64),
    }


def numpy_average(state: dict, p: np.ndarray) -> np.ndarray:
    """The averaged weights of a :func:`numpy_state` in the dtype of ``p`` (``p`` itself
    before any update was averaged)."""
    mode, _, block, _ = (int(v) for v in state["params"])
    seen, in_block, _, filled = (int(v) for v in state["counters"])
    if mode == MODES["none"] or seen == 0:
        return p
    if mode == MODES["ema"]:
        return state["avg"].astype(p.dtype)
    return polyak_mean(state["avg"], state["ring"], filled, in_block, block).astype(p.dtype)


class TorchAverage:
    """The running average (``ema`` or ``polyak``) of a flat weight vector, in float64 on
    the weights' device; :meth:`update` after every Adam update."""

    def __init__(self, kind: str, horizon: int, p: torch.Tensor):
        if kind not in ("ema", "polyak"):
            raise ValueError(f"no running average {kind!r}")
        self.kind, self.horizon = kind, int(horizon)
        self.nblocks, self.block = polyak_blocks(horizon) if kind == "polyak" else (0, 1)
        p64 = p.detach().to(torch.float64)
        self.avg = p64.clone() if kind == "ema" else torch.zeros_like(p64)
        self.ring = p64.new_zeros(self.nblocks, p64.numel())
        self.seen = self.in_block = self.slot = self.filled = 0
        self._p64 = torch.empty_like(p64)

    @torch.no_grad()
    def update(self, p: torch.Tensor) -> None:
        """Fold the weights after one more update into the average."""
        self.seen += 1
        p64 = self._p64
        p64.copy_(p.reshape(-1))
        if self.kind == "ema":
            # avg + (p - avg) w, as the compiled loop computes it
            self.avg.add_(p64.sub_(self.avg), alpha=1.0 / min(self.seen, self.horizon))
            return
        self.avg.add_(p64)
        self.in_block += 1
        if self.in_block == self.block:
            self.ring[self.slot].copy_(self.avg)
            self.avg.zero_()
            self.in_block = 0
            self.slot = (self.slot + 1) % self.nblocks
            self.filled = min(self.filled + 1, self.nblocks)

    @torch.no_grad()
    def value(self, p: torch.Tensor) -> torch.Tensor:
        """The averaged weights in the shape and dtype of ``p`` (``p`` before any update;
        it may share memory with the running average: copy it to keep it)."""
        if self.seen == 0:
            return p
        if self.kind == "ema":
            mean = self.avg
        else:
            mean = polyak_mean(self.avg, self.ring, self.filled, self.in_block, self.block)
        return mean.to(p.dtype).reshape(p.shape)

    def state_dict(self) -> dict:
        return {
            "avg": self.avg.clone(),
            "ring": self.ring.clone(),
            "counters": torch.tensor([self.seen, self.in_block, self.slot, self.filled]),
        }

    def load_state_dict(self, state: dict) -> None:
        self.avg.copy_(state["avg"])
        self.ring.copy_(state["ring"])
        self.seen, self.in_block, self.slot, self.filled = (int(v) for v in state["counters"])
