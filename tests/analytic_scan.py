"""Scans built from the analytic equilibrium, measured like a trained one (issue 12).

Every scan point is the linear VAE of ``equilibrium.equilibrium_parameters`` for the
training split, optionally with one mode spread over three latents, measured by
``observables.measure`` and ``modes.measure_modes`` on an evaluation split, written as a
scan-point file and gathered: the oracle of the per-mode totals (docs/science.md §10.1)
and of the split-aware references (§4.7), with no training noise in the way.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from collapse_spectroscopy.analysis import equilibrium, modes, observables, pca
from collapse_spectroscopy.store import scanfile

SPREAD = np.sqrt([1 / 3, 1 / 3, 1 / 3])  # one latent rotated evenly into three


def train_equilibrium(x_train, temperature, latents):
    """The training equilibrium's parameters for ``x_train`` (population covariance)."""
    x = np.asarray(x_train, dtype=np.float64)
    return equilibrium.equilibrium_parameters(
        x.mean(axis=0), np.cov(x, rowvar=False, bias=True), temperature, latents
    )


def spread(params, latent, into, weights=SPREAD):
    """Rotate ``latent`` into ``(latent, *into)``: means ``c_i mu``, decoder columns
    ``c_i W``, each with the original posterior variance (``sum c_i^2 = 1``).

    The posterior-mean reconstruction ``sum_i c_i W c_i mu = W mu`` and its noise
    ``sum_i c_i^2 W^2 s2 = W^2 s2`` are unchanged: the decoder sees the same model.
    The latents in ``into`` must be spare (all zero).
    """
    p = {k: v.copy() for k, v in params.items()}
    group = [latent, *into]
    for name in ("A", "B"):
        row = p[name][latent].copy()
        for i, c in zip(group, weights, strict=True):
            p[name][i] = (c if name == "A" else 1.0) * row
    for name in ("a", "b"):
        value = p[name][latent]
        for i, c in zip(group, weights, strict=True):
            p[name][i] = (c if name == "a" else 1.0) * value
    col = p["W"][:, latent].copy()
    for i, c in zip(group, weights, strict=True):
        p["W"][:, i] = c * col
    return p


def point(params, temperature, x_eval, x_train, seed=0):
    """The scan-point dataset of a model given by its parameters."""
    obs = observables.measure(params, x_eval, x_train, seed=seed)
    basis = pca.pca_basis(x_train)
    train = SimpleNamespace(
        beta=temperature * x_train.shape[1],
        total_variance=float(x_train.shape[1]),
        updates_run=0,
        best_update=0,
        best_val_loss=0.0,
        elapsed_s=0.0,
        stop_reason="converged",
        engine="analytic",
        device="cpu",
    )
    return scanfile.scan_point_dataset(
        temperature=temperature,
        seed=seed,
        obs=obs,
        train=train,
        pca_ratio=pca.pca_spectrum(x_train),
        pca_eval_distortion=pca.pca_eval_distortion(x_train, x_eval),
        pca_eval_ratio=pca.pca_eval_ratio(x_train, x_eval, basis),
        modes=modes.measure_modes(params, x_eval, x_train, basis),
    )


def gathered_scan(tmp_path, temperatures, x_train, x_eval, latents, spread_mode=None):
    """Write one analytic scan point per temperature and gather them.

    ``spread_mode`` (0-based PC) is held by three latents: its own and the last two
    (spare) latents, at every temperature.
    """
    paths = []
    for i, T in enumerate(temperatures):
        params = train_equilibrium(x_train, T, latents)
        if spread_mode is not None:
            params = spread(params, spread_mode, [latents - 2, latents - 1])
        path = tmp_path / f"p{i}.nc"
        scanfile.write(point(params, T, x_eval, x_train), path, engine=scanfile.POINT_ENGINE)
        paths.append(path)
    return scanfile.gather(paths)
