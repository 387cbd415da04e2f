"""The scan coordinate: normalized temperature ``T = beta * sigma2 / V`` (docs/science.md §2).

This is the only place where ``T`` and ``beta`` are converted, and where ``V`` is
computed: the total variance of the training split (``trace Cov_train(x)``, equal to ``d``
for standardized data; :func:`total_variance`). ``sigma2`` is the decoder variance of the
Gaussian likelihood. With this convention a PCA mode of eigenvalue ``lambda_k`` collapses
exactly at ``T_k = lambda_k / V``.
"""

from __future__ import annotations

import numpy as np

from collapse_spectroscopy.errors import InputError


def total_variance(x) -> float:
    """``V = trace Cov(x)`` of the training split (population convention, float64)."""
    return float(np.asarray(x, dtype=np.float64).var(axis=0).sum())


def _check_positive(name: str, value) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise InputError(f"{name} must be finite and > 0, got {value!r}")
    return arr


def _check_result(formula: str, out: np.ndarray, given: str) -> np.ndarray:
    """``out`` if every value is a finite number > 0, else InputError: the conversion left
    the floating-point range (an overflow to inf, or an underflow to 0)."""
    if np.all(np.isfinite(out)) and np.all(out > 0):
        return out
    what = "overflows to inf" if not np.all(np.isfinite(out)) else "underflows to 0"
    raise InputError(
        f"{formula} {what} for {given}: expected a result a 64-bit float holds (above 0, "
        f"at most {np.finfo(np.float64).max:.3g})"
    )


def temperature_to_beta(temperature, total_variance, sigma2=1.0):
    """``beta = T * V / sigma2``: the beta-VAE weight that realizes temperature ``T``."""
    t = _check_positive("temperature T", temperature)
    v = _check_positive("total variance V", total_variance)
    s = _check_positive("decoder variance sigma2", sigma2)
    with np.errstate(over="ignore", under="ignore"):
        out = t * v / s
    out = _check_result(
        "beta = T V / sigma2",
        out,
        f"T = {temperature!r}, V = {total_variance!r}, sigma2 = {sigma2!r}",
    )
    return float(out) if out.ndim == 0 else out


def beta_to_temperature(beta, total_variance, sigma2=1.0):
    """``T = beta * sigma2 / V``: the normalized information price of a given ``beta``."""
    b = _check_positive("beta", beta)
    v = _check_positive("total variance V", total_variance)
    s = _check_positive("decoder variance sigma2", sigma2)
    with np.errstate(over="ignore", under="ignore"):
        out = b * s / v
    out = _check_result(
        "T = beta sigma2 / V", out, f"beta = {beta!r}, V = {total_variance!r}, sigma2 = {sigma2!r}"
    )
    return float(out) if out.ndim == 0 else out
