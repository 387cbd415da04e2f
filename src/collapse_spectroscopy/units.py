"""The scan coordinate: normalized temperature ``T = beta * sigma2 / V`` (SPEC §2).

This is the only place where ``T`` and ``beta`` are converted. ``V`` is the total variance
of the training split (``trace Cov_train(x)``, equal to ``d`` for standardized data) and
``sigma2`` the decoder variance of the Gaussian likelihood. With this convention a PCA mode
of eigenvalue ``lambda_k`` collapses exactly at ``T_k = lambda_k / V``.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError


def _check_positive(name: str, value) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise InputError(f"{name} must be finite and > 0, got {value!r}")
    return arr


def temperature_to_beta(temperature, total_variance, sigma2=1.0):
    """``beta = T * V / sigma2``: the beta-VAE weight that realizes temperature ``T``."""
    t = _check_positive("temperature T", temperature)
    v = _check_positive("total variance V", total_variance)
    s = _check_positive("decoder variance sigma2", sigma2)
    out = t * v / s
    return float(out) if out.ndim == 0 else out


def beta_to_temperature(beta, total_variance, sigma2=1.0):
    """``T = beta * sigma2 / V``: the normalized information price of a given ``beta``."""
    b = _check_positive("beta", beta)
    v = _check_positive("total variance V", total_variance)
    s = _check_positive("decoder variance sigma2", sigma2)
    out = b * s / v
    return float(out) if out.ndim == 0 else out
