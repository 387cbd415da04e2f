"""The collapse, utility and PCA spectra of a temperature scan (docs/science.md §4).

Pure functions on arrays; :func:`spectra_table` assembles the table the workflow writes
as ``spectra.csv`` (one row per ranked mode; the column names are a contract).

- **Collapse spectrum**: for ranked mode ``k`` the fixed-exponent law
  ``rho_k(T) = 1 - T/T_k`` fitted by least squares on the points with ``rho_k > rho_min``
  (seeds pooled): ``1/T_k = sum T_i (1 - rho_i) / sum T_i^2``. Whether a rank has a
  threshold at all is one rule, :func:`rank_threshold`, used by the table, its
  ``fit_note``, the per-seed intervals and (through the table) the figures. A free-exponent fit
  ``rho = 1 - (T/T_k)^gamma`` is a diagnostic; the model-free crossing threshold, where the
  seed-mean ``rho_k`` falls through ``rho_min`` (linear in ``log T``), assumes no law.
- **Utility spectrum**: ``Dn*_k`` is the best (lowest) truncated distortion over the scan,
  ``u_k = Dn*_{k-1} - Dn*_k`` with ``Dn*_0 = 1``, in float64.
- **PCA spectrum**: eigenvalues of the training covariance, ``lambda_k / V``, and the PCA
  truncation distortion ``1 - sum_{i<=k} lambda_i / V``; also the split-matched PCA
  utility on the evaluation split (train principal components applied to it).

:func:`summarize` adds the run's summary, with the scan points that ended before the
protocol's early-stopping test passed (:mod:`.stopping`), and flags each rank whose
threshold or utility depends on them (:func:`under_equilibrated_ranks`). The default fit cut
:data:`RHO_MIN` is the schema's ``spectra.rho_min`` (:mod:`.settings`, the one home of
every default).
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
