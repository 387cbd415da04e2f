"""The PCA references of a scan (docs/science.md §4.4, §4.7).

The normalized eigenvalues ``lambda_k / V`` of the training covariance (the PCA spectrum
that a linear VAE's collapse thresholds and utilities reproduce), the PCA truncation
distortion ``1 - sum_{i<=k} lambda_i / V``, and the split-matched references on the
evaluation split: the training principal components applied to it. Float64 throughout: an
exactly dependent feature has an eigenvalue ~1e-16 (docs/science.md §7b), and
:data:`PCA_FLOOR` is where such rounding ends and a mode begins.
"""

from __future__ import annotations

import numpy as np

# A PCA ratio below this is float rounding of an exactly dependent feature
# (docs/science.md §7b), not a mode: summaries leave it out instead of dividing by it.
# In the same units (a fraction of V), a smaller move of a utility or threshold is
# rounding too, not a move (under_equilibrated_ranks: a spare latent's u_k ~ 1e-16).
PCA_FLOOR = 1e-12


def pca_spectrum(x_train, basis=None) -> np.ndarray:
    """Normalized eigenvalues ``lambda_k / V`` of the training covariance, descending.

    float64 throughout (an exactly dependent feature has eigenvalue ~1e-16, docs/science.md §7b);
    population covariance, the convention of ``V`` (the total variance of the training split).
    ``basis``: :func:`pca_basis` of ``x_train`` if already computed (a job computes it once).
    """
    lam, _ = basis if basis is not None else _pca(x_train)
    return lam / lam.sum()


def pca_basis(x_train) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues ``lambda_k`` (descending, clipped at 0) and unit eigenvectors ``e_k``
    (columns, same order) of the training covariance, float64 (docs/science.md §4.4)."""
    return _pca(x_train)


def _pca(x_train):
    x = np.asarray(x_train, dtype=np.float64)
    cov = np.cov(x, rowvar=False, bias=True)
    lam, vecs = np.linalg.eigh(np.atleast_2d(cov))
    order = np.argsort(lam)[::-1]
    return np.clip(lam[order], 0.0, None), vecs[:, order]


def pca_truncation_distortion(ratio) -> np.ndarray:
    """``1 - sum_{i<=k} lambda_i / V`` for ``k = 0..d`` (length d + 1)."""
    r = np.asarray(ratio, dtype=np.float64)
    return 1.0 - np.concatenate([[0.0], np.cumsum(r)])


def pca_eval_distortion(x_train, x_eval, basis=None) -> np.ndarray:
    """Split-matched PCA reference: ``Dn_k`` on ``x_eval`` of the train-PCA truncation.

    Train principal components (and train mean) applied to the evaluation split,
    normalized by ``E_eval ||x - xbar_train||^2`` as the VAE's truncated distortions are.
    Returns ``k = 0..d``. ``basis``: :func:`pca_basis` of ``x_train``, if already computed.
    """
    _, vecs = basis if basis is not None else _pca(x_train)
    mean = np.asarray(x_train, dtype=np.float64).mean(axis=0)
    xe = np.asarray(x_eval, dtype=np.float64) - mean
    proj2 = np.square(xe @ vecs).mean(axis=0)  # variance along each train PC
    total = np.square(xe).sum(axis=1).mean()
    return 1.0 - np.concatenate([[0.0], np.cumsum(proj2)]) / total


def pca_eval_ratio(x_train, x_eval, basis=None) -> np.ndarray:
    """The evaluation split along the training PCs: ``E_eval (e_k.(x - xbar_train))^2 / V``.

    ``V`` is the training total variance, so this is the evaluation split's counterpart of
    ``lambda_k / V``, mean shift included; its ratio to ``lambda_k / V`` sets the training
    equilibrium's ``rho`` on the evaluation split (docs/science.md §4.7). Length ``d``.
    ``basis``: :func:`pca_basis` of ``x_train``, if already computed.
    """
    lam, vecs = basis if basis is not None else _pca(x_train)
    mean = np.asarray(x_train, dtype=np.float64).mean(axis=0)
    xe = np.asarray(x_eval, dtype=np.float64) - mean
    return np.square(xe @ vecs).mean(axis=0) / lam.sum()
