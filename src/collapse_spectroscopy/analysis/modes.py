"""Per-mode totals: the latents grouped by the PCA mode their decoder column carries
(docs/science.md §10.1).

A mode near its threshold can spread over several latents (docs/science.md §7b), so the
largest single-latent ``rho`` comes out low. The mode's totals count them together, at one
scan point of the linear VAE:

- **Grouping.** Latent ``j`` belongs to the training principal component ``k`` on which its
  decoder column has the largest projection, ``argmax_k (e_k . W_j)^2``. Modes are indexed
  like ``pca_ratio`` (mode 1 = the largest eigenvalue), so a mode's totals are read against
  its own ``lambda_k / V``.
- **Totals.** The decoder transmits along ``e_k`` the effective latent
  ``sum_{j in k} g_j z_j`` with gains ``g_j = e_k . W_j``: posterior mean ``sum g_j mu_j(x)``,
  posterior variance ``sum g_j^2 s2_j(x)``. In latent units (divided by ``G^2 = sum g_j^2``)

      m   = E (sum_j g_j mu_j)^2 / G^2 = g^T E[mu mu^T] g / G^2
      v   = sum_j g_j^2 v_j / G^2
      rho = m / (m + v)

  One latent per mode gives that latent's ``m, v, rho`` exactly; a latent rotated into
  ``n`` latents (``mu_i = c_i mu``, ``W_i = c_i W``, ``sum c_i^2 = 1``, each with the
  posterior variance ``s2``) leaves the decoder's input unchanged and gives back the
  single latent's ``m, v, rho`` exactly, where each latent alone has
  ``rho_i = c_i^2 m / (c_i^2 m + s2)`` and the unweighted ``sum m / sum (m + v)`` gives
  ``m / (m + n s2)``.
- **Latents spanned.** The participation ratio ``(sum c_j)^2 / sum c_j^2`` of the signal
  each member delivers along ``e_k``, ``c_j = g_j^2 m_j``: 1 for one latent, ``n`` for an
  even split over ``n``; a member that carries no signal (a collapsed latent) adds nothing.
- A mode no latent is assigned to, or whose members' columns are all 0, is collapsed:
  ``m = 0``, ``v = 1``, ``rho = 0``, 0 latents.

Only the linear family has decoder columns; for another family :func:`point_modes` returns
``None`` and the scan point carries no mode totals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from collapse_spectroscopy.analysis.observables import posterior_moments
from collapse_spectroscopy.analysis.pca import pca_basis
from collapse_spectroscopy.models.families import model_spec


@dataclass
class ModeTotals:
    """Per-mode totals at one scan point, modes in PCA order (mode 1 first)."""

    posterior_mean_square: np.ndarray  # (d,) m of the mode's effective latent
    posterior_variance: np.ndarray  # (d,) v
    signal_fraction: np.ndarray  # (d,) rho = m / (m + v)
    latents: np.ndarray  # (d,) participation ratio of the members' signal
    mode_of_latent: np.ndarray  # (K,) 0-based mode of each latent, raw latent order


def assign_latents(W: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """0-based index of the PC (column of ``basis``) with the largest ``(e_k . W_j)^2``."""
    return np.argmax(np.square(basis.T @ W), axis=0)


def mode_totals(
    W: np.ndarray, mu_mu: np.ndarray, mean_s2: np.ndarray, basis: np.ndarray
) -> ModeTotals:
    """Totals of every mode from the decoder ``W`` (d x K), the evaluation moments
    ``E[mu mu^T]`` (K x K, raw) and ``E s2`` (K), and the training PCs ``basis`` (d x d,
    columns in PCA order)."""
    W = np.asarray(W, dtype=np.float64)
    gains = basis.T @ W  # (d, K): g_kj = e_k . W_j
    member = assign_latents(W, basis)
    d = basis.shape[1]
    m, v, rho, n = np.zeros(d), np.ones(d), np.zeros(d), np.zeros(d)
    for k in range(d):
        s = np.flatnonzero(member == k)
        g = gains[k, s]
        norm = float(g @ g)
        if norm == 0.0:
            continue
        m[k] = g @ mu_mu[np.ix_(s, s)] @ g / norm
        v[k] = g**2 @ mean_s2[s] / norm
        rho[k] = m[k] / (m[k] + v[k])
        c = g**2 * np.diag(mu_mu)[s]
        n[k] = c.sum() ** 2 / (c @ c) if c.sum() > 0 else 0.0
    return ModeTotals(m, v, rho, n, member)


def training_mean(x_train: np.ndarray) -> np.ndarray:
    """The float64 training mean :func:`measure_modes` uses."""
    return np.asarray(x_train, dtype=np.float64).mean(axis=0)


def measure_modes(
    params: dict, x_eval: np.ndarray, x_train: np.ndarray, basis=None, *, x_train_mean=None
) -> ModeTotals:
    """:func:`mode_totals` of a linear VAE on the evaluation split, PCs of the training split
    (``basis``: ``spectra.pca_basis(x_train)``, and ``x_train_mean``:
    :func:`training_mean`, if a job already computed them for all its points)."""
    if x_train_mean is None:
        x_train_mean = training_mean(x_train)
    mom = posterior_moments(params, x_eval, x_train_mean)
    _, vecs = basis if basis is not None else pca_basis(x_train)
    return mode_totals(params["W"], mom.mu_mu, mom.mean_s2, vecs)


def point_modes(
    model, x_eval: np.ndarray, x_train: np.ndarray, basis=None, *, x_train_mean=None
) -> ModeTotals | None:
    """The mode totals of a trained model at one scan point; ``None`` for a family without
    decoder columns (any but the linear VAE). ``basis``, ``x_train_mean``: as for
    :func:`measure_modes`."""
    if model_spec(model):
        return None
    return measure_modes(model.numpy_params(), x_eval, x_train, basis, x_train_mean=x_train_mean)
