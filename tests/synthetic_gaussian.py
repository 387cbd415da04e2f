"""Gaussian data with a known covariance spectrum: the oracle's dataset (docs/science.md §7).

The covariance is a correlation matrix (unit diagonal) with eigenvalues ``d * T_k``, so
per-feature standardization leaves the spectrum unchanged up to sampling error, and the
normalized spectrum is ``T_k`` itself. A zero ``T_k`` makes one feature an exact linear
combination of the others (like BIO7 = BIO5 - BIO6).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import random_correlation

from collapse_spectroscopy.store.prepared import PreparedDataset


def gaussian_splits(spectrum, sizes=(40_000, 20_000, 40_000), seed=0):
    """Standardized train/val/test float32 arrays drawn from N(0, C), C with ``spectrum``."""
    tk = np.asarray(spectrum, dtype=np.float64)
    d = tk.size
    assert abs(tk.sum() - 1.0) < 1e-12, "a normalized spectrum sums to 1"
    rng = np.random.default_rng(seed)
    corr = random_correlation.rvs(tk * d, random_state=rng)
    lam, vecs = np.linalg.eigh(corr)
    lam = np.clip(lam, 0.0, None)
    z = rng.standard_normal((sum(sizes), d))
    x = (z * np.sqrt(lam)) @ vecs.T
    n_tr = sizes[0]
    mean, std = x[:n_tr].mean(axis=0), x[:n_tr].std(axis=0)
    x = ((x - mean) / std).astype(np.float32)
    return x[:n_tr], x[n_tr : n_tr + sizes[1]], x[n_tr + sizes[1] :], mean, std


def gaussian_prepared(spectrum, sizes=(4000, 2000, 2000), seed=0) -> PreparedDataset:
    xtr, xva, xte, mean, std = gaussian_splits(spectrum, sizes, seed)
    return PreparedDataset(
        x_train=xtr,
        x_val=xva,
        x_test=xte,
        mean=mean,
        std=std,
        feature_names=[f"f{i + 1}" for i in range(xtr.shape[1])],
        metadata={"source": "test-gaussian"},
        true_spectrum=np.asarray(spectrum, dtype=np.float64),
    )
