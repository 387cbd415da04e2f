"""A training job's scan points, the files each writes, and what they share.

:class:`PointFiles` is one scan point of a job with its outputs (the scan-point file, the
weights, the training log) and its checkpoint; :func:`batch_checkpoint` the one checkpoint
of a chunk trained as one batch; :class:`JobOptions` the dataset and options every point
of a job shares (:mod:`.train_job`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from collapse_spectroscopy.errors import InputError
from collapse_spectroscopy.models.families import Architecture
from collapse_spectroscopy.training.scan_point import TrainConfig


def default_paths(out: Path, weights: Path | None, log: Path | None) -> tuple[Path, Path]:
    out = Path(out)
    return (
        Path(weights) if weights else out.with_suffix(".pt"),
        Path(log) if log else out.with_suffix(".log.csv"),
    )


@dataclass(frozen=True)
class PointFiles:
    """One scan point of a job and the files it writes."""

    temperature: float
    seed: int
    out: Path  # the scan-point NetCDF file (.nc)
    weights: Path  # best weights (.pt)
    log: Path  # training log (.log.csv)

    @classmethod
    def of(cls, temperature, seed, out, weights=None, log=None) -> PointFiles:
        out = Path(out)
        if out.suffix != ".nc":
            raise InputError(f"--out {str(out)!r}: expected a .nc file name")
        weights, log = default_paths(out, weights, log)
        return cls(float(temperature), int(seed), out, weights, log)

    @property
    def checkpoint(self) -> Path:
        return self.out.with_suffix(".ckpt")  # not a workflow output: it survives a failed job

    @property
    def label(self) -> str:
        return f"T={self.temperature:g}, seed={self.seed}"


@dataclass(frozen=True)
class JobOptions:
    """What every point of a job shares: the dataset file and the run's options."""

    data: object
    config: TrainConfig
    latents: int
    sigma2: float
    eval_split: str
    arch: Architecture  # the model (model.*); with the dataset's sample_shape once loaded


def batch_checkpoint(points: Sequence[PointFiles]) -> Path:
    """The one checkpoint of a chunk's batched training: beside the chunk's first point
    (the same file whichever of its points are left to train)."""
    return points[0].out.with_suffix(".batch.ckpt")
