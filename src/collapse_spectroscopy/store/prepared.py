"""The prepared dataset: the one file every training job of a run loads (docs/science.md §5).

It holds the standardized samples of each split (train statistics only, docs/science.md §1), the
statistics themselves, the feature names, and free-form metadata. It is an uncompressed
``.npz`` so that loading 808k x 19 float32 samples takes well under a second.

Keys in the file (a contract with the dataset layer and the training CLI):

``x_train``, ``x_val``, ``x_test``
    float32 arrays (n_split, d), standardized with the training split's mean and std.
``mean``, ``std``
    float64 (d,), the training split's per-feature mean and standard deviation in the
    source units; ``x = (raw - mean) / std``. With ``dataset.standardize: global`` one
    value over all features, repeated; with ``none`` zeros and ones.
``feature_names``
    str (d,), in the order of the columns.
``true_spectrum`` (optional)
    float64 (d,), the declared normalized spectrum ``lambda_k / V`` of a synthetic source,
    descending, for the figures' theory overlay.
``index_train``, ``index_val``, ``index_test`` (optional; files written before the
latent maps lack them)
    int64 (n_split,), where each sample sits in its source: the row-major flat cell index
    ``row * width + col`` on the grid of a raster source (its shape, transform, CRS and
    nodata are in ``metadata["source_info"]``: ``grid_shape``, ``transform``, ``crs_wkt``,
    ``nodata``), the 0-based table row for a table, the sample's index in the file for
    arrays. The latent maps put each sample back.
``metadata``
    a JSON string: source, split parameters, counts and anything else worth keeping; for
    the arrays source ``sample_shape``, the shape each sample had before it was flattened
    into its d features (a list of integers, product d).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from collapse_spectroscopy.errors import InputError
from collapse_spectroscopy.store.atomic import atomic_path, json_default

SPLITS = ("train", "val", "test")


@dataclass
class PreparedDataset:
    """Standardized splits plus the statistics and metadata that produced them."""

    x_train: np.ndarray
    x_val: np.ndarray
    x_test: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    feature_names: list[str]
    metadata: dict = field(default_factory=dict)
    true_spectrum: np.ndarray | None = None
    index: dict[str, np.ndarray] | None = None  # split -> source position of each sample

    def split(self, name: str) -> np.ndarray:
        """The standardized samples of split ``name`` (``train``, ``val`` or ``test``)."""
        if name not in SPLITS:
            raise InputError(f"unknown split {name!r}: expected one of {', '.join(SPLITS)}")
        return getattr(self, f"x_{name}")

    def validate(self, source: str = "prepared dataset") -> None:
        """Check shapes, dtypes and finiteness; raise :class:`InputError` naming the problem."""
        d = None
        for name in SPLITS:
            x = self.split(name)
            if x.ndim != 2:
                raise InputError(
                    f"{source}: x_{name} must be 2-D (samples x features), got shape {x.shape}"
                )
            if x.shape[0] == 0:
                raise InputError(f"{source}: split {name!r} is empty (0 samples)")
            if d is None:
                d = x.shape[1]
            elif x.shape[1] != d:
                raise InputError(f"{source}: x_{name} has {x.shape[1]} features, x_train has {d}")
            if not np.all(np.isfinite(x)):
                bad = int(np.count_nonzero(~np.isfinite(x)))
                raise InputError(f"{source}: x_{name} holds {bad} non-finite values (NaN/inf)")
        for name in ("mean", "std"):
            arr = getattr(self, name)
            if arr.shape != (d,):
                raise InputError(f"{source}: {name} must have shape ({d},), got {arr.shape}")
        if len(self.feature_names) != d:
            raise InputError(f"{source}: {len(self.feature_names)} feature names for {d} features")
        for name in SPLITS if self.index is not None else ():
            if np.shape(self.index.get(name)) != (self.split(name).shape[0],):
                raise InputError(
                    f"{source}: index_{name} must hold one source position per sample of "
                    f"split {name!r} ({self.split(name).shape[0]})"
                )

    def save(self, path: str | os.PathLike) -> None:
        """Write the dataset atomically as an uncompressed ``.npz``."""
        self.validate()
        arrays = {
            "x_train": np.ascontiguousarray(self.x_train, dtype=np.float32),
            "x_val": np.ascontiguousarray(self.x_val, dtype=np.float32),
            "x_test": np.ascontiguousarray(self.x_test, dtype=np.float32),
            "mean": np.asarray(self.mean, dtype=np.float64),
            "std": np.asarray(self.std, dtype=np.float64),
            "feature_names": np.asarray(self.feature_names, dtype=str),
            "metadata": np.asarray(json.dumps(self.metadata, default=json_default)),
        }
        if self.true_spectrum is not None:
            arrays["true_spectrum"] = np.asarray(self.true_spectrum, dtype=np.float64)
        for name in SPLITS if self.index is not None else ():
            arrays[f"index_{name}"] = np.asarray(self.index[name], dtype=np.int64)
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def load_prepared(path: str | os.PathLike) -> PreparedDataset:
    """Load a prepared dataset written by :meth:`PreparedDataset.save`, and validate it."""
    path = Path(path)
    if not path.is_file():
        raise InputError(
            f"prepared dataset {str(path)!r} does not exist "
            "(expected the .npz written by `collapse-spectroscopy prepare`)"
        )
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [
                k
                for k in ("x_train", "x_val", "x_test", "mean", "std", "feature_names", "metadata")
                if k not in z.files
            ]
            if missing:
                raise InputError(
                    f"prepared dataset {str(path)!r} lacks key(s) {', '.join(missing)}"
                )
            ds = PreparedDataset(
                x_train=z["x_train"],
                x_val=z["x_val"],
                x_test=z["x_test"],
                mean=z["mean"],
                std=z["std"],
                feature_names=[str(s) for s in z["feature_names"]],
                metadata=json.loads(str(z["metadata"])),
                true_spectrum=z["true_spectrum"] if "true_spectrum" in z.files else None,
                index={s: z[f"index_{s}"] for s in SPLITS}
                if all(f"index_{s}" in z.files for s in SPLITS)
                else None,
            )
    except InputError:
        raise
    except Exception as exc:  # a truncated or foreign file: say which and why
        raise InputError(f"prepared dataset {str(path)!r} cannot be read as .npz: {exc}") from exc
    ds.validate(source=f"prepared dataset {str(path)!r}")
    return ds
