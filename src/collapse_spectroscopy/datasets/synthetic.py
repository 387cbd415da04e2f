"""The embedded synthetic source: a small global raster stack with a known spectrum.

This module is its ``gaussian`` kind (``dataset.synthetic_kind``, the default), and the
grid, land mask and GeoTIFF writer that the ``manifold`` kind
(:mod:`.synthetic_manifold`, docs/science.md §9) shares.
It is the offline default that powers the workflow's ``demo`` run, so it is small and
generated deterministically from a seed (``numpy.random.default_rng``):

* **Grid.** A global 1° lon/lat grid (360 x 180 cells, EPSG:4326). A land-like mask keeps
  the cells where a smooth random field on the sphere (24 plane waves in 3-D with
  wavenumbers 2..8, amplitude 1/wavenumber) exceeds the level that leaves 30 % of the
  area as "land", plus an ice cap south of 66°S like Antarctica: 24,913 cells at seed 0
  (the rest is nodata, ``-3.4e38`` as in WorldClim).
* **Features.** ``d = 8`` layers ``synth_1`` .. ``synth_8``. In every land cell,
  independently, the layers are Gaussian with unit variance and correlation matrix ``C``
  whose eigenvalues, divided by ``V = trace C = d``, are the declared spectrum
  :data:`SPECTRUM` = (0.45, 0.25, 0.15, 0.08, 0.045, 0.02, 0.005, 0): two decades from the
  first to the seventh mode, so that several collapses show in a temperature scan.
* **Exact dependence.** The last eigenvalue is exactly 0 because layer 7 is
  ``synth_7 = synth_5 - synth_6`` (like BIO7 = BIO5 - BIO6), computed in float32 from the
  stored values: ``C`` has the null vector ``(e5 - e6 - e7)/sqrt(3)``, which with unit
  variances forces corr(5, 6) = 1/2.
* **Construction of C.** ``C = U diag(lambda) U^T`` with ``U`` an orthonormal basis of the
  complement of the null vector, rotated by the Cayley transform of an antisymmetric A
  (21 parameters);
  the rotation is solved (``scipy.optimize.least_squares`` from a seeded start) so that
  ``diag(C) = 1`` to ~1e-14 (Schur-Horn guarantees a solution exists).

No spatial correlation is added: cells are i.i.d., so the PCA spectrum of any subset of
cells -- in particular the spatial training split -- estimates the declared spectrum
with the usual sampling error (std ~ sqrt(2/n) lambda_k for Gaussian data).
Layer means are arbitrary offsets (standardization removes them); ``mean_7 = mean_5 - mean_6``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

from ..errors import InputError
from ..io import atomic_directory, json_default

#: Declared normalized spectrum lambda_k / V of the synthetic layers (descending, sums to 1).
SPECTRUM = (0.45, 0.25, 0.15, 0.08, 0.045, 0.02, 0.005, 0.0)
#: Layers (1-based) of the exact dependence synth_DEP = synth_A - synth_B.
DEPENDENCE = (7, 5, 6)
RESOLUTION_DEG = 1.0
LAND_FRACTION = 0.30
ICE_CAP_LAT = -66.0
NODATA = float(np.float32(-3.4e38))
TRUTH_FILE = "truth.json"


def layer_names(d: int = len(SPECTRUM)) -> list[str]:
    return [f"synth_{i}" for i in range(1, d + 1)]


def _null_vector(d: int) -> np.ndarray:
    dep, a, b = (i - 1 for i in DEPENDENCE)
    v = np.zeros(d)
    v[[a, b, dep]] = [1.0, -1.0, -1.0]
    return v / np.linalg.norm(v)


def _complement_basis(v: np.ndarray) -> np.ndarray:
    """Orthonormal basis (d, d-1) of the complement of unit vector ``v`` (Householder)."""
    d = v.size
    e = np.zeros(d)
    e[-1] = 1.0
    w = v - e
    w /= np.linalg.norm(w)
    h = np.eye(d) - 2.0 * np.outer(w, w)  # h @ e_last = v; the other columns span v-perp
    return h[:, :-1]


def correlation_matrix(spectrum=SPECTRUM, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A correlation matrix with eigenvalues ``d * spectrum`` and the exact dependence.

    Returns
    -------
    corr : ndarray (d, d)
        Unit diagonal (to ~1e-14), eigenvalues ``d * spectrum``.
    factor : ndarray (d, d-1)
        ``U diag(sqrt(lambda))``: ``z = g @ factor.T`` with ``g ~ N(0, I)`` has covariance
        ``corr``.
    """
    from scipy.optimize import least_squares

    spec = np.asarray(spectrum, dtype=np.float64)
    d = spec.size
    if spec[-1] != 0.0 or not np.isclose(spec.sum(), 1.0) or np.any(np.diff(spec) > 0):
        raise InputError("synthetic spectrum must be descending, sum to 1 and end with 0")
    lam = d * spec[:-1]
    u0 = _complement_basis(_null_vector(d))
    iu = np.triu_indices(d - 1, 1)

    def basis(theta):
        a = np.zeros((d - 1, d - 1))
        a[iu] = theta
        a -= a.T
        eye = np.eye(d - 1)
        return u0 @ np.linalg.solve(eye - a, eye + a)  # Cayley: orthogonal for antisymmetric a

    def residual(theta):
        u = basis(theta)
        return np.einsum("ik,k,ik->i", u, lam, u) - 1.0

    rng = np.random.default_rng([seed, 20240607])
    for _ in range(20):
        sol = least_squares(
            residual, rng.normal(size=iu[0].size), method="trf", xtol=1e-15, ftol=1e-15, gtol=1e-15
        )
        if np.max(np.abs(residual(sol.x))) < 1e-12:
            break
    else:  # pragma: no cover - never seen
        raise RuntimeError("could not build the synthetic correlation matrix")
    u = basis(sol.x)
    factor = u * np.sqrt(lam)
    corr = factor @ factor.T
    return corr, factor


def land_mask(seed: int = 0, resolution_deg: float = RESOLUTION_DEG) -> np.ndarray:
    """Boolean (rows, cols) land-like mask of the global grid, row 0 = northernmost."""
    height, width = int(round(180 / resolution_deg)), int(round(360 / resolution_deg))
    lat = 90.0 - (np.arange(height) + 0.5) * resolution_deg
    lon = -180.0 + (np.arange(width) + 0.5) * resolution_deg
    la, lo = np.meshgrid(np.radians(lat), np.radians(lon), indexing="ij")
    p = np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=-1)
    rng = np.random.default_rng([seed, 1])
    field = np.zeros(la.shape)
    for _ in range(24):
        k = rng.normal(size=3)
        wavenumber = rng.uniform(2.0, 8.0)
        k *= wavenumber / np.linalg.norm(k)
        field += np.cos(p @ k + rng.uniform(0, 2 * np.pi)) / wavenumber
    w = np.cos(la)  # cell area is proportional to cos(lat) on a lon/lat grid
    order = np.argsort(field, axis=None)[::-1]
    cum = np.cumsum(w.ravel()[order]) / w.sum()
    level = field.ravel()[order][np.searchsorted(cum, LAND_FRACTION)]
    return (field > level) | (la < np.radians(ICE_CAP_LAT))


def generate(seed: int = 0, resolution_deg: float = RESOLUTION_DEG, spectrum=SPECTRUM):
    """Generate the synthetic stack in memory.

    Returns
    -------
    layers : ndarray float32 (d, rows, cols)
        Values in land cells, :data:`NODATA` elsewhere.
    truth : dict
        The declared spectrum, the correlation matrix, means, the dependence, seed, grid.
    """
    d = len(spectrum)
    corr, factor = correlation_matrix(spectrum, seed)
    mask = land_mask(seed, resolution_deg)
    rng = np.random.default_rng([seed, 2])
    n = int(mask.sum())
    z = rng.standard_normal((n, d - 1)) @ factor.T
    means = np.round(rng.uniform(-5.0, 15.0, d), 1)
    dep, a, b = (i - 1 for i in DEPENDENCE)
    means[dep] = means[a] - means[b]
    x = (z + means).astype(np.float32)
    x[:, dep] = x[:, a] - x[:, b]  # exact in float32: the dependence holds to one rounding
    layers = np.full((d, *mask.shape), np.float32(NODATA), dtype=np.float32)
    layers[:, mask] = x.T
    truth = {
        "spectrum": list(spectrum),
        "spectrum_meaning": "eigenvalues of the population correlation matrix divided by "
        "their sum V = d, descending (lambda_k / V)",
        "correlation": corr,
        "means": means,
        "std": [1.0] * d,
        "dependence": f"synth_{DEPENDENCE[0]} = synth_{DEPENDENCE[1]} - synth_{DEPENDENCE[2]}",
        "seed": seed,
        "resolution_deg": resolution_deg,
        "grid_shape": list(mask.shape),
        "n_cells": n,
        "layers": layer_names(d),
    }
    return layers, truth


def write_layers(
    folder: str | os.PathLike, seed: int = 0, resolution_deg: float = RESOLUTION_DEG
) -> tuple[list[Path], dict]:
    """Write the Gaussian stack as GeoTIFFs ``synth_<i>.tif`` plus ``truth.json`` in ``folder``.

    The folder is built under a temporary name beside it and renamed into place, so it
    is either complete or absent. An existing folder of that name is replaced.
    """
    layers, truth = generate(seed, resolution_deg)
    return write_stack(folder, layers, truth), truth


def write_stack(folder: str | os.PathLike, layers: np.ndarray, truth: dict) -> list[Path]:
    """Write a generated stack (``layers`` (d, rows, cols) on the global grid of
    ``truth["resolution_deg"]``) as GeoTIFFs ``synth_<i>.tif`` plus ``truth.json``.

    Shared by both synthetic kinds (the manifold's generator is
    :mod:`.synthetic_manifold`). The folder is built under a temporary name beside it and
    renamed into place, so it is either complete or absent; an existing one is replaced.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    resolution_deg = truth["resolution_deg"]
    d, height, width = layers.shape
    profile = {
        "driver": "GTiff",
        "dtype": "float32",
        "count": 1,
        "height": height,
        "width": width,
        "crs": "EPSG:4326",
        "nodata": NODATA,
        "compress": "deflate",
        "transform": from_origin(-180.0, 90.0, resolution_deg, resolution_deg),
    }
    with atomic_directory(folder) as tmp:
        paths = []
        for name, band in zip(layer_names(d), layers, strict=True):
            # encoded in memory, written with plain Python I/O: on a full disk libtiff would
            # print its own lines before our one-line error
            with rasterio.MemoryFile() as mem:
                with mem.open(**profile) as ds:
                    ds.write(band, 1)
                (tmp / f"{name}.tif").write_bytes(mem.read())
            paths.append(folder / f"{name}.tif")
        (tmp / TRUTH_FILE).write_text(json.dumps(truth, indent=2, default=json_default) + "\n")
    return paths
