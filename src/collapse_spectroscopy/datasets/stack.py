"""From a raster stack to samples: one sample per grid cell valid in every layer.

Each sample carries its feature vector ``x`` (float32, source units), the longitude and
latitude of the cell centre (degrees, WGS 84) and the cell's area in km² on the CRS's
ellipsoid, computed with :mod:`pyproj`:

* geographic CRS (lon/lat grid): the area of a cell depends only on its row, so each row's
  area is computed once with ``Geod.polygon_area_perimeter`` on the cell outline, whose
  east-west edges are densified so that they follow the parallels rather than geodesics;
* projected CRS: the projected cell area divided by the projection's areal scale factor at
  the cell centre (``Proj.get_factors``), exact in the limit of small cells.

Samples are ordered row-major (north to south for north-up grids, then west to east).

Before a layer becomes a feature, its values on those cells are checked for a fill value
that no nodata tag declared (:func:`undeclared_nodata`): such a value is no measurement,
yet standardization and PCA would take it for one -- a float32 fill of -3.4e38 on a fifth
of the cells makes every feature's std ~1.5e38 and the spectrum [1, 0, 0, ...].
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyproj
from affine import Affine

from collapse_spectroscopy.datasets.rasters import RasterStack
from collapse_spectroscopy.errors import InputError

#: Points per east-west cell edge when outlining a lon/lat cell on the ellipsoid.
EDGE_POINTS = 16

#: No layer in its source units holds values this large (the largest physical quantities
#: a raster stores, e.g. populations or areas in m², stay far below); what does is a fill
#: value such as float32's lowest -3.4e38 (GDAL's and WorldClim's) or float64's 1.8e308.
IMPLAUSIBLE_ABS = 1e30
#: A fill value that looks like data (-9999, 65535) is found as an extreme value (the
#: minimum or maximum) held by at least this share of the cells ...
SHARED_SHARE = 0.01
#: ... and set apart from all the other values by more than this fraction of their range.
#: On the 19 WorldClim 2.1 10' layers the extreme values held by >= 1 % of the cells (the
#: zeros of the dry-month precipitations) lie within 0.003 of the range of the rest, and
#: -9999 below precipitations up to ~11,000 mm lies 0.9 of it away: 0.5 separates them.
SHARED_GAP = 0.5


def undeclared_nodata(values: np.ndarray) -> tuple[np.generic, int, str] | None:
    """A value among ``values`` (one feature on its valid cells) that looks like an
    undeclared nodata fill, with its count and why; None if there is none.

    Two signs: values with ``|x| > 1e30`` (:data:`IMPLAUSIBLE_ABS`), or an extreme value
    held by >= 1 % of the cells and farther from the other values than half their range
    (:data:`SHARED_SHARE`, :data:`SHARED_GAP`). The second sign leaves alone zero (many
    measurements, dry-month precipitation or counts, hold genuine zeros apart from the
    rest) and a feature of fewer than three other values (a category layer, say: it has
    no range to judge by).
    """
    v = np.asarray(values).ravel()
    if v.size == 0:
        return None
    if np.issubdtype(v.dtype, np.floating):
        huge = np.abs(v) > IMPLAUSIBLE_ABS  # in v's own dtype: no float64 copy of a layer
        if huge.any():
            found, counts = np.unique(v[huge], return_counts=True)
            return found[counts.argmax()], int(huge.sum()), f"|x| > {IMPLAUSIBLE_ABS:g}"
    for end, name in ((v.min(), "minimum"), (v.max(), "maximum")):
        if end == 0:
            continue
        at = v == end
        count = int(at.sum())
        if count < max(2, SHARED_SHARE * v.size):
            continue
        rest = v[~at]
        if rest.size == 0:
            continue  # a constant feature: standardization says so, naming it
        lo, hi = rest.min(), rest.max()
        if not np.any((rest > lo) & (rest < hi)):
            continue
        gap = float(lo) - float(end) if name == "minimum" else float(end) - float(hi)
        if gap > SHARED_GAP * (float(hi) - float(lo)):
            return end, count, f"the {name}, set apart from all other values ({lo!s} .. {hi!s})"
    return None


def check_no_undeclared_nodata(
    values: np.ndarray, what: str, among: str = "cells valid in every layer", tag_hint=True
) -> None:
    """Raise InputError naming ``what`` (a layer or column) if ``values`` (its values on
    ``among``) hold an undeclared fill; the message says how to declare it
    (``dataset.nodata``, or the GeoTIFF's nodata tag)."""
    found = undeclared_nodata(values)
    if found is None:
        return
    value, count, why = found
    value = str(value)  # numpy's shortest repr in the layer's type: -3.4e+38, not -3.3999...
    tag = f", or tag the file, e.g. `rio edit-info --nodata {value} FILE`" if tag_hint else ""
    raise InputError(
        f"{what}: {count:,} of the {np.size(values):,} {among} hold {value} ({why}), "
        "which looks like a nodata value the file does not declare: declare it with "
        f"dataset.nodata: {value} in the run's config (prepare --nodata={value}){tag}"
    )


@dataclass
class Samples:
    """Samples x features, with optional geography.

    Attributes
    ----------
    x : ndarray, float32, (n, d)
        Features in source units.
    feature_names : list of str, (d,)
    lon, lat : ndarray, float64, (n,) or None
        Cell-centre coordinates in degrees (WGS 84); None for non-geographic tables.
    area_km2 : ndarray, float64, (n,) or None
        Cell area in km² on the ellipsoid.
    split : ndarray of str or None
        A split label per sample given by the source (a table's split column).
    index : ndarray, int64, (n,) or None
        Where each sample sits in its source: the row-major flat cell index on the grid
        (``row * width + col``) for rasters, the 0-based row of the table for tables.
    info : dict
        Source description for the metadata (paths, grid, CRS, ...).
    sample_shape : list of int or None
        The shape each sample had before it was flattened into its d features (the
        arrays source: an image's (height, width), say; product d); None: a vector.
    """

    x: np.ndarray
    feature_names: list[str]
    lon: np.ndarray | None = None
    lat: np.ndarray | None = None
    area_km2: np.ndarray | None = None
    split: np.ndarray | None = None
    info: dict = field(default_factory=dict)
    index: np.ndarray | None = None
    sample_shape: list[int] | None = None

    @property
    def n(self) -> int:
        return self.x.shape[0]

    @property
    def is_geographic(self) -> bool:
        return self.lon is not None


def _check_rectilinear(transform: Affine) -> None:
    if transform.b != 0 or transform.d != 0:
        raise InputError(
            f"raster transform {tuple(transform)[:6]} is rotated or sheared: expected a "
            "north-up grid (no rotation terms)"
        )


def row_areas_km2_geographic(transform: Affine, height: int, geod: pyproj.Geod) -> np.ndarray:
    """Area in km² of one cell in each row of a regular lon/lat grid, on ``geod``.

    Parameters
    ----------
    transform : affine.Affine
        Pixel-to-degrees transform (no rotation).
    height : int
        Number of rows.

    Returns
    -------
    ndarray, float64, (height,)
    """
    _check_rectilinear(transform)
    dlon = abs(transform.a)
    lon_edge = np.linspace(0.0, dlon, EDGE_POINTS)
    areas = np.empty(height)
    for r in range(height):
        lat0 = transform.f + r * transform.e
        lat1 = lat0 + transform.e
        lat0, lat1 = np.clip([lat0, lat1], -90.0, 90.0)
        # Outline: along the parallel lat0 eastward, then back along lat1 westward.
        lons = np.concatenate([lon_edge, lon_edge[::-1]])
        lats = np.concatenate([np.full(EDGE_POINTS, lat0), np.full(EDGE_POINTS, lat1)])
        area, _ = geod.polygon_area_perimeter(lons, lats)
        areas[r] = abs(area) / 1e6
    return areas


def stack_samples(stack: RasterStack) -> Samples:
    """Samples of the cells valid in every layer of ``stack``.

    Returns
    -------
    Samples
        ``x`` float32 (n, d) in source units, ``lon``/``lat`` in degrees (WGS 84),
        ``area_km2`` on the CRS's ellipsoid.
    """
    valid = stack.valid
    n = int(valid.sum())
    if n == 0:
        raise InputError(
            f"no grid cell is valid in all {len(stack.names)} layers "
            f"({', '.join(stack.labels)}): expected overlapping valid data"
        )
    rows, cols = np.nonzero(valid)
    x = np.empty((n, len(stack.layers)), dtype=np.float32)
    for j, band in enumerate(stack.layers):
        values = band[valid]
        # on the cells valid in every layer: a fill another layer masks does no harm
        check_no_undeclared_nodata(values, f"layer {stack.labels[j]!r}")
        x[:, j] = values
    t = stack.transform
    _check_rectilinear(t)
    crs = pyproj.CRS.from_user_input(stack.crs.to_wkt())
    xc = t.c + (cols + 0.5) * t.a
    yc = t.f + (rows + 0.5) * t.e
    if crs.is_geographic and crs.equals("EPSG:4326", ignore_axis_order=True):
        lon, lat = xc, yc
    else:
        to_wgs84 = pyproj.Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
        lon, lat = to_wgs84.transform(xc, yc)
    if crs.is_geographic:
        geod = crs.get_geod() or pyproj.Geod(ellps="WGS84")
        area_row = row_areas_km2_geographic(t, valid.shape[0], geod)
        area = area_row[rows]
    else:
        try:
            # get_factors takes geographic coordinates on the projection's own datum.
            geo = pyproj.Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True)
            glon, glat = geo.transform(xc, yc)
            factors = pyproj.Proj(crs).get_factors(glon, glat, errcheck=True)
        except Exception as exc:  # pyproj raises its own types for exotic CRSs
            raise InputError(
                f"cannot compute cell areas for CRS {crs.to_string()!r} ({exc}): expected a "
                "geographic or a standard projected CRS"
            ) from exc
        area = abs(t.a * t.e) / np.asarray(factors.areal_scale) / 1e6
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    area = np.asarray(area, dtype=np.float64)
    if not (np.all(np.isfinite(lon)) and np.all(np.isfinite(lat)) and np.all(area > 0)):
        raise InputError(
            f"cell centres or areas are not finite for CRS {crs.to_string()!r}: expected a "
            "grid inside the CRS's area of use"
        )
    info = {
        "grid_shape": list(valid.shape),
        "transform": list(tuple(t)[:6]),
        "crs": crs.to_string(),
        "crs_wkt": stack.crs.to_wkt(),  # exact, for writing maps on the input grid
        "nodata": stack.nodata,
        "layers": list(stack.labels),
        "n_valid_cells": n,
    }
    index = np.flatnonzero(valid.ravel())  # row-major, the order of rows, cols above
    return Samples(
        x=x,
        feature_names=list(stack.names),
        lon=lon,
        lat=lat,
        area_km2=area,
        info=info,
        index=index.astype(np.int64),
    )
