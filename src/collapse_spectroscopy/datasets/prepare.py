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
    The training mean and standard deviation of each feature (``ddof = 0``), source units,
    as ``dataset.standardize`` chose them (:mod:`.standardize`).
``split_map.png``, ``split_map.pdf``
    Blocks coloured by split (a bar chart of the counts for tables and arrays).
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
    SplitResult,
    array_split,
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
from collapse_spectroscopy.datasets.standardize import (
    DEFAULT_MODE,
    check_mode,
    standardization,
    standardized,
)
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


def output_paths(out_dir: Path) -> dict[str, Path]:
    return {k: out_dir / v for k, v in OUTPUTS.items()}


def _remove_outputs(out_dir: Path) -> None:
    for p in output_paths(out_dir).values():
        with contextlib.suppress(FileNotFoundError):
            p.unlink()
    shutil.rmtree(out_dir / SYNTHETIC_DIR, ignore_errors=True)


@contextlib.contextmanager
def _timed(timings: dict[str, float], stage: str):
    """Record the seconds the ``with`` body takes as ``timings[stage]`` (the summary's
    ``timings_s``); a body that raises records nothing."""
    t0 = time.perf_counter()
    yield
    timings[stage] = time.perf_counter() - t0


@dataclass(frozen=True)
class _Checked:
    """The options of :func:`prepare` after their checks."""

    fractions: np.ndarray
    block_km: float
    subsample: float
    factor: int
    min_valid: float
    seed: int
    standardize: str


def _check_options(
    source: SourceOptions, split: SplitOptions, coarsen: CoarsenOptions, standardize: str
) -> _Checked:
    """The cheap checks, run before any work; raises InputError for a bad option."""
    check_source(source.source)
    check_mode(standardize)
    fractions = check_fractions(split.fractions)
    block_km = check_block_km(split.block_km)
    subsample = check_train_subsample(split.train_subsample)
    factor, min_valid = coarsen.check(source.source)
    try:
        seed = int(split.seed)
    except (TypeError, ValueError) as exc:
        raise InputError(f"split.seed = {split.seed!r}: expected an integer") from exc
    return _Checked(fractions, block_km, subsample, factor, min_valid, seed, standardize)


def _split(samples, source: SourceOptions, opts: _Checked) -> SplitResult:
    """Spatial blocks for geographic samples, else the split the source gives (a table's
    split column, an arrays file's split array), else a random split by count."""
    if samples.is_geographic:
        return spatial_block_split(
            samples.lon,
            samples.lat,
            samples.area_km2,
            block_km=opts.block_km,
            fractions=opts.fractions,
            seed=opts.seed,
        )
    if samples.split is not None and source.source == "arrays":
        return array_split(samples.split, samples.info["arrays"])
    if samples.split is not None:
        return column_split(
            samples.split, source.split_column, source=f"table {samples.info.get('table')!r}"
        )
    return random_split(samples.n, fractions=opts.fractions, seed=opts.seed)


@dataclass(frozen=True)
class _Standardized:
    """The samples of each split, standardized by the training split's statistics."""

    train: np.ndarray  # mask of the training samples kept (after split.train_subsample)
    mean: np.ndarray
    std: np.ndarray
    xs: dict[str, np.ndarray]  # split -> standardized float32 samples
    positions: dict[str, np.ndarray]  # split -> the samples' positions (samples.index)


def _standardize_splits(samples, result: SplitResult, opts: _Checked) -> _Standardized:
    """Subsample the training split, check its size, and standardize every split by it."""
    masks = {name: result.mask(name) for name in SPLITS}
    masks["train"] = subsample_train(masks["train"], opts.subsample, opts.seed)
    train = masks["train"]
    check_train_size(int(train.sum()), int(result.mask("train").sum()), samples, opts.subsample)
    mean, std = standardization(samples.x, train, samples.feature_names, opts.standardize)
    xs = {name: standardized(samples.x[masks[name]], mean, std) for name in SPLITS}
    index = samples.index
    if index is None:  # a source that keeps no positions: the sample's own number
        index = np.arange(samples.n, dtype=np.int64)
    positions = {name: index[masks[name]] for name in SPLITS}
    return _Standardized(train, mean, std, xs, positions)


def _summary(
    result: SplitResult, samples, source: SourceOptions, opts: _Checked, train: np.ndarray
) -> dict:
    """The split summary (``split_summary.json``)."""
    summary = split_summary(result, samples.area_km2)
    summary["source"] = source.source
    if opts.subsample < 1:  # only when used: a default run's summary has no such key
        summary["train_subsample"] = {
            "fraction": opts.subsample,
            "seed": opts.seed,
            "samples_in_split": int(result.mask("train").sum()),
            "samples_kept": int(train.sum()),
            "rule": SUBSAMPLE_RULE,
        }
    summary["feature_names"] = samples.feature_names
    if "dropped_rows" in samples.info:  # tables, arrays: rows left out for a missing value
        summary["dropped_rows"] = samples.info["dropped_rows"]
    return summary


def _standardization_doc(samples, data: _Standardized, opts: _Checked) -> dict:
    """The contents of ``standardization.json``."""
    doc = {
        "feature_names": samples.feature_names,
        "mean": data.mean,
        "std": data.std,
        "computed_on": "train",
        "n_train": int(data.train.sum()),
        "ddof": 0,
        "formula": "x_standardized = (x - mean) / std, applied to every split",
    }
    return doc | _mode_doc(opts)


def _mode_doc(opts: _Checked) -> dict:
    """``dataset.standardize`` for the files, only when it is not the default: a default
    run's files keep the bytes they had before the key, so that its finished scan points,
    which know the prepared file by its digest, are not trained again."""
    return {} if opts.standardize == DEFAULT_MODE else {"standardize": opts.standardize}


def _metadata(samples, extra: dict, source: SourceOptions, opts: _Checked, summary) -> dict:
    """The metadata of ``prepared.npz``."""
    source_doc = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(source).items()}
    if opts.factor > 1:  # only when used: a default run's options have no such keys
        source_doc |= {"coarsen": opts.factor, "coarsen_min_valid": opts.min_valid}
    metadata = {
        "source": source.source,
        "source_options": source_doc,
        "source_info": {**samples.info, **extra.get("source_info", {})},
        "split": summary,
        "standardization": {"computed_on": "train", "ddof": 0} | _mode_doc(opts),
        "n_features": len(samples.feature_names),
        "created_by": f"collapse-spectroscopy {__version__} prepare",
    }
    if samples.sample_shape is not None:  # what a model may reshape each sample into
        metadata["sample_shape"] = list(samples.sample_shape)
    if "true_spectrum" in extra:
        metadata["true_spectrum_meaning"] = (
            "declared lambda_k / V of the synthetic source's correlation matrix"
        )
    return metadata


def _split_map_title(source: SourceOptions, result: SplitResult) -> str:
    if result.blocks is not None:
        p = result.parameters
        return (
            f"{source.source}: {p['block_km']:g} km equal-area blocks, seed {p['seed']}, "
            f"area targets {p['fractions']}"
        )
    return f"{source.source}: {result.method} split of samples without geography"


def _write_outputs(
    paths: dict[str, Path],
    source: SourceOptions,
    samples,
    extra: dict,
    result: SplitResult,
    data: _Standardized,
    summary: dict,
    std_doc: dict,
    metadata: dict,
) -> None:
    """Write every output file of :data:`OUTPUTS` the run has, each atomically."""
    write_json(paths["standardization"], std_doc)
    write_json(paths["split_summary"], summary)
    if result.blocks is not None:
        with atomic_path(paths["split_blocks"]) as tmp:
            result.blocks.to_csv(tmp, index=False)
    draw_split_map(
        result,
        summary,
        [paths["split_map_png"], paths["split_map_pdf"]],
        title=_split_map_title(source, result),
    )
    PreparedDataset(
        x_train=data.xs["train"],
        x_val=data.xs["val"],
        x_test=data.xs["test"],
        mean=data.mean,
        std=data.std,
        feature_names=samples.feature_names,
        metadata=metadata,
        true_spectrum=extra.get("true_spectrum"),
        index=data.positions,
    ).save(paths["prepared"])


def prepare(
    out_dir: str | os.PathLike,
    source: SourceOptions | None = None,
    split: SplitOptions | None = None,
    coarsen: CoarsenOptions | None = None,
    standardize: str = DEFAULT_MODE,
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
    standardize : str
        ``dataset.standardize``: features (default), global or none
        (:mod:`.standardize`).

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
        opts = _check_options(source, split, coarsen, standardize)
        with _timed(timings, "load_and_stack"):
            samples, extra = load_samples(source, synthetic_dir=out_dir / SYNTHETIC_DIR)
        if opts.factor > 1:  # before the split, so that its blocks stay geographic
            with _timed(timings, "coarsen"):
                samples = coarsen_samples(samples, opts.factor, opts.min_valid)
        with _timed(timings, "split"):
            result = _split(samples, source, opts)
        with _timed(timings, "standardize"):
            data = _standardize_splits(samples, result, opts)
        summary = _summary(result, samples, source, opts, data.train)
        std_doc = _standardization_doc(samples, data, opts)
        metadata = _metadata(samples, extra, source, opts, summary)
        with _timed(timings, "write"):
            _write_outputs(paths, source, samples, extra, result, data, summary, std_doc, metadata)
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
