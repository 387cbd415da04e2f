"""Measuring scan points again from their saved weights (``collapse-spectroscopy measure``).

A scan point's file holds what was measured when it was trained; its ``.pt`` holds the best
weights. When the observables grow (a new pruning rule, another split), an existing scan,
hours of training for a nonlinear one, need not be trained again: each point is measured
again from its weights with this version's observables (:func:`.measure_point.point_dataset`,
what a training job runs) and its file rewritten atomically, keeping what the file says of
the training (``beta``, updates, stop reason, time, engine, device) and its attributes.
Measured again with an unchanged version, a point's file is the same, number for number
(tests/jobs/test_remeasure.py). A point that a chunk job recorded as finished
(:mod:`.chunks`) has its record updated too, or a rerun of that job would restore the file
measured before.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from collapse_spectroscopy.errors import InputError
from collapse_spectroscopy.jobs import chunks
from collapse_spectroscopy.jobs.measure_point import DataReferences, point_dataset
from collapse_spectroscopy.maps.latent_maps import load_model
from collapse_spectroscopy.store import scanfile
from collapse_spectroscopy.store.prepared import load_prepared

# attributes the measurement writes itself (the model's spec) or the file's kind gives
MEASURED_ATTRS = ("title", "model")


@dataclass
class RecordedTraining:
    """What a scan-point file says of its training: the fields of
    :class:`.scan_point.TrainResult` that a point's file records."""

    beta: float
    total_variance: float
    updates_run: int
    best_update: int
    best_val_loss: float
    elapsed_s: float
    stop_reason: str
    engine: str
    device: str

    @classmethod
    def of(cls, point) -> RecordedTraining:
        def value(name):
            return point[name].values.item()

        return cls(
            beta=float(value("beta")),
            total_variance=float(value("total_variance")),
            updates_run=int(value("updates_run")),
            best_update=int(value("best_update")),
            best_val_loss=float(value("best_validation_loss")),
            elapsed_s=float(value("elapsed_s")),
            stop_reason=str(value("stop_reason")),
            engine=str(point.attrs.get("engine", "")),
            device=str(point.attrs.get("device", "")),
        )


def remeasure(paths, data) -> list[Path]:
    """Measure each scan-point file of ``paths`` again from its ``.pt`` on the prepared
    dataset ``data`` (the run's), and rewrite it; return the paths. One line
    (:class:`InputError`) names a point without weights or of another dataset."""
    ds = load_prepared(data)
    refs: dict[str, DataReferences] = {}
    done = []
    for path in map(Path, paths):
        point = scanfile.read(path)
        weights = path.with_suffix(".pt")
        if not weights.is_file():
            raise InputError(f"scan point {str(path)!r}: its weights {str(weights)!r} do not exist")
        if "training" not in point.attrs or "updates_run" not in point:
            raise InputError(f"{str(path)!r} is not a scan-point file (no training record)")
        d = ds.x_train.shape[1]
        if point.sizes.get("mode") != d:
            raise InputError(
                f"scan point {str(path)!r} has {point.sizes.get('mode')} features, the "
                f"prepared dataset {str(data)!r} {d}: expected the run's prepared dataset"
            )
        model, _ = load_model(weights)
        split = str(point.attrs.get("eval_split", "test"))
        if split not in refs:
            refs[split] = DataReferences.of(ds, split)
        attrs = {k: v for k, v in point.attrs.items() if k not in MEASURED_ATTRS}
        new = point_dataset(
            model,
            ds,
            refs[split],
            RecordedTraining.of(point),
            temperature=float(point["T"]),
            seed=int(point["seed"]),
            attrs=attrs,
        )
        scanfile.write(new, path, engine=scanfile.POINT_ENGINE)
        chunks.refresh(path)  # a chunk job's record of the point keeps the new file
        done.append(path)
    return done
