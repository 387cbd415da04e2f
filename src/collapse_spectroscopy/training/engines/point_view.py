"""One point of a batched engine through the engine protocol (docs/science.md §5).

:class:`PointView` is point ``i`` of a batched engine (a :class:`.point_batch.PointBatch`:
:class:`.batched.BatchedEngine` or :class:`.batched_mlp.BatchedMLPEngine`) seen as an engine
(:class:`.base.Engine`), so that the trainer's per-point rule (validation, best weights,
early stopping: :mod:`collapse_spectroscopy.training.protocol`) drives each point of a
batch (:mod:`collapse_spectroscopy.training.batched`).
"""

from __future__ import annotations

import numpy as np

ENGINE_NAME = "batched"  # the batched engine's name in the registry (.engines.ENGINES)


class PointView:
    """Point ``point`` of a :class:`.point_batch.PointBatch` through the engine protocol
    (:class:`.base.Engine`), for the trainer's per-point functions.

    The batch runs all its points at once, so :meth:`run_window` does not run anything:
    it returns this point's losses of the window the batch just ran (the batched trainer
    runs the batch, then hands each point's losses to the trainer's rule through its view).
    """

    name = ENGINE_NAME

    def __init__(self, batch, point: int):
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

    def sync_model(self):  # the point's model (LinearVAE or MLPVAE)
        return self.batch.sync_point(self.point)

    def state_dict(self) -> dict:
        return self.batch.point_state(self.point)

    def load_state_dict(self, state: dict) -> None:
        self.batch.load_point_state(self.point, state)
