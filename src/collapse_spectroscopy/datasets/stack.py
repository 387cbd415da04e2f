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
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyproj
from affine import Affine

from ..errors import InputError
from .rasters import RasterStack

#: Points per east-west cell edge when outlining a lon/lat cell on the ellipsoid.
EDGE_POINTS = 16


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
    info : dict
        Source description for the metadata (paths, grid, CRS, ...).
    """

    x: np.ndarray
    feature_names: list[str]
    lon: np.ndarray | None = None
    lat: np.ndarray | None = None
    area_km2: np.ndarray | None = None
    split: np.ndarray | None = None
    info: dict = field(default_factory=dict)

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
        x[:, j] = band[valid]
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
        "layers": list(stack.labels),
        "n_valid_cells": n,
    }
    return Samples(x=x, feature_names=list(stack.names), lon=lon, lat=lat, area_km2=area, info=info)
