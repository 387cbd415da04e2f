"""The minibatch order of the training protocol (docs/science.md §5).

An epoch is a seeded random permutation of the training split cut into consecutive
batches; the last batch of an epoch may be short (499,599 samples at batch 256 make the
paper's 1952 batches). Every engine draws its batches from a :class:`BatchStream`, so the
same seed gives every engine the same batches in the same order.
"""

from __future__ import annotations

import numpy as np
import torch


class BatchStream:
    """The batches, in order: every epoch is a fresh ``torch.randperm`` (CPU generator
    seeded by ``seed``, moved to ``device`` once per epoch) cut into batches of ``bs``.

    :meth:`next` gives one batch's row indices (on the device), :meth:`window` the next
    ``k`` batches at once (CPU); both draw from the same stream.
    """

    def __init__(self, n: int, bs: int, seed: int, device="cpu"):
        self.n, self.bs, self.device = int(n), int(bs), device
        self.generator = torch.Generator().manual_seed(int(seed))  # CPU: same on any device
        self.pos = self.n  # the first call draws the first epoch

    def _epoch(self) -> None:
        self.perm = torch.randperm(self.n, generator=self.generator).to(self.device)
        self.pos = 0

    def next(self) -> torch.Tensor:
        if self.pos >= self.n:
            self._epoch()
        start, self.pos = self.pos, min(self.pos + self.bs, self.n)
        return self.perm[start : self.pos]

    def window(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Row indices of the next ``k`` batches, concatenated, and the batch sizes."""
        rows, sizes = [], []
        while k > 0:
            if self.pos >= self.n:
                self._epoch()
            m = min(k, -(-(self.n - self.pos) // self.bs))  # batches left in this epoch
            end = min(self.pos + m * self.bs, self.n)
            rows.append(self.perm[self.pos : end].cpu().numpy())
            full = np.full(m, self.bs, dtype=np.int64)
            full[-1] = end - self.pos - (m - 1) * self.bs
            sizes.append(full)
            self.pos, k = end, k - m
        return np.concatenate(rows), np.concatenate(sizes)

    def state_dict(self) -> dict:
        """Where the stream stands: the generator, the epoch's order and the position."""
        perm = None if self.pos >= self.n else self.perm.cpu()
        return {"generator": self.generator.get_state(), "pos": self.pos, "perm": perm}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
        self.pos = int(state["pos"])
        if state["perm"] is not None:
            self.perm = state["perm"].to(self.device)
