"""The files a run's dataset reads, and the checks of its ``dataset.path``.

:func:`dataset_files` is the one place the workflow learns which input files a run's
``prepare`` job depends on (a changed layer reruns it); :func:`dataset_path_errors` says,
by config key, when a path does not exist or is not what the source reads (a folder of
GeoTIFF layers or a WorldClim zip, a table file, an arrays file); :func:`download_errors`
when WorldClim runs that share one download disagree on its ``url`` or ``sha256``.
"""

from __future__ import annotations

import os

# the files of a dataset.path folder that a source reads: GeoTIFF layers, a WorldClim zip
DATASET_FOLDER_SUFFIXES = (".tif", ".tiff", ".zip")
# the sources of samples without a grid: no spatial split, no coarsening, no map on a grid
# (their latent means are a table, one row per sample)
GRIDLESS_SOURCES = ("table", "arrays")


def dataset_paths(dataset: dict) -> list[str]:
    """``dataset.path`` as a list (one string is one path; empty: none)."""
    paths = dataset.get("path") or []
    return [paths] if isinstance(paths, str) else [str(p) for p in paths]


def dataset_files(dataset: dict) -> list[str]:
    """The files a run's ``prepare`` job reads from ``dataset.path``: each file named, and
    the GeoTIFFs and zips directly inside each folder named (docs/science.md §5).

    They are the job's inputs, so that a layer replaced or edited in place (a newer file)
    reruns ``prepare`` and everything downstream, as a changed key does; a folder's own
    time stamp would not change when a file inside it is rewritten. A path that does not
    exist is kept: :func:`dataset_path_errors` reports it before any job.
    """
    files = []
    for path in dataset_paths(dataset):
        if not os.path.isdir(path):
            files.append(path)
            continue
        inside = (os.path.join(path, name) for name in sorted(os.listdir(path)))
        files += [
            f
            for f in inside
            if os.path.isfile(f)
            and not os.path.basename(f).startswith(".")
            and f.lower().endswith(DATASET_FOLDER_SUFFIXES)
        ]
    return files


def dataset_path_errors(name: str, dataset: dict) -> list[str]:
    """Every ``dataset.path`` that does not exist (relative paths: from the working
    directory, where the workflow runs), by its key: caught before any job, not by the
    ``prepare`` job minutes later."""
    listed = isinstance(dataset.get("path"), list)
    source = dataset.get("source")
    errors = []
    for i, path in enumerate(dataset_paths(dataset)):
        key = f"config key runs.{name}.dataset.path" + (f"[{i}]" if listed else "")
        if not os.path.exists(path):
            errors.append(
                f"{key} = {path!r}: no such file or folder (from the working directory "
                f"{os.getcwd()!r}): expected an existing folder, zip or file"
            )
        elif (expected := _path_kind_error(source, path)) is not None:
            errors.append(f"{key} = {path!r}: {expected}")
    return errors


def _path_kind_error(source: str | None, path: str) -> str | None:
    """What is wrong with an existing ``path`` for ``source``: a folder given to the table
    source, a file of another format (a study that varies ``dataset.source`` keeps the
    base run's path); None when it is of the right kind."""
    from collapse_spectroscopy.datasets.arrays import ARRAYS_SUFFIXES  # lazy: rasterio
    from collapse_spectroscopy.datasets.rasters import RASTER_SUFFIXES  # lazy: rasterio
    from collapse_spectroscopy.datasets.table import (  # lazy: pyproj and rasterio
        CSV_SUFFIXES,
        NETCDF_SUFFIXES,
        PARQUET_SUFFIXES,
    )

    name = path.lower()
    if source == "arrays":
        if os.path.isdir(path) or not name.endswith(ARRAYS_SUFFIXES):
            return "not an arrays file for source 'arrays': expected one .npy or .npz file"
    elif source == "table":
        if os.path.isdir(path) or not name.endswith(
            CSV_SUFFIXES + PARQUET_SUFFIXES + NETCDF_SUFFIXES
        ):
            return "not a table for source 'table': expected one CSV, Parquet or NetCDF file"
    elif source == "rasters" and os.path.isfile(path):
        if not name.endswith((*RASTER_SUFFIXES, ".zip")):
            return (
                "not a layer file for source 'rasters': expected a folder, a .zip, or "
                ".tif/.tiff files"
            )
    return None


def download_errors(runs: dict) -> list[str]:
    """WorldClim runs without ``dataset.path`` that share a resolution share one download:
    their ``dataset.url`` and ``dataset.sha256`` must agree."""
    errors = []
    seen: dict[tuple[str, str], tuple[str, str]] = {}  # (resolution, key) -> (run, value)
    for name, run in runs.items():
        ds = run.get("dataset", {})
        if ds.get("source") != "worldclim" or ds.get("path"):
            continue
        resolution = ds.get("resolution", "10m")
        for key in ("url", "sha256"):
            if key not in ds:
                continue
            other, value = seen.setdefault((resolution, key), (name, ds[key]))
            if value != ds[key]:
                errors.append(
                    f"config key runs.{name}.dataset.{key} = {ds[key]!r} differs from "
                    f"runs.{other}.dataset.{key} = {value!r}: both runs download the one "
                    f"{resolution} archive; give them the same {key}"
                )
    return errors


# dataset keys of a worldclim run that say where its archive comes from, not what it holds
WORLDCLIM_ACQUISITION_KEYS = ("path", "url", "sha256")


def normalized_paths(dataset: dict) -> dict:
    """``dataset`` with each ``path`` normalized (no trailing ``/``, no ``./``): the same
    files written two ways are the same dataset."""
    if not dataset.get("path"):
        return dataset
    return {**dataset, "path": [os.path.normpath(p) for p in dataset_paths(dataset)]}
