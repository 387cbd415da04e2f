"""Data helpers shared by the figures (docs/science.md §6): the scan on its ``(T, seed,
rank)`` grid, the ranks that get a colour, the under-equilibrated points and the
quantities built from them, the spectra table by rank, whether the scan's model is
nonlinear (its PCA overlays are then the linear null model, docs/science.md §9), and the
linear null run a figure may be given beside the run."""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from collapse_spectroscopy.analysis.concentration import last_active_rank
from collapse_spectroscopy.analysis.equilibration import scan_under_equilibrated
from collapse_spectroscopy.analysis.pca import PCA_FLOOR
from collapse_spectroscopy.analysis.selection import Selection
from collapse_spectroscopy.analysis.spectra import scan_rank_flags
from collapse_spectroscopy.analysis.thresholds import best_points
from collapse_spectroscopy.figures.style import RankColors
from collapse_spectroscopy.store.scanfile import point_grid, scan_model_kind


@dataclass(frozen=True)
class NullRun:
    """A linear run on the same dataset (the run's ``null_run``): its name and its spectra
    table (``results/<name>/spectra.csv``), drawn beside the run as the measured null model
    (docs/science.md §9)."""

    name: str
    spectra: pd.DataFrame


def is_nonlinear(scan: xr.Dataset) -> bool:
    """Is the scan's model other than the linear VAE (e.g. ``model.kind: mlp``)? Its PCA
    and equilibrium overlays are then not its theory but the linear null model."""
    return scan_model_kind(scan) != "linear"


def null_model_label(scan: xr.Dataset, linear: str, nonlinear: str) -> str:
    """The legend text of a PCA or equilibrium overlay: ``linear`` for a linear run,
    ``nonlinear`` (which names the linear null model) for a nonlinear one."""
    return nonlinear if is_nonlinear(scan) else linear


def temperatures(scan: xr.Dataset) -> np.ndarray:
    return np.atleast_1d(np.asarray(scan["T"].values, dtype=np.float64))


def grid_values(scan: xr.Dataset, name: str, last: str = "latent") -> np.ndarray:
    """``scan[name]`` as a float64 array ``(T, seed, last)``, whatever dims it was given."""
    return np.asarray(point_grid(scan, name, last), dtype=np.float64)


def n_latents(scan: xr.Dataset) -> int:
    return int(scan.sizes["latent"])


def seeds(scan: xr.Dataset) -> np.ndarray:
    return np.atleast_1d(scan["seed"].values) if "seed" in scan.coords else np.zeros(1, int)


def theory_spectrum(scan: xr.Dataset) -> np.ndarray:
    """The training spectrum ``lambda_k/V`` for the theory overlay: above the floor,
    descending, at most ``K`` modes (the equilibrium keeps the top ``K``)."""
    if "pca_ratio" not in scan:
        return np.zeros(0)
    ratio = np.asarray(scan["pca_ratio"].values, dtype=np.float64).ravel()
    ratio = np.sort(ratio[np.isfinite(ratio) & (ratio > PCA_FLOOR)])[::-1]
    return ratio[: n_latents(scan)]


def eval_theory_spectrum(scan: xr.Dataset) -> np.ndarray | None:
    """The evaluation split's ``S_k`` along the training PCs, aligned with
    :func:`theory_spectrum` (``S_k / V`` of the same component ``k``), for the split-aware
    equilibrium (docs/science.md §4.7); ``None`` when the scan does not carry it."""
    if "pca_ratio" not in scan or "pca_eval_ratio" not in scan:
        return None
    ratio = np.asarray(scan["pca_ratio"].values, dtype=np.float64).ravel()
    ev = np.asarray(scan["pca_eval_ratio"].values, dtype=np.float64).ravel()
    if ev.shape != ratio.shape:
        return None
    keep = np.isfinite(ratio) & (ratio > PCA_FLOOR)
    order = np.argsort(ratio[keep], kind="stable")[::-1]
    return ev[keep][order][: n_latents(scan)]


def rank_colors(
    scan: xr.Dataset, rho_min: float, name: str = "signal_fraction", last: str = "latent"
) -> RankColors:
    """Colours for the ranks whose signal fraction ever exceeds ``rho_min`` or that have a
    PCA mode (the package docstring); with ``name="mode_signal_fraction"`` and
    ``last="mode"``, the same for the per-mode totals (Fig 1's mode view)."""
    K = int(scan.sizes[last])
    n = max(n_active(scan, rho_min, name, last), theory_spectrum(scan).size, 1)
    return RankColors(min(n, K))


def n_active(
    scan: xr.Dataset, rho_min: float, name: str = "signal_fraction", last: str = "latent"
) -> int:
    """The highest rank whose signal fraction exceeds ``rho_min`` at some scan point (0 if
    none, or if the scan has no ``name``): the ranks past it are latents that are never
    active, which carry no signal at any ``T`` (docs/science.md §6)."""
    if name not in scan:
        return 0
    # the one rule, which summary.json's n_vae counts by too
    return last_active_rank(grid_values(scan, name, last=last), rho_min)


def table_n_active(spectra: pd.DataFrame) -> int | None:
    """:func:`n_active` from a spectra table: the highest rank with ``fit_points > 0``
    (scan points with ``rho_k > rho_min``, at the ``rho_min`` the table was computed with);
    ``None`` for a table without the column."""
    if "fit_points" not in spectra:
        return None
    points = np.nan_to_num(np.asarray(spectra["fit_points"], dtype=np.float64))
    active = np.flatnonzero(points > 0)
    return int(np.asarray(spectra["rank"])[active[-1]]) if active.size else 0


def point_flags(scan: xr.Dataset) -> np.ndarray:
    """Under-equilibrated scan points, ``(T, seed)`` (:func:`.equilibration.under_equilibrated`)."""
    return scan_under_equilibrated(scan)


def best_from_flagged(
    scan: xr.Dataset, flags: np.ndarray, selection: Selection | None = None
) -> np.ndarray:
    """For ``k = 0..K``: is ``Dn*_k`` taken at a flagged point? The point is the one the
    spectra chose (:mod:`.analysis.selection`: the lowest reported level, or with
    ``select_on: val`` the lowest validation level; the first on a tie), so a hollow
    marker is the point the drawn value came from. ``Dn*_0 = 1`` by definition and never
    is."""
    selection = selection or Selection()
    report = grid_values(scan, selection.report, last="k")
    choose = grid_values(scan, selection.choose, last="k") if selection.choose else report
    paired = np.stack([report, choose], axis=-1).reshape(-1, report.shape[-1], 2)
    f = np.broadcast_to(flags, report.shape[:2]).ravel()
    chosen = best_points(paired)
    out = (chosen >= 0) & f[np.maximum(chosen, 0)]
    out[0] = False
    return out


def by_rank(mask: np.ndarray, ranks: np.ndarray, offset: int = 0) -> np.ndarray:
    """``mask[rank - 1 + offset]`` for each rank, False outside the mask."""
    idx = np.asarray(ranks, dtype=int) - 1 + offset
    ok = (idx >= 0) & (idx < mask.size)
    out = np.zeros(idx.size, dtype=bool)
    out[ok] = mask[idx[ok]]
    return out


def column(spectra: pd.DataFrame, name: str) -> np.ndarray:
    """A column of the spectra table ordered by rank (NaN if absent)."""
    table = spectra.sort_values("rank") if "rank" in spectra else spectra
    if name not in table:
        return np.full(len(table), np.nan)
    return pd.to_numeric(table[name], errors="coerce").to_numpy(dtype=np.float64)


def ranks(spectra: pd.DataFrame) -> np.ndarray:
    """The ranks of the spectra table, ascending (``1..n`` if it has no ``rank`` column)."""
    if "rank" in spectra:
        return np.sort(spectra["rank"].to_numpy(dtype=int))
    return np.arange(1, len(spectra) + 1)


def positive(a) -> np.ndarray:
    """``a`` with NaN where it is not finite and positive: what a log axis can show."""
    a = np.asarray(a, dtype=np.float64)
    return np.where(np.isfinite(a) & (a > 0), a, np.nan)


def nanmean(a, axis):
    """``np.nanmean`` without the warning for an all-NaN slice (a temperature no seed ran)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(a, axis=axis)


def rank_flags(scan, spectra, rank, rho_min) -> np.ndarray:
    """For each rank of ``rank``: is it ``under_equilibrated``? The table's column where it
    has one (so the figure says what ``spectra.csv`` says), else the same rule applied to
    the scan (:func:`.spectra.scan_rank_flags`)."""
    if "under_equilibrated" in spectra:
        table = spectra.sort_values("rank") if "rank" in spectra else spectra
        return table["under_equilibrated"].astype(str).str.lower().eq("true").to_numpy()
    if "signal_fraction" not in scan or "truncated_distortion" not in scan:
        return np.zeros(rank.size, dtype=bool)
    return by_rank(scan_rank_flags(scan, rho_min), rank)
