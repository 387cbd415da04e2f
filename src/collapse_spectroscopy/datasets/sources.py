"""Dataset sources, chosen by ``dataset.source``: worldclim, rasters, synthetic, table,
arrays.

Each source turns its inputs into :class:`~.stack.Samples`. The three raster sources
share one path (:func:`.rasters.read_stack` then :func:`.stack.stack_samples`); the
synthetic source first writes its GeoTIFFs, then reads them back like real data. Its
kinds (``dataset.synthetic_kind``): ``gaussian`` (:mod:`.synthetic`, a declared linear
spectrum) and ``manifold`` (:mod:`.synthetic_manifold`, docs/science.md §9). The table
(:mod:`.table`) and arrays (:mod:`.arrays`, e.g. images) sources read one sample per row
of a single file, without geography.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from collapse_spectroscopy.config.settings import section_defaults
from collapse_spectroscopy.datasets import synthetic, synthetic_manifold, worldclim
from collapse_spectroscopy.datasets.arrays import read_arrays
from collapse_spectroscopy.datasets.rasters import layers_from_paths, read_stack
from collapse_spectroscopy.datasets.stack import Samples, stack_samples
from collapse_spectroscopy.datasets.table import read_table
from collapse_spectroscopy.errors import InputError

SOURCES = ("worldclim", "rasters", "synthetic", "table", "arrays")
SYNTHETIC_KINDS = ("gaussian", "manifold")
DEFAULT_SOURCE = "synthetic"
DEFAULT_CACHE_DIR = Path("resources") / "worldclim"
_DEFAULTS = section_defaults("dataset")  # the schema is the one home of these defaults


@dataclass
class SourceOptions:
    """What ``dataset.*`` in a run's config says about the source.

    Attributes
    ----------
    source : str
        One of :data:`SOURCES` (``dataset.source``).
    path : list of str
        ``dataset.path``: worldclim -- the archive, a folder of its 19 GeoTIFFs or a folder
        holding the archive (empty: download into ``cache_dir``); rasters -- one folder, one
        zip, or GeoTIFF files; table -- one CSV/Parquet/NetCDF file; arrays -- one .npy or
        .npz file; synthetic -- unused.
    resolution, url, sha256, cache_dir, retries, verify
        WorldClim options (``dataset.resolution`` etc.).
    split_column, drop_columns
        Table options (``dataset.split_column``, ``dataset.drop_columns``).
    synthetic_seed : int
        Seed of the synthetic generator (``dataset.synthetic_seed``).
    synthetic_kind : str
        One of :data:`SYNTHETIC_KINDS` (``dataset.synthetic_kind``).
    intrinsic_dim, features, noise
        The manifold kind's factors, layers and noise standard deviation
        (``dataset.intrinsic_dim`` etc.; unused by the gaussian kind).
    nodata : float or None
        ``dataset.nodata``: the value that marks missing cells in every layer (or table
        column), replacing the files' own nodata tags; None: the files' tags.
    """

    source: str = DEFAULT_SOURCE
    path: list[str] = field(default_factory=list)
    resolution: str = _DEFAULTS["resolution"]
    url: str | None = None
    sha256: str | None = None
    cache_dir: str | os.PathLike = DEFAULT_CACHE_DIR
    retries: int = 3
    verify: bool = True
    split_column: str | None = None
    drop_columns: list[str] = field(default_factory=list)
    synthetic_seed: int = _DEFAULTS["synthetic_seed"]
    synthetic_kind: str = _DEFAULTS["synthetic_kind"]
    intrinsic_dim: int = _DEFAULTS["intrinsic_dim"]
    features: int = _DEFAULTS["features"]
    noise: float = _DEFAULTS["noise"]
    nodata: float | None = None


def check_source(source: str) -> str:
    if source not in SOURCES:
        raise InputError(
            f"dataset.source = {source!r} is unknown: expected one of {', '.join(SOURCES)}"
        )
    return source


def _single_path(opts: SourceOptions) -> Path:
    if len(opts.path) != 1:
        raise InputError(
            f"dataset.path = {opts.path!r}: source {opts.source!r} expects exactly one path"
        )
    return Path(opts.path[0])


def load_samples(opts: SourceOptions, synthetic_dir: Path | None = None) -> tuple[Samples, dict]:
    """Load the samples of a source.

    Parameters
    ----------
    opts : SourceOptions
    synthetic_dir : Path
        Where the synthetic source writes its GeoTIFFs (required for that source).

    Returns
    -------
    samples : Samples
    extra : dict
        ``true_spectrum`` (the synthetic gaussian kind only: the manifold kind has no
        linear spectrum truth) and source metadata.
    """
    check_source(opts.source)
    _check_table_keys(opts)
    if opts.source in ("table", "arrays"):
        if len(opts.path or []) != 1:
            files = "CSV, Parquet or NetCDF" if opts.source == "table" else ".npy or .npz"
            raise InputError(
                f"dataset.path = {opts.path!r}: source {opts.source!r} expects exactly "
                f"one {files} file"
            )
        if opts.source == "arrays":
            return read_arrays(opts.path[0], nodata=opts.nodata), {}
        return read_table(
            opts.path[0], opts.split_column, opts.drop_columns, nodata=opts.nodata
        ), {}
    layers, extra = _raster_layers(opts, synthetic_dir)
    samples = stack_samples(read_stack(layers, nodata=opts.nodata))
    return samples, extra


def _check_table_keys(opts: SourceOptions) -> None:
    """Refuse ``dataset.split_column`` and ``dataset.drop_columns`` for a source other
    than the table, whose columns they name."""
    if opts.source == "table":
        return
    arrays = opts.source == "arrays"
    if opts.split_column:
        how = "its split array or a random split" if arrays else "the spatial-block split"
        raise InputError(
            f"dataset.split_column = {opts.split_column!r} applies to source 'table' "
            f"only; source {opts.source!r} uses {how}"
        )
    if opts.drop_columns:
        raise InputError(
            f"dataset.drop_columns = {opts.drop_columns!r} applies to source 'table' only; "
            f"source {opts.source!r} has {'arrays' if arrays else 'layers'}, not columns"
        )


def _raster_layers(opts: SourceOptions, synthetic_dir: Path | None) -> tuple[list, dict]:
    """The layers of a raster source (worldclim, rasters, synthetic) and the ``extra``
    of :func:`load_samples`."""
    extra: dict = {}
    if opts.source == "worldclim":
        if opts.path:
            layers = worldclim.worldclim_layers(
                _single_path(opts), opts.resolution, sha256=opts.sha256, verify=opts.verify
            )
        else:
            archive = worldclim.fetch_archive(
                opts.cache_dir,
                opts.resolution,
                url=opts.url,
                sha256=opts.sha256,
                retries=opts.retries,
            )
            layers = worldclim.worldclim_layers(archive, opts.resolution, verify=False)
        extra["source_info"] = {
            "resolution": opts.resolution,
            "url": opts.url or worldclim.archive_url(opts.resolution),
        }
    elif opts.source == "rasters":
        layers = layers_from_paths(opts.path)
    else:  # synthetic
        if opts.path or opts.nodata is not None:
            key, value = ("path", opts.path) if opts.path else ("nodata", opts.nodata)
            raise InputError(
                f"dataset.{key} = {value!r} is not used by source "
                "'synthetic' (its layers are generated): leave it empty"
            )
        if synthetic_dir is None:
            raise ValueError("synthetic_dir is required for the synthetic source")
        layers, extra = _synthetic(opts, Path(synthetic_dir))
    return layers, extra


def _synthetic(opts: SourceOptions, folder: Path) -> tuple[list, dict]:
    """Write the synthetic stack of ``opts.synthetic_kind`` into ``folder``: its layers
    and the ``extra`` of :func:`load_samples`."""
    seed = int(opts.synthetic_seed)
    info = {"synthetic_dir": str(folder), "truth_file": str(folder / synthetic.TRUTH_FILE)}
    if opts.synthetic_kind == "gaussian":
        paths, truth = synthetic.write_layers(folder, seed=seed)
        keys = ("spectrum", "dependence", "seed", "resolution_deg")
        extra = {"true_spectrum": np.asarray(truth["spectrum"], dtype=np.float64)}
    elif opts.synthetic_kind == "manifold":
        stack, truth = synthetic_manifold.generate_manifold(
            seed, opts.intrinsic_dim, opts.features, float(opts.noise)
        )
        paths = synthetic.write_stack(folder, stack, truth)
        keys = ("kind", "intrinsic_dim", "noise", "pca_spectrum", "noise_fraction")
        keys += ("distortion_floor", "seed", "resolution_deg")
        extra = {}  # no linear spectrum truth: the figures draw no theory overlay
    else:
        raise InputError(
            f"dataset.synthetic_kind = {opts.synthetic_kind!r} is unknown: expected one of "
            f"{', '.join(SYNTHETIC_KINDS)}"
        )
    extra["source_info"] = {**info, **{k: truth[k] for k in keys}}
    return layers_from_paths(paths), extra
