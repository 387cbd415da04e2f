"""Coarse-graining a raster dataset: N x N input cells become one (docs/science.md §11).

``dataset.coarsen: N`` aggregates each block of N x N cells of the input grid (blocks
anchored at the grid's top-left corner) into one cell of a grid N times coarser, before
the split, so that the spatial blocks of the split stay geographic:

* **value**: per feature, the area-weighted mean over the block's cells that are valid
  in every layer (the samples of the fine grid), weights their ellipsoidal areas;
* **kept** where the valid cells cover at least ``dataset.coarsen_min_valid`` of the
  block's area. On a lon/lat grid a cell's area is its ellipsoidal area (one value per
  row, :func:`.stack.row_areas_km2_geographic`); on a projected grid every cell has the
  same projected area, so the share is the share of cells (the areal scale factor hardly
  varies across one block). A block cut short by the grid's right or bottom edge counts
  the input cells it holds;
* **geometry**: the coarse grid's transform is the input's scaled by N; a coarse cell's
  centre is its own centre (where the latent maps put it), and its area is the land it
  stands for, the summed area of its valid input cells, so that the split weighs a
  block by the same land area at every N.

``N = 1`` is the input unchanged (:func:`coarsen_samples` is not called). The block sums
are xarray's ``coarsen`` (``boundary="pad"``), the geometry :func:`.stack.stack_samples`
on the coarse grid, as for any raster.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyproj
import xarray as xr
from affine import Affine
from rasterio.crs import CRS

from collapse_spectroscopy.config.dataset_paths import GRIDLESS_SOURCES
from collapse_spectroscopy.config.settings import section_defaults
from collapse_spectroscopy.datasets.rasters import RasterStack
from collapse_spectroscopy.datasets.stack import Samples, row_areas_km2_geographic, stack_samples
from collapse_spectroscopy.errors import InputError

_DEFAULTS = section_defaults("dataset")  # the schema is the one home of these defaults

#: a block whose valid share is min_valid up to float rounding of the area sums is kept
_SHARE_ROUNDING = 1e-9


@dataclass
class CoarsenOptions:
    """``dataset.coarsen`` and ``dataset.coarsen_min_valid`` of a run's config."""

    factor: int = _DEFAULTS["coarsen"]
    min_valid: float = _DEFAULTS["coarsen_min_valid"]

    def check(self, source: str | None = None) -> tuple[int, float]:
        """The checked (factor, min_valid); InputError naming the key otherwise."""
        try:
            factor = int(self.factor)
            ok = factor == float(self.factor) and factor >= 1
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise InputError(
                f"dataset.coarsen = {self.factor!r}: expected an integer >= 1 "
                "(N x N input cells per coarse cell; 1 keeps the grid)"
            )
        try:
            share = float(self.min_valid)
        except (TypeError, ValueError):
            share = float("nan")
        if not 0 < share <= 1:
            raise InputError(
                f"dataset.coarsen_min_valid = {self.min_valid!r}: expected a share of a "
                "block's area in (0, 1]"
            )
        if factor > 1 and source in GRIDLESS_SOURCES:
            raise InputError(
                f"dataset.coarsen = {factor} applies to raster sources only (worldclim, "
                f"rasters, synthetic): source {source!r} has no grid to coarsen"
            )
        return factor, share


def _fine_grid(samples: Samples) -> tuple[tuple[int, int], Affine, CRS]:
    info = samples.info
    if samples.index is None or "grid_shape" not in info or "crs_wkt" not in info:
        raise InputError(
            "dataset.coarsen > 1 applies to raster sources only: these samples carry no grid"
        )
    shape = tuple(int(v) for v in info["grid_shape"])
    return shape, Affine(*info["transform"][:6]), CRS.from_wkt(info["crs_wkt"])


def cell_areas(shape: tuple[int, int], transform: Affine, crs: CRS) -> np.ndarray:
    """(height, width) area of every input cell, valid or not, for the valid share: km²
    on the ellipsoid for a lon/lat grid, the (equal) projected area otherwise."""
    h, w = shape
    pcrs = pyproj.CRS.from_wkt(crs.to_wkt())
    if pcrs.is_geographic:
        geod = pcrs.get_geod() or pyproj.Geod(ellps="WGS84")
        rows = row_areas_km2_geographic(transform, h, geod)
        return np.broadcast_to(rows[:, None], (h, w))
    return np.full((h, w), abs(transform.a * transform.e) / 1e6)


def block_sums(grid: np.ndarray, factor: int) -> np.ndarray:
    """Sums over N x N blocks of a (height, width) array, NaN counted as 0; blocks at the
    right and bottom edges hold the cells that are there (xarray, ``boundary="pad"``)."""
    da = xr.DataArray(np.nan_to_num(np.asarray(grid, dtype=np.float64)), dims=("y", "x"))
    return da.coarsen(y=factor, x=factor, boundary="pad").sum().to_numpy()


def coarsen_samples(samples: Samples, factor: int, min_valid: float) -> Samples:
    """The samples of the grid ``factor`` times coarser (rule in the module docstring).

    Parameters
    ----------
    samples : Samples
        A raster source's samples (cells valid in every layer), with their grid in
        ``info`` (``grid_shape``, ``transform``, ``crs_wkt``) and positions in ``index``.
    factor : int
        ``dataset.coarsen``, N >= 1.
    min_valid : float
        ``dataset.coarsen_min_valid``, the share of a block's area that must be valid.

    Returns
    -------
    Samples
        One sample per kept coarse cell, row-major on the coarse grid; ``info`` describes
        the coarse grid, with ``coarsen`` (factor, share, input grid, counts) added.

    Raises
    ------
    InputError
        Samples without a grid, or no block with enough valid area.
    """
    shape, transform, crs = _fine_grid(samples)
    h, w = shape
    valid_area = np.zeros(h * w)
    valid_area[samples.index] = samples.area_km2
    area_sum = block_sums(valid_area.reshape(h, w), factor)  # the land each block stands for
    areas = cell_areas(shape, transform, crs)  # the share's areas, valid or not
    held = np.zeros(h * w, dtype=bool)
    held[samples.index] = True
    share = block_sums(np.where(held.reshape(h, w), areas, 0.0), factor) / block_sums(areas, factor)
    keep = (share >= min_valid * (1 - _SHARE_ROUNDING)) & (area_sum > 0)
    if not keep.any():
        raise InputError(
            f"dataset.coarsen = {factor} with dataset.coarsen_min_valid = {min_valid:g}: no "
            f"block of {factor} x {factor} cells is valid over that share of its area; "
            "expected a smaller coarsen or coarsen_min_valid"
        )
    layers = []
    fine = np.zeros(h * w)
    for j in range(samples.x.shape[1]):  # one feature at a time: one grid in memory
        fine[samples.index] = samples.x[:, j].astype(np.float64) * samples.area_km2
        mean = block_sums(fine.reshape(h, w), factor) / np.where(keep, area_sum, 1.0)
        layers.append(np.where(keep, mean, np.nan))
    coarse = RasterStack(
        layers=layers,
        valid=keep,
        names=list(samples.feature_names),
        labels=list(samples.info.get("layers", samples.feature_names)),
        transform=transform @ Affine.scale(factor),
        crs=crs,
        nodata=samples.info.get("nodata"),
    )
    out = stack_samples(coarse)
    out.area_km2 = area_sum[keep]  # row-major, the order of stack_samples' samples
    out.info["coarsen"] = {
        "factor": int(factor),
        "min_valid": float(min_valid),
        "input_grid_shape": list(shape),
        "input_transform": list(tuple(transform)[:6]),
        "input_cells": int(samples.n),
        "blocks_with_data": int((area_sum > 0).sum()),
        "blocks_kept": int(keep.sum()),
        "rule": (
            "area-weighted mean over the valid input cells of each N x N block; a block "
            "kept where its valid cells cover at least min_valid of its area; a coarse "
            "cell's area is the summed area of its valid input cells"
        ),
    }
    return out
