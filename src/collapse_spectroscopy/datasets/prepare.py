"""Prepare a run's dataset: source -> samples -> split -> standardization -> files.

Outputs, all in one folder ``out`` (names in :data:`OUTPUTS`):

``prepared.npz``
    The prepared dataset (:mod:`collapse_spectroscopy.store.prepared`): standardized float32
    samples per split, the training mean/std, feature names, the synthetic gaussian
    kind's declared spectrum, and metadata (source, split rule and parameters, counts, areas).
``split_summary.json``
    The split method and rule in words, its parameters, and samples / area / blocks
    per split.
``standardization.json``
    Per-feature training mean and standard deviation (``ddof = 0``), source units.
``split_map.png``, ``split_map.pdf``
    Blocks coloured by split (a bar chart of the counts for tables).
``split_blocks.csv``
    Spatial splits only: one row per block (indices, origin, area, cells, draw, split).
``synthetic_layers/``
    Synthetic source only: the generated GeoTIFFs ``synth_<i>.tif`` and ``truth.json``.

Every file is written atomically. The step first removes these outputs from any earlier
run, and on any error removes whatever it had written, so a failed run leaves nothing
that looks complete.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from collapse_spectroscopy import __version__
from collapse_spectroscopy.datasets.coarsen import CoarsenOptions, coarsen_samples
from collapse_spectroscopy.datasets.sources import SourceOptions, check_source, load_samples
from collapse_spectroscopy.datasets.split import (
    DEFAULT_BLOCK_KM,
    DEFAULT_FRACTIONS,
    SPLITS,
    SUBSAMPLE_RULE,
    check_block_km,
    check_fractions,
    check_train_subsample,
    column_split,
    random_split,
    spatial_block_split,
    split_summary,
    subsample_train,
)
from collapse_spectroscopy.datasets.splitmap import draw_split_map
from collapse_spectroscopy.errors import InputError
from collapse_spectroscopy.store.atomic import atomic_path, check_writable, write_json
from collapse_spectroscopy.store.prepared import PreparedDataset

log = logging.getLogger(__name__)

OUTPUTS = {
    "prepared": "prepared.npz",
    "split_summary": "split_summary.json",
    "standardization": "standardization.json",
    "split_map_png": "split_map.png",
    "split_map_pdf": "split_map.pdf",
    "split_blocks": "split_blocks.csv",
}
SYNTHETIC_DIR = "synthetic_layers"


@dataclass
class SplitOptions:
    """``split.*`` of a run's config."""

    block_km: float = DEFAULT_BLOCK_KM
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS
    seed: int = 0
    train_subsample: float = 1.0


def standardization(
    x: np.ndarray, train: np.ndarray, names: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and standard deviation (ddof = 0) of the training rows, float64.

    Raises InputError naming a feature that is constant over the training split.
    """
    xt = x[train].astype(np.float64)
    mean = xt.mean(axis=0)
    std = xt.std(axis=0)
    const = [n for n, s in zip(names, std, strict=True) if not s > 0]
    if const:
        raise InputError(
            f"feature(s) {const} are constant over the training split: expected "
            "a non-zero standard deviation to standardize by"
        )
    return mean, std


def check_train_size(n_train: int, n_split: int, samples, subsample: float) -> None:
    """Refuse fewer training samples than features + 1: below that the training
    covariance is singular, so some PCA ratios are 0 and the rest, like the collapse
    thresholds they anchor (docs/science.md §4), are those of a handful of points, not of
    the data (1 sample: every feature looks constant; 2: one PCA ratio of 1 and thresholds
    far outside the scan). Names ``split.train_subsample`` when it is what removed them."""
    d = len(samples.feature_names)
    if n_train > d:
        return
    if subsample < 1:
        cause = (
            f"split.train_subsample = {subsample:g} keeps {n_train} of the {n_split} "
            "samples of the training split"
        )
        fix = "a larger split.train_subsample"
    else:
        cause = f"the training split holds {n_train} samples"
        fix = "more data or a larger training share (split.fractions)"
    raise InputError(
        f"{cause}: expected at least {d + 1} (the {d} features + 1, for a full-rank "
        f"training covariance): use {fix}"
    )


def _standardize(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return ((x.astype(np.float64) - mean) / std).astype(np.float32)


def output_paths(out_dir: Path) -> dict[str, Path]:
    return {k: out_dir / v for k, v in OUTPUTS.items()}


def _remove_outputs(out_dir: Path) -> None:
    for p in output_paths(out_dir).values():
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    shutil.rmtree(out_dir / SYNTHETIC_DIR, ignore_errors=True)


def prepare(
    out_dir: str | os.PathLike,
    source: SourceOptions | None = None,
    split: SplitOptions | None = None,
    coarsen: CoarsenOptions | None = None,
) -> dict:
    """Build the prepared dataset of a run and its side files in ``out_dir``.

    Parameters
    ----------
    out_dir : path
        Output folder (created if needed).
    source : SourceOptions
        ``dataset.*`` options; default the synthetic source.
    split : SplitOptions
        ``split.*`` options; defaults 500 km, (0.6, 0.2, 0.2), seed 0, all of the
        training split.
    coarsen : CoarsenOptions
        ``dataset.coarsen`` and ``dataset.coarsen_min_valid``; default 1 (the grid as it
        is). Applied to the samples before the split (:mod:`.coarsen`).

    Returns
    -------
    dict
        The split summary (also written to ``split_summary.json``) with the output paths
        under ``"outputs"`` and step timings under ``"timings_s"``.

    Raises
    ------
    InputError
        Any bad input; no output of this step is left behind.
    """
    source = source or SourceOptions()
    split = split or SplitOptions()
    coarsen = coarsen or CoarsenOptions()
    out_dir = Path(out_dir)
    check_writable(out_dir)  # a read-only or misplaced folder: say so before any work
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    _remove_outputs(out_dir)  # outputs of an earlier run never outlive a failed one
    paths = output_paths(out_dir)
    timings: dict[str, float] = {}
    try:
        # The cheap checks first, before any work.
        check_source(source.source)
        fractions = check_fractions(split.fractions)
        block_km = check_block_km(split.block_km)
        subsample = check_train_subsample(split.train_subsample)
        factor, min_valid = coarsen.check(source.source)
        try:
            seed = int(split.seed)
        except (TypeError, ValueError) as exc:
            raise InputError(f"split.seed = {split.seed!r}: expected an integer") from exc

        t0 = time.perf_counter()
        samples, extra = load_samples(source, synthetic_dir=out_dir / SYNTHETIC_DIR)
        timings["load_and_stack"] = time.perf_counter() - t0
        if factor > 1:  # before the split, so that its blocks stay geographic
            t0 = time.perf_counter()
            samples = coarsen_samples(samples, factor, min_valid)
            timings["coarsen"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        if samples.is_geographic:
            result = spatial_block_split(
                samples.lon,
                samples.lat,
                samples.area_km2,
                block_km=block_km,
                fractions=fractions,
                seed=seed,
            )
        elif samples.split is not None:
            result = column_split(
                samples.split, source.split_column, source=f"table {samples.info.get('table')!r}"
            )
        else:
            result = random_split(samples.n, fractions=fractions, seed=seed)
        timings["split"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        masks = {name: result.mask(name) for name in SPLITS}
        masks["train"] = subsample_train(masks["train"], subsample, seed)
        train = masks["train"]
        check_train_size(int(train.sum()), int(result.mask("train").sum()), samples, subsample)
        mean, std = standardization(samples.x, train, samples.feature_names)
        xs = {name: _standardize(samples.x[masks[name]], mean, std) for name in SPLITS}
        index = samples.index
        if index is None:  # a source that keeps no positions: the sample's own number
            index = np.arange(samples.n, dtype=np.int64)
        positions = {name: index[masks[name]] for name in SPLITS}
        timings["standardize"] = time.perf_counter() - t0

        summary = split_summary(result, samples.area_km2)
        summary["source"] = source.source
        if subsample < 1:  # written only when used: a default run's files stay as they were
            summary["train_subsample"] = {
                "fraction": subsample,
                "seed": seed,
                "samples_in_split": int(result.mask("train").sum()),
                "samples_kept": int(train.sum()),
                "rule": SUBSAMPLE_RULE,
            }
        summary["feature_names"] = samples.feature_names
        if "dropped_rows" in samples.info:  # tables: rows left out for a missing value
            summary["dropped_rows"] = samples.info["dropped_rows"]
        std_doc = {
            "feature_names": samples.feature_names,
            "mean": mean,
            "std": std,
            "computed_on": "train",
            "n_train": int(train.sum()),
            "ddof": 0,
            "formula": "x_standardized = (x - mean) / std, applied to every split",
        }
        source_doc = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(source).items()}
        if factor > 1:  # written only when used: a default run's files stay as they were
            source_doc |= {"coarsen": factor, "coarsen_min_valid": min_valid}
        metadata = {
            "source": source.source,
            "source_options": source_doc,
            "source_info": {**samples.info, **extra.get("source_info", {})},
            "split": summary,
            "standardization": {"computed_on": "train", "ddof": 0},
            "n_features": len(samples.feature_names),
            "created_by": f"collapse-spectroscopy {__version__} prepare",
        }
        if "true_spectrum" in extra:
            metadata["true_spectrum_meaning"] = (
                "declared lambda_k / V of the synthetic source's correlation matrix"
            )

        t0 = time.perf_counter()
        write_json(paths["standardization"], std_doc)
        write_json(paths["split_summary"], summary)
        if result.blocks is not None:
            with atomic_path(paths["split_blocks"]) as tmp:
                result.blocks.to_csv(tmp, index=False)
        if result.blocks is not None:
            p = result.parameters
            title = (
                f"{source.source}: {p['block_km']:g} km equal-area blocks, seed {p['seed']}, "
                f"area targets {p['fractions']}"
            )
        else:
            title = f"{source.source}: {result.method} split of a table without geography"
        draw_split_map(
            result, summary, [paths["split_map_png"], paths["split_map_pdf"]], title=title
        )
        PreparedDataset(
            x_train=xs["train"],
            x_val=xs["val"],
            x_test=xs["test"],
            mean=mean,
            std=std,
            feature_names=samples.feature_names,
            metadata=metadata,
            true_spectrum=extra.get("true_spectrum"),
            index=positions,
        ).save(paths["prepared"])
        timings["write"] = time.perf_counter() - t0
    except BaseException:
        _remove_outputs(out_dir)
        if created:
            with contextlib.suppress(OSError):
                out_dir.rmdir()
        raise
    written = [p for p in paths.values() if p.exists()]
    if (out_dir / SYNTHETIC_DIR).exists():
        written.append(out_dir / SYNTHETIC_DIR)
    summary = dict(summary)
    summary["outputs"] = [str(p) for p in written]
    summary["timings_s"] = timings
    return summary
