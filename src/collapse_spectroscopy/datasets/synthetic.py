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
* **Features.** ``d = 8`` layers ``synth_1`` .. ``synth_8``: ``x = g @ factor.T + means``,
  where ``factor`` (:func:`correlation_matrix`) has ``factor @ factor.T = C``, a correlation
  matrix whose eigenvalues, divided by ``V = trace C = d``, are the declared spectrum
  :data:`SPECTRUM` = (0.45, 0.25, 0.15, 0.08, 0.045, 0.02, 0.005, 0): two decades from the
  first to the seventh mode, so that several collapses show in a temperature scan.
* **Spatial structure.** The ``d - 1`` source fields ``g`` are independent of each other
  and spatially correlated like real layers: each is ``sqrt(1 - s)`` white noise plus
  ``sqrt(s)`` of a smooth field (a sum of :data:`SMOOTH_WAVES` plane waves in 3-D with
  wavenumbers in :data:`SMOOTH_WAVENUMBERS`, i.e. features of ~2-10 degrees), with
  ``s =`` :data:`SMOOTH_SHARE`; neighbouring cells correlate at ~0.6, so latent maps show
  regions, not salt and pepper.
* **Exact spectrum.** The white and the smooth parts are each whitened over the land
  cells, then the fields once more (``g <- g L^-T`` with ``L`` the Cholesky factor of
  their covariance), so that over all
  land cells their sample covariance is the identity and the sample correlation matrix of
  the layers is ``C`` to float32 rounding: the stack's own PCA spectrum *is* the declared
  one. A subset of cells, such as the spatial training split, estimates it with sampling
  error, larger than for i.i.d. cells by the design effect of the spatial correlation
  (``Var lambda_k ~ 2 lambda_k^2 deff / n``, ``deff = sum over lags of rho(lag)^2``;
  docs/science.md §7).
* **Exact dependence.** The last eigenvalue is exactly 0 because layer 7 is
  ``synth_7 = synth_5 - synth_6`` (like BIO7 = BIO5 - BIO6), computed in float32 from the
  stored values: ``C`` has the null vector ``(e5 - e6 - e7)/sqrt(3)``, which with unit
  variances forces corr(5, 6) = 1/2.
* **Construction of C.** ``C = U diag(lambda) U^T`` with ``U`` an orthonormal basis of the
  complement of the null vector, rotated by the Cayley transform of an antisymmetric A
  (21 parameters);
  the rotation is solved (damped minimum-norm Gauss-Newton from a seeded start) so that
  ``diag(C) = 1`` to ~1e-14 (Schur-Horn guarantees a solution exists).

Layer means are arbitrary offsets (standardization removes them); ``mean_7 = mean_5 - mean_6``.
The layers are reproducible from the seed up to the last bits: the linear algebra runs
through LAPACK/BLAS, whose kernels differ from CPU to CPU in the order of their sums
(~1e-16 relative), which can move a float32 value by one unit in its last place.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

from collapse_spectroscopy.errors import InputError
from collapse_spectroscopy.store.atomic import atomic_directory, json_default

#: Declared normalized spectrum lambda_k / V of the synthetic layers (descending, sums to 1).
SPECTRUM = (0.45, 0.25, 0.15, 0.08, 0.045, 0.02, 0.005, 0.0)
#: Layers (1-based) of the exact dependence synth_DEP = synth_A - synth_B.
DEPENDENCE = (7, 5, 6)
RESOLUTION_DEG = 1.0
LAND_FRACTION = 0.30
ICE_CAP_LAT = -66.0
#: Share of each source field's variance that is spatially smooth (the rest is white).
SMOOTH_SHARE = 0.6
#: Plane waves per smooth field and the range of their wavenumbers (on the unit sphere).
SMOOTH_WAVES = 48
SMOOTH_WAVENUMBERS = (10.0, 40.0)
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


def _antisymmetric(theta: np.ndarray, k: int) -> np.ndarray:
    a = np.zeros((k, k))
    a[np.triu_indices(k, 1)] = theta
    return a - a.T


def _cayley_basis(u0: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """``u0`` rotated by the Cayley transform ``(I - A)^-1 (I + A)`` of the antisymmetric
    ``A`` whose upper triangle is ``theta``: orthogonal for any ``theta``."""
    k = u0.shape[1]
    eye = np.eye(k)
    a = _antisymmetric(theta, k)
    return u0 @ np.linalg.solve(eye - a, eye + a)


def _unit_diagonal_rotation(u0, lam, theta, max_steps: int = 100):
    """The rotation parameters ``theta`` that make ``diag(U diag(lam) U^T) = 1``, found by
    damped minimum-norm Gauss-Newton from the seeded start ``theta``; None if it fails.

    The solutions form a manifold (21 parameters, 7 independent conditions: the 8th is
    the trace, ``sum lam = d``, which every rotation keeps), so the point found depends on
    the path. Minimum-norm Newton steps with the exact Jacobian on the 7 independent
    conditions make that path a smooth function of the start: CPUs whose BLAS kernels
    round differently (~1e-16) end within ~1e-13 of each other, where a trust-region
    solver's discrete decisions had sent them to points 0.1 apart.
    """
    k = u0.shape[1]
    iu = np.triu_indices(k, 1)
    eye = np.eye(k)

    def residual(t):
        u = _cayley_basis(u0, t)
        return (u**2 @ lam - 1.0)[:-1]

    def jacobian(t):
        a = _antisymmetric(t, k)
        inv = np.linalg.inv(eye - a)
        cayley = inv @ (eye + a)
        u = u0 @ cayley
        right = eye + cayley  # d(Cayley) = (I - A)^-1 dA (I + Cayley)
        jac = np.empty((u.shape[0] - 1, t.size))
        for j, (p, q) in enumerate(zip(*iu, strict=True)):
            da = np.zeros((k, k))
            da[p, q], da[q, p] = 1.0, -1.0
            du = u0 @ inv @ da @ right
            jac[:, j] = (2.0 * (u * du) @ lam)[:-1]
        return jac

    r = residual(theta)
    for _ in range(max_steps):
        norm = np.max(np.abs(r))
        if norm < 1e-14:
            break
        step = np.linalg.lstsq(jacobian(theta), r, rcond=None)[0]
        scale = 1.0
        while scale > 1e-6:  # halve the step until the residual falls
            trial = theta - scale * step
            r_trial = residual(trial)
            if np.max(np.abs(r_trial)) < norm:
                break
            scale /= 2
        theta, r = trial, r_trial
    # converged runs reach ~1e-15, failed ones stay ~1e-2: the cut is far from both
    return theta if np.max(np.abs(r)) < 1e-10 else None


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
    spec = np.asarray(spectrum, dtype=np.float64)
    d = spec.size
    if spec[-1] != 0.0 or not np.isclose(spec.sum(), 1.0) or np.any(np.diff(spec) > 0):
        raise InputError("synthetic spectrum must be descending, sum to 1 and end with 0")
    lam = d * spec[:-1]
    u0 = _complement_basis(_null_vector(d))
    rng = np.random.default_rng([seed, 20240607])
    for _ in range(20):
        theta = _unit_diagonal_rotation(u0, lam, rng.normal(size=(d - 1) * (d - 2) // 2))
        if theta is not None:
            break
    else:  # pragma: no cover - never seen
        raise RuntimeError("could not build the synthetic correlation matrix")
    u = _cayley_basis(u0, theta)
    factor = u * np.sqrt(lam)
    corr = factor @ factor.T
    return corr, factor


def _cell_centres(resolution_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Latitude (radians, rows, cols) and unit vectors in 3-D (rows, cols, 3) of the cell
    centres of the global grid, row 0 = northernmost."""
    height, width = int(round(180 / resolution_deg)), int(round(360 / resolution_deg))
    lat = 90.0 - (np.arange(height) + 0.5) * resolution_deg
    lon = -180.0 + (np.arange(width) + 0.5) * resolution_deg
    la, lo = np.meshgrid(np.radians(lat), np.radians(lon), indexing="ij")
    p = np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=-1)
    return la, p


def plane_waves(
    p: np.ndarray, rng, count: int, wavenumbers: tuple[float, float], by_wavenumber=False
) -> np.ndarray:
    """A smooth random field at the unit vectors ``p`` (..., 3): the sum of ``count`` plane
    waves in 3-D, each with a direction, a wavenumber uniform in ``wavenumbers`` and a
    phase drawn from ``rng`` in that order; each divided by its wavenumber if
    ``by_wavenumber`` (long waves dominate: the land mask's continents)."""
    field = np.zeros(p.shape[:-1])
    for _ in range(count):
        k = rng.normal(size=3)
        wavenumber = rng.uniform(*wavenumbers)
        k *= wavenumber / np.linalg.norm(k)
        wave = np.cos(p @ k + rng.uniform(0, 2 * np.pi))
        field += wave / wavenumber if by_wavenumber else wave
    return field


def land_mask(seed: int = 0, resolution_deg: float = RESOLUTION_DEG) -> np.ndarray:
    """Boolean (rows, cols) land-like mask of the global grid, row 0 = northernmost."""
    la, p = _cell_centres(resolution_deg)
    rng = np.random.default_rng([seed, 1])
    field = plane_waves(p, rng, 24, (2.0, 8.0), by_wavenumber=True)
    w = np.cos(la)  # cell area is proportional to cos(lat) on a lon/lat grid
    order = np.argsort(field, axis=None)[::-1]
    cum = np.cumsum(w.ravel()[order]) / w.sum()
    level = field.ravel()[order][np.searchsorted(cum, LAND_FRACTION)]
    return (field > level) | (la < np.radians(ICE_CAP_LAT))


def source_fields(
    mask: np.ndarray, k: int, seed: int = 0, resolution_deg: float = RESOLUTION_DEG
) -> np.ndarray:
    """``k`` independent, spatially correlated fields on the land cells, (n, k), whose
    sample mean over the land cells is 0 and sample covariance (``ddof = 0``) the identity.

    Each is ``sqrt(1 - s)`` white noise plus ``sqrt(s)`` of a smooth field (``s =``
    :data:`SMOOTH_SHARE`), the smooth part a sum of random plane waves on the sphere. The
    white and the smooth parts are whitened each on its own (:func:`whitened`), so that a
    coarse-grained stack keeps the covariance's shape, and then the sum once more, which
    makes the declared spectrum exact over the land cells (module docstring); whitening
    keeps the fields smooth (each becomes a combination of the others).
    """
    _, p = _cell_centres(resolution_deg)
    p = p[mask]
    rng = np.random.default_rng([seed, 2])
    white = rng.standard_normal((p.shape[0], k))
    wave_rng = np.random.default_rng([seed, 3])
    smooth = np.stack(
        [plane_waves(p, wave_rng, SMOOTH_WAVES, SMOOTH_WAVENUMBERS) for _ in range(k)], axis=1
    )
    # each part white on its own first: averaging neighbours (dataset.coarsen) then
    # shrinks the white part's covariance to ~I/4 and leaves the smooth part's ~I, so the
    # coarse layers keep C's shape; whitened only together, the smooth fields' sample
    # cross-correlations (few independent patches) turned the coarse modes by ~40 degrees
    g = np.sqrt(1.0 - SMOOTH_SHARE) * whitened(white) + np.sqrt(SMOOTH_SHARE) * whitened(smooth)
    return whitened(g)  # their small cross-covariance (~1/sqrt(n)) removed: exactly white


def whitened(fields: np.ndarray) -> np.ndarray:
    """``fields`` (n, k) centred and whitened: sample mean 0 and sample covariance
    (``ddof = 0``) the identity, by the Cholesky factor ``L`` of their covariance
    (``fields <- fields L^-T``: each stays a combination of the fields before it)."""
    g = fields - fields.mean(0)
    chol = np.linalg.cholesky(g.T @ g / g.shape[0])
    return np.linalg.solve(chol, g.T).T


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
    n = int(mask.sum())
    z = source_fields(mask, d - 1, seed, resolution_deg) @ factor.T
    rng = np.random.default_rng([seed, 4])
    means = np.round(rng.uniform(-5.0, 15.0, d), 1)
    dep, a, b = (i - 1 for i in DEPENDENCE)
    means[dep] = means[a] - means[b]
    x = (z + means).astype(np.float32)
    x[:, dep] = x[:, a] - x[:, b]  # exact in float32: the dependence holds to one rounding
    layers = np.full((d, *mask.shape), np.float32(NODATA), dtype=np.float32)
    layers[:, mask] = x.T
    truth = {
        "spectrum": list(spectrum),
        "spectrum_meaning": "eigenvalues of the correlation matrix of the layers over all "
        "land cells divided by their sum V = d, descending (lambda_k / V); exact up to "
        "float32 rounding, a subset of cells estimates it with sampling error",
        "spatial_structure": f"each source field is sqrt({1 - SMOOTH_SHARE:g}) white noise "
        f"+ sqrt({SMOOTH_SHARE:g}) smooth ({SMOOTH_WAVES} plane waves, wavenumbers "
        f"{SMOOTH_WAVENUMBERS[0]:g}-{SMOOTH_WAVENUMBERS[1]:g}), whitened over the land cells",
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
