"""Reading a stack of single-band GeoTIFFs that share one grid.

A *layer* is one single-band raster; its feature name is the file's stem (``bio_10.tif`` is
feature ``bio_10``). Layers come from a folder, an explicit list of files, or a zip archive
of GeoTIFFs. A folder or a zip is ordered by natural sort (``bio_10`` after ``bio_9``); an
explicit list keeps the order it was given in, since whoever wrote it chose that order.

Every layer must have exactly one band and the same shape, CRS and affine transform as the
first layer; anything else raises :class:`~collapse_spectroscopy.errors.InputError` naming
both files and the differing values. A cell is *valid* in a layer when it is finite, not
equal to the layer's nodata value, and not masked by an internal GDAL mask band. The nodata
value is the file's own tag unless ``dataset.nodata`` gives one for every layer (for files
whose fill value is not declared); a value a layer's type cannot hold matches none of its
cells. A layer without a single valid cell is an error (it would empty the whole stack).
"""

from __future__ import annotations

import contextlib
import os
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from natsort import natsorted
from rasterio.enums import MaskFlags
from rasterio.errors import RasterioIOError

from collapse_spectroscopy.errors import InputError

RASTER_SUFFIXES = (".tif", ".tiff")


@dataclass(frozen=True)
class LayerSource:
    """Where one layer's bytes come from.

    ``label`` names it in messages (a path, or ``archive.zip!member.tif``); ``open`` returns
    a context manager yielding an open rasterio dataset.
    """

    name: str
    label: str
    open: Callable[[], contextlib.AbstractContextManager]


@dataclass
class RasterStack:
    """Layers read onto one grid.

    Attributes
    ----------
    layers : list of ndarray
        One (height, width) array per layer, in the layer's own dtype.
    valid : ndarray of bool, (height, width)
        Cells valid in every layer.
    names : list of str
        Feature names, in layer order.
    labels : list of str
        Where each layer came from (for messages and metadata).
    transform : affine.Affine
        Pixel-to-CRS transform of the shared grid.
    crs : rasterio.crs.CRS
        The shared CRS.
    nodata : float or None
        ``dataset.nodata`` if given, else the first layer's nodata tag (None if untagged):
        the fill value of rasters written back onto this grid (the latent maps).
    """

    layers: list[np.ndarray]
    valid: np.ndarray
    names: list[str]
    labels: list[str]
    transform: Affine
    crs: object
    nodata: float | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return self.valid.shape


def _file_layer(path: Path) -> LayerSource:
    def opener(p=path):
        return rasterio.open(p)

    return LayerSource(name=path.stem, label=str(path), open=opener)


def _is_raster_name(name: str) -> bool:
    return name.lower().endswith(RASTER_SUFFIXES) and not Path(name).name.startswith(".")


def folder_layers(folder: Path) -> list[LayerSource]:
    """The GeoTIFFs directly inside ``folder``, in natural sort order."""
    files = natsorted(
        (p for p in folder.iterdir() if p.is_file() and _is_raster_name(p.name)),
        key=lambda p: p.name,
    )
    if not files:
        raise InputError(f"raster folder {str(folder)!r} holds no GeoTIFF (*.tif, *.tiff) files")
    return [_file_layer(p) for p in files]


def open_zip(path: Path) -> zipfile.ZipFile:
    """Open ``path`` as a zip archive, turning a corrupt or truncated file into InputError."""
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise InputError(
            f"zip archive {str(path)!r} cannot be opened ({exc}): expected a complete zip "
            "of GeoTIFFs; the file is truncated or corrupt -- delete it and download it again"
        ) from exc


def zip_members(path: Path) -> list[str]:
    """The GeoTIFF members of a zip archive, in natural sort order of their file names."""
    with open_zip(path) as zf:
        names = [n for n in zf.namelist() if not n.endswith("/") and _is_raster_name(n)]
    if not names:
        raise InputError(f"zip archive {str(path)!r} holds no GeoTIFF (*.tif, *.tiff) members")
    return natsorted(names, key=lambda n: Path(n).name)


def zip_layer(path: Path, member: str, name: str | None = None) -> LayerSource:
    """A layer read from ``member`` of zip archive ``path`` (CRC-checked, into memory)."""
    label = f"{path}!{member}"

    @contextlib.contextmanager
    def opener() -> Iterator:
        with open_zip(path) as zf:
            try:
                data = zf.read(member)
            except KeyError as exc:
                raise InputError(f"zip archive {str(path)!r} has no member {member!r}") from exc
            except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as exc:
                raise InputError(
                    f"zip archive {str(path)!r}: member {member!r} is corrupt ({exc}); "
                    "expected a complete archive -- delete it and download it again"
                ) from exc
        with rasterio.MemoryFile(data) as mem, mem.open() as ds:
            yield ds

    return LayerSource(name=name or Path(member).stem, label=label, open=opener)


def zip_layers(path: Path) -> list[LayerSource]:
    """Every GeoTIFF member of a zip archive, in natural sort order."""
    return [zip_layer(path, m) for m in zip_members(path)]


def layers_from_paths(
    paths: Sequence[str | os.PathLike], key: str = "dataset.path"
) -> list[LayerSource]:
    """Resolve ``dataset.path`` to layers: one folder, one zip, or a list of GeoTIFF files."""
    if not paths:
        raise InputError(f"{key}: no path given; expected a folder, a zip, or GeoTIFF files")
    paths = [Path(p) for p in paths]
    if len(paths) == 1:
        p = paths[0]
        if p.is_dir():
            return folder_layers(p)
        if p.is_file() and p.suffix.lower() == ".zip":
            return zip_layers(p)
    layers = []
    for p in paths:
        if not p.exists():
            raise InputError(
                f"{key}: {str(p)!r} does not exist: expected a folder, a .zip, or .tif/.tiff files"
            )
        if p.is_dir() or not _is_raster_name(p.name):
            raise InputError(
                f"{key}: {str(p)!r} is not a GeoTIFF file; expected one folder, one .zip, or a "
                "list of .tif/.tiff files"
            )
        layers.append(_file_layer(p))
    return layers


def value_in_dtype(value: float, dtype) -> np.generic | None:
    """``value`` as a number of ``dtype`` (float32 rounds ``-3.4e38`` to its own sentinel),
    or None where no element of that type can equal it (a fraction or an out-of-range
    value for an integer type, an overflow to infinity or NaN for a float type)."""
    dtype = np.dtype(dtype)
    value = float(value)
    if np.issubdtype(dtype, np.floating):
        with np.errstate(over="ignore"):
            out = dtype.type(value)
        return out if np.isfinite(out) else None
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        if value.is_integer() and info.min <= value <= info.max:
            return dtype.type(int(value))
    return None


def _valid_mask(ds, band: np.ndarray, nodata: float | None = None) -> np.ndarray:
    """Cells of ``band`` that hold data: finite, not ``nodata`` (default: the file's tag)
    and not masked by the file's mask band."""
    valid = np.ones(band.shape, dtype=bool)
    if np.issubdtype(band.dtype, np.floating):
        valid &= np.isfinite(band)
    nodata = ds.nodata if nodata is None else nodata
    if nodata is not None and not np.isnan(nodata):
        nd = value_in_dtype(nodata, band.dtype)
        if nd is not None:
            valid &= band != nd
    flags = ds.mask_flag_enums[0]
    if MaskFlags.per_dataset in flags and MaskFlags.nodata not in flags:
        valid &= ds.read_masks(1) > 0
    return valid


@dataclass(frozen=True)
class _Grid:
    """The first layer's grid, which every other layer must share."""

    label: str
    shape: tuple[int, int]
    crs: object
    transform: Affine
    nodata: float | None  # the first layer's nodata value (``dataset.nodata`` if given)


def _check_unique_names(layers: Sequence[LayerSource]) -> None:
    names = [lay.name for lay in layers]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InputError(
            f"layer names must be unique (they name the features), got duplicates {dupes} "
            f"from {[lay.label for lay in layers if lay.name in dupes]}"
        )


def _check_band_and_crs(label: str, ds) -> None:
    if ds.count != 1:
        raise InputError(f"layer {label!r} has {ds.count} bands: expected a single-band raster")
    if ds.crs is None:
        raise InputError(
            f"layer {label!r} has no CRS: expected a georeferenced GeoTIFF (e.g. EPSG:4326)"
        )


def _check_same_grid(label: str, ds, ref: _Grid) -> None:
    """Raise InputError naming both layers when ``ds`` is not on the grid of ``ref``."""
    shape = (ds.height, ds.width)
    if shape != ref.shape:
        raise InputError(
            f"layer {label!r} has shape {shape} (rows, cols) but layer "
            f"{ref.label!r} has {ref.shape}: all layers must share one grid"
        )
    if ds.crs != ref.crs:
        raise InputError(
            f"layer {label!r} has CRS {ds.crs.to_string()!r} but layer "
            f"{ref.label!r} has {ref.crs.to_string()!r}: all layers must share "
            "one CRS"
        )
    if not ds.transform.almost_equals(ref.transform, precision=1e-9):
        raise InputError(
            f"layer {label!r} has transform {tuple(ds.transform)[:6]} but "
            f"layer {ref.label!r} has {tuple(ref.transform)[:6]}: all layers must "
            "share one grid (same origin and cell size)"
        )


def _read_layer(
    lay: LayerSource, ref: _Grid | None, nodata: float | None
) -> tuple[np.ndarray, np.ndarray, _Grid]:
    """One layer's band and valid cells, checked against the first layer's grid ``ref``
    (``None`` for the first layer); returns them with the grid (``ref`` or the first's)."""
    try:
        with lay.open() as ds:
            _check_band_and_crs(lay.label, ds)
            if ref is None:
                own = ds.nodata if nodata is None else nodata
                ref = _Grid(lay.label, (ds.height, ds.width), ds.crs, ds.transform, own)
            else:
                _check_same_grid(lay.label, ds, ref)
            band = ds.read(1)
            ok = _valid_mask(ds, band, nodata)
    except InputError:
        raise
    except (RasterioIOError, OSError) as exc:
        raise InputError(
            f"layer {lay.label!r} cannot be read as a GeoTIFF ({exc}): expected a readable "
            "single-band raster"
        ) from exc
    if not ok.any():
        raise InputError(
            f"layer {lay.label!r} is entirely nodata/non-finite: expected at least one valid cell"
        )
    return band, ok, ref


def read_stack(layers: Sequence[LayerSource], nodata: float | None = None) -> RasterStack:
    """Read ``layers`` onto one grid and find the cells valid in all of them.

    ``nodata`` (``dataset.nodata``), if given, replaces every layer's own nodata tag.

    Raises
    ------
    InputError
        A layer that cannot be read, has more than one band, has no CRS, differs from the
        first layer in shape, CRS or transform, or has no valid cell.
    """
    if not layers:
        raise InputError("no raster layers to read")
    _check_unique_names(layers)
    arrays: list[np.ndarray] = []
    valid = None
    ref = None
    for lay in layers:
        band, ok, ref = _read_layer(lay, ref, nodata)
        valid = ok if valid is None else (valid & ok)
        arrays.append(band)
    assert ref is not None and valid is not None
    return RasterStack(
        layers=arrays,
        valid=valid,
        names=[lay.name for lay in layers],
        labels=[lay.label for lay in layers],
        transform=ref.transform,
        crs=ref.crs,
        nodata=None if ref.nodata is None else float(ref.nodata),
    )
