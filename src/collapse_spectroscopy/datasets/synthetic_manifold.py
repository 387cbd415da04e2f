"""The synthetic source's ``manifold`` kind: a nonlinear dataset with a known answer.

``dataset.synthetic_kind: manifold`` (docs/science.md §9). On the same global 1° grid and
land mask as the Gaussian kind (:func:`.synthetic.land_mask`), ``d`` layers
(``dataset.features``) are smooth nonlinear functions of ``m`` factors
(``dataset.intrinsic_dim``) plus a little white noise (``dataset.noise``): the data lie
near an ``m``-dimensional manifold in ``d`` features, while PCA spreads their variance
over many more components. Generated from the seed (``dataset.synthetic_seed``):

* **Factors.** ``m`` spatially smooth fields on the sphere, each a sum of
  :data:`FIELD_WAVES` plane waves ``cos(k . p + phase)`` in 3-D (``p`` the cell's unit
  vector, wavenumbers ``|k|`` uniform in :data:`FIELD_WAVENUMBERS`, i.e. wavelengths of
  ~3,000–13,000 km), whitened over the land cells (so the factors are uncorrelated) and
  then rank-transformed to exactly uniform marginals on ``[-1, 1]``. A monotone
  transform keeps them smooth, so neighbouring cells are neighbours on the manifold and
  the spatial-block split (docs/science.md §5.2) draws whole regions of factor space.
* **Map.** Layer ``j`` is ``f_j(u) = sum_t a_jt sin(w_jt . u + phi_jt)`` over
  :data:`MAP_TERMS` terms, with ``a_jt ~ N(0, 1)``, ``w_jt`` of random direction and length
  uniform in :data:`MAP_FREQUENCIES` (radians per unit of ``u``: at most ~1.4 periods across
  the factor square) and ``phi_jt`` uniform in ``[0, 2 pi)``; each ``f_j`` is then
  centred and scaled to unit variance over the land cells. Products of sines are sums of
  sines, so this covers smooth sin/cos/product maps; ``d >= 2m + 1`` random smooth maps
  embed the factor square (Whitney), so the manifold does not fold onto itself.
* **Noise.** ``x_j = f_j(u) + noise * e_j`` with ``e_j ~ N(0, 1)`` i.i.d. over cells and
  layers: ``noise`` is a standard deviation relative to the unit-variance clean layers.

At the defaults (``m = 2``, ``d = 10``, ``noise = 0.02``, seed 0) the clean data need 5
principal components for 90 % of the variance and 2 components keep 62 %, while local
PCA of small neighbourhoods shows 2 dominant directions over a noise floor of
``noise^2`` (``tests/datasets/test_synthetic_manifold.py``). ``truth.json`` records the
kind, ``m``, the noise, the generator in words, the normalized PCA spectrum
``lambda_k / V`` of the clean data, and the noise fraction of the variance with the
distortion floor it implies.
There is no linear spectrum truth, so the prepared dataset carries no ``true_spectrum``.
"""

from __future__ import annotations

import numpy as np

from collapse_spectroscopy.datasets.synthetic import NODATA, RESOLUTION_DEG, land_mask, layer_names
from collapse_spectroscopy.errors import InputError

FIELD_WAVES = 64
FIELD_WAVENUMBERS = (3.0, 12.0)  # per unit radius of the sphere
MAP_TERMS = 3
MAP_FREQUENCIES = (1.5, 3.0)  # radians per unit of the factors u in [-1, 1]

GENERATOR = (
    "factors: {m} smooth random fields on the sphere (sums of {waves} plane waves, "
    "wavenumbers {k0:g}..{k1:g}), whitened over the land cells and rank-transformed to "
    "uniform on [-1, 1]; layer j = sum over {terms} terms of a_jt sin(w_jt . u + phi_jt) "
    "(a ~ N(0, 1), |w| uniform in [{w0:g}, {w1:g}], phi uniform), centred and scaled to "
    "unit variance over the land cells; plus noise * N(0, 1), i.i.d. per cell and layer"
)


def check_manifold(intrinsic_dim: int, features: int, noise: float) -> None:
    """InputError naming the key unless ``1 <= intrinsic_dim < features`` and noise >= 0."""
    if not (isinstance(intrinsic_dim, int | np.integer) and intrinsic_dim >= 1):
        raise InputError(f"dataset.intrinsic_dim = {intrinsic_dim!r}: expected an integer >= 1")
    if not (isinstance(features, int | np.integer) and features > intrinsic_dim):
        raise InputError(
            f"dataset.features = {features!r}: expected an integer above "
            f"dataset.intrinsic_dim = {intrinsic_dim} (the manifold lies in the features)"
        )
    if not (np.isfinite(noise) and noise >= 0):
        raise InputError(f"dataset.noise = {noise!r}: expected a finite number >= 0")


def _unit_vectors(resolution_deg: float) -> np.ndarray:
    """(rows, cols, 3) unit vectors of the cell centres, row 0 = northernmost."""
    height, width = int(round(180 / resolution_deg)), int(round(360 / resolution_deg))
    lat = np.radians(90.0 - (np.arange(height) + 0.5) * resolution_deg)
    lon = np.radians(-180.0 + (np.arange(width) + 0.5) * resolution_deg)
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    return np.stack([np.cos(la) * np.cos(lo), np.cos(la) * np.sin(lo), np.sin(la)], axis=-1)


def factors(p: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
    """(n, m) smooth factors with uniform marginals on [-1, 1] at the unit vectors ``p``."""
    g = np.zeros((p.shape[0], m))
    for i in range(m):
        for _ in range(FIELD_WAVES):
            k = rng.normal(size=3)
            k *= rng.uniform(*FIELD_WAVENUMBERS) / np.linalg.norm(k)
            g[:, i] += np.cos(p @ k + rng.uniform(0.0, 2.0 * np.pi))
    g -= g.mean(axis=0)
    # whitened, so the factors are uncorrelated over these cells: a smooth field has few
    # independent patches, and two independent ones can correlate by chance
    chol = np.linalg.cholesky(np.atleast_2d(np.cov(g, rowvar=False, bias=True)))
    g = np.linalg.solve(chol, g.T).T
    ranks = np.argsort(np.argsort(g, axis=0, kind="stable"), axis=0, kind="stable")
    return 2.0 * (ranks + 0.5) / g.shape[0] - 1.0


def smooth_map(u: np.ndarray, d: int, rng: np.random.Generator) -> np.ndarray:
    """(n, d) clean layers ``f_j(u)``, each centred with unit variance over the rows."""
    n, m = u.shape
    y = np.zeros((n, d))
    for j in range(d):
        for _ in range(MAP_TERMS):
            w = rng.normal(size=m)
            w *= rng.uniform(*MAP_FREQUENCIES) / np.linalg.norm(w)
            y[:, j] += rng.normal() * np.sin(u @ w + rng.uniform(0.0, 2.0 * np.pi))
    y -= y.mean(axis=0)
    return y / y.std(axis=0)


def pca_spectrum(x: np.ndarray) -> np.ndarray:
    """Normalized PCA spectrum ``lambda_k / V`` of the rows of ``x``, descending."""
    ev = np.linalg.eigvalsh(np.cov(x, rowvar=False, bias=True))[::-1].clip(min=0.0)
    return ev / ev.sum()


def generate_manifold(
    seed: int = 0,
    intrinsic_dim: int = 2,
    features: int = 10,
    noise: float = 0.02,
    resolution_deg: float = RESOLUTION_DEG,
) -> tuple[np.ndarray, dict]:
    """Generate the manifold stack in memory.

    Returns
    -------
    layers : ndarray float32 (features, rows, cols)
        Values in land cells, :data:`.synthetic.NODATA` elsewhere.
    truth : dict
        What ``truth.json`` holds (see the module docstring).
    """
    check_manifold(intrinsic_dim, features, noise)
    mask = land_mask(seed, resolution_deg)
    p = _unit_vectors(resolution_deg)[mask]
    u = factors(p, intrinsic_dim, np.random.default_rng([seed, 3]))
    clean = smooth_map(u, features, np.random.default_rng([seed, 4]))
    eps = noise * np.random.default_rng([seed, 5]).standard_normal(clean.shape)
    x = (clean + eps).astype(np.float32)
    layers = np.full((features, *mask.shape), np.float32(NODATA), dtype=np.float32)
    layers[:, mask] = x.T
    spectrum = pca_spectrum(clean)
    # the noise's share of the variance that standardization normalizes by (V); a decoder
    # that projects onto the manifold still leaves the noise normal to it, (d - m) of d
    # directions: the floor of the truncated distortion at m latents (small noise)
    noise_fraction = float(eps.var(axis=0).sum() / x.astype(np.float64).var(axis=0).sum())
    return layers, {
        "kind": "manifold",
        "intrinsic_dim": intrinsic_dim,
        "features": features,
        "noise": noise,
        "generator": GENERATOR.format(
            m=intrinsic_dim,
            waves=FIELD_WAVES,
            k0=FIELD_WAVENUMBERS[0],
            k1=FIELD_WAVENUMBERS[1],
            terms=MAP_TERMS,
            w0=MAP_FREQUENCIES[0],
            w1=MAP_FREQUENCIES[1],
        ),
        "pca_spectrum": spectrum,
        "pca_spectrum_meaning": "eigenvalues of the covariance of the noiseless layers over "
        "the land cells divided by their sum V, descending (lambda_k / V): the linear null "
        "model's spectrum, not a truth for the VAE",
        "pca_components_for_90_percent": int(np.searchsorted(np.cumsum(spectrum), 0.9) + 1),
        "pca_distortion": 1.0 - np.cumsum(spectrum),
        "noise_fraction": noise_fraction,
        "distortion_floor": noise_fraction * (features - intrinsic_dim) / features,
        "distortion_floor_meaning": "noise_fraction * (d - m) / d: the noise normal to the "
        "manifold, which no m-latent decoder removes (to first order in the noise)",
        "seed": seed,
        "resolution_deg": resolution_deg,
        "grid_shape": list(mask.shape),
        "n_cells": int(mask.sum()),
        "layers": layer_names(features),
    }
