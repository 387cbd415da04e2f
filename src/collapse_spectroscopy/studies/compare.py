"""A study's comparison: its runs' spectra side by side, and how stable their effective
variables are against the base run's (docs/science.md §11).

For each value of the varied key (:mod:`.studies`), its run's spectra table gives
``T_k``, ``u_k``, ``lambda_k / V`` and the fit points per rank. The effective variables
are compared at one scan point per run, the one nearest the study's temperature (same
seed), through :func:`.maps.latent_maps` (active latents ``rho_k > rho_min``, ranked,
signs fixed):

* **subspace angle** of rank k: the largest principal angle (degrees,
  ``scipy.linalg.subspace_angles``) between the span of the leading k decoder columns
  (the loadings, standardized units; for an MLP the mean decoder Jacobian) of the run and
  that of the base run. 0 means the same k effective directions, 90 a direction of one
  orthogonal to all of the other's. Defined for k up to the fewer active latents.
* **map correlation** of rank k (raster runs): the Pearson correlation over the area the
  two maps share, each cell weighted by its area (a 10' cell near the pole covers a
  fraction of one at the equator, and an unweighted correlation would count the cell, not
  the land), of the run's rank-k latent map with the base run's rank-k map resampled to the
  run's grid (:func:`resample_map`: the area-weighted mean over each block of the base
  grid, as ``dataset.coarsen`` aggregates the data). A latent and its decoder flip
  together without changing the model, so each of the run's latents is signed to agree
  with the base run's latent of its rank (:func:`base_signs`: positive dot product of their
  loadings) rather than by the maps' own largest-loading rule, which flips a latent whose
  two largest loadings nearly tie and gave r ~ -1 for maps ~1 degree apart.

:func:`study_table` writes both next to the spectra, in long form, one row per (value,
rank): the contract of ``results/studies/NAME/spectra.csv`` is its first six columns.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.linalg import subspace_angles

from collapse_spectroscopy.analysis.equilibration import scan_under_equilibrated
from collapse_spectroscopy.errors import InputError
from collapse_spectroscopy.store import scanfile
from collapse_spectroscopy.store.atomic import atomic_path
from collapse_spectroscopy.store.prepared import load_prepared

STUDY_COLUMNS = ["value", "rank", "collapse_threshold", "utility", "pca_ratio", "fit_points"]
EXTRA_COLUMNS = ["run", "temperature", "active_latents", "subspace_angle_deg", "map_correlation"]


@dataclass
class Member:
    """One value of a study and where its run's results are."""

    value: object
    run_dir: Path  # results/RUN
    temperature: str  # the scan point's T label (scan/T=LABEL/)
    seed: int

    @property
    def name(self) -> str:
        return Path(self.run_dir).name

    def point(self, suffix: str) -> Path:
        return Path(self.run_dir) / "scan" / f"T={self.temperature}" / f"seed={self.seed}{suffix}"


def leading_subspace_angles(loadings: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Largest principal angle in degrees between the spans of the leading ``k`` rows of
    ``loadings`` and of ``base`` (each (n_active, d), rank order), for ``k = 1 ..
    min(n, n_base)``."""
    n = min(loadings.shape[0], base.shape[0])
    out = np.empty(n)
    for k in range(1, n + 1):
        angles = subspace_angles(loadings[:k].T, base[:k].T)
        out[k - 1] = np.degrees(np.max(angles))
    return out


def resample_map(values: np.ndarray, areas: np.ndarray, factor: int) -> np.ndarray:
    """A (height, width) map with NaN off its cells on a grid ``factor`` times coarser
    (blocks from the top-left corner): the area-weighted mean of each block's cells that
    hold a value (``areas``: (height, width) cell areas), NaN for a block with none."""
    from collapse_spectroscopy.datasets.coarsen import block_sums  # lazy: pyproj and rasterio

    held = np.isfinite(values)
    weight = np.where(held, areas, 0.0)
    total = block_sums(weight, factor)
    sums = block_sums(np.where(held, values * areas, 0.0), factor)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, sums / total, np.nan)


def weighted_pearson(a: np.ndarray, b: np.ndarray, weights: np.ndarray) -> float:
    """The Pearson correlation of ``a`` and ``b`` over the entries both hold (finite), each
    entry weighted by ``weights`` (cell areas); NaN with fewer than 3 such entries or no
    spread."""
    both = np.isfinite(a) & np.isfinite(b) & (weights > 0)
    if both.sum() < 3:
        return float("nan")
    w = weights[both] / weights[both].sum()
    x, y = a[both] - w @ a[both], b[both] - w @ b[both]
    denom = np.sqrt((w @ (x * x)) * (w @ (y * y)))
    return float(w @ (x * y) / denom) if denom > 0 else float("nan")


def base_signs(loadings: np.ndarray, base: np.ndarray) -> np.ndarray:
    """+1 or -1 per rank (up to the fewer active latents): the sign that makes the run's
    rank-k loadings agree with the base run's (positive dot product; +1 when orthogonal)."""
    n = min(loadings.shape[0], base.shape[0])
    dots = np.einsum("kd,kd->k", loadings[:n], base[:n])
    return np.where(dots < 0, -1.0, 1.0)


@dataclass
class Effective:
    """One run's effective variables at the compared scan point."""

    loadings: np.ndarray  # (n_active, d)
    bands: np.ndarray | None  # (n_active, height, width) latent maps, NaN off the data
    grid: object  # latent_maps.Grid or None (a table)


def effective_variables(member: Member, rho_min: float) -> Effective:
    """The active latents of ``member``'s compared scan point: loadings and maps."""
    from collapse_spectroscopy.maps import latent_maps  # lazy: torch

    nc, pt = member.point(".nc"), member.point(".pt")
    for path in (nc, pt):
        if not path.is_file():
            raise InputError(f"study run {member.name!r}: scan point {str(path)!r} does not exist")
    model, _ = latent_maps.load_model(pt)
    ds = load_prepared(Path(member.run_dir) / "data" / "prepared.npz")
    result = latent_maps.latent_maps(ds, model, scanfile.read(nc), rho_min)
    grid = latent_maps.dataset_grid(ds)
    bands = None
    if grid is not None:
        bands = latent_maps.grid_bands(result, ds, grid).astype(np.float64)
        bands[~np.isfinite(bands) | (bands == latent_maps.output_nodata(grid))] = np.nan
    return Effective(loadings=result.loadings, bands=bands, grid=grid)


def grid_factor(grid, base_grid) -> int | None:
    """How many base-grid cells a cell of ``grid`` spans per side, when ``grid`` is the
    base grid coarsened from the same top-left corner (same CRS); else None."""
    if grid is None or base_grid is None or grid.crs_wkt != base_grid.crs_wkt:
        return None
    ratio = grid.transform[0] / base_grid.transform[0]
    factor = int(round(ratio))
    same_corner = np.allclose(
        [grid.transform[2], grid.transform[5]],
        [base_grid.transform[2], base_grid.transform[5]],
        atol=1e-9 * abs(base_grid.transform[0]),
    )
    expected = tuple(-(-s // factor) for s in base_grid.shape) if factor >= 1 else None
    if factor < 1 or abs(ratio - factor) > 1e-9 or not same_corner or grid.shape != expected:
        return None
    return factor


def map_correlations(run: Effective, base: Effective) -> np.ndarray:
    """Rank by rank, the area-weighted correlation of ``run``'s latent map, signed to agree
    with the base run's latent of its rank, with the base run's map resampled to ``run``'s
    grid; NaN where either has no map or the grids do not nest."""
    n = min(run.loadings.shape[0], base.loadings.shape[0])
    out = np.full(n, np.nan)
    factor = grid_factor(run.grid, base.grid)
    if factor is None or run.bands is None or base.bands is None:
        return out
    from affine import Affine
    from rasterio.crs import CRS

    from collapse_spectroscopy.datasets.coarsen import cell_areas  # lazy: pyproj and rasterio

    def areas(grid):
        crs = CRS.from_wkt(grid.crs_wkt)
        return np.asarray(cell_areas(grid.shape, Affine(*grid.transform[:6]), crs))

    base_areas, run_areas = areas(base.grid), areas(run.grid).ravel()
    signs = base_signs(run.loadings, base.loadings)
    for k in range(n):
        coarse = resample_map(base.bands[k], base_areas, factor)
        out[k] = weighted_pearson(signs[k] * run.bands[k].ravel(), coarse.ravel(), run_areas)
    return out


def point_warnings(member: Member, rho_min: float) -> list[str]:
    """What makes ``member``'s compared scan point a poor place to compare effective
    variables, one line each (empty when nothing does): it is under-equilibrated
    (:func:`.equilibration.scan_under_equilibrated`), or two of its active ranks carry one PCA
    mode (``latent_mode``, linear runs), so that its leading-k decoders and maps compare a
    mode split over latents rather than the effective variables (docs/science.md §11)."""

    path = member.point(".nc")
    if not path.is_file():
        return []
    point = scanfile.read(path)
    where = f"run {member.name!r}, scan point T={member.temperature}, seed {member.seed}"
    out = []
    if scan_under_equilibrated(point).any():
        out.append(
            f"{where} is under-equilibrated (it stopped at max_updates still improving): its "
            "latents may not have turned onto the components yet"
        )
    if "latent_mode" in point and "signal_fraction" in point:
        rho = np.asarray(point["signal_fraction"].values, dtype=np.float64).ravel()
        held = np.asarray(point["latent_mode"].values).ravel()[rho > rho_min]
        modes, counts = np.unique(held, return_counts=True)
        for mode in modes[counts > 1]:
            ranks = [str(int(r) + 1) for r in np.flatnonzero(held == mode)]
            listed = f"{', '.join(ranks[:-1])} and {ranks[-1]}"
            out.append(f"{where}: ranks {listed} carry the same PCA mode, {int(mode)}")
    return out


def study_table(members: list[Member], base: Member, rho_min: float) -> pd.DataFrame:
    """The long table of a study: one row per (value, rank) of each member's spectra
    table, with the scan point compared and the stability columns (module docstring)."""
    base_eff = effective_variables(base, rho_min)
    frames = []
    for m in members:
        path = Path(m.run_dir) / "spectra.csv"
        if not path.is_file():
            raise InputError(f"study run {m.name!r}: spectra table {str(path)!r} does not exist")
        spectra = pd.read_csv(path)
        missing = [c for c in STUDY_COLUMNS[1:] if c not in spectra.columns]
        if missing:
            raise InputError(f"{str(path)!r} lacks column(s) {', '.join(missing)}")
        eff = base_eff if Path(m.run_dir) == Path(base.run_dir) else effective_variables(m, rho_min)
        angles = leading_subspace_angles(eff.loadings, base_eff.loadings)
        corr = map_correlations(eff, base_eff)
        df = spectra[STUDY_COLUMNS[1:]].copy()
        df.insert(0, "value", [m.value] * len(df))
        df["run"] = m.name
        df["temperature"] = float(m.temperature)
        df["active_latents"] = eff.loadings.shape[0]
        rank = df["rank"].to_numpy()
        df["subspace_angle_deg"] = [angles[k - 1] if k <= angles.size else np.nan for k in rank]
        df["map_correlation"] = [corr[k - 1] if k <= corr.size else np.nan for k in rank]
        frames.append(df)
    return pd.concat(frames, ignore_index=True)[STUDY_COLUMNS + EXTRA_COLUMNS]


def write_table(path: str | os.PathLike, table: pd.DataFrame) -> None:

    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.10g")
