"""The rate at which a mode leaves collapse (docs/science.md §7b; issue 12), against the
Hessian of the model's own loss taken by autograd at the collapsed point, and the
statement it backs: quadratic in the mode's size, so mode 18 of WorldClim leaves collapse
~23x slower than mode 17 at T = 1e-6.

Tolerance: the Hessian is exact second derivatives of a float64 loss of order 1 (rounding
~1e-15 relative); the rates are ~1e-9..1, compared to 1e-9 relative plus 1e-15 absolute.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from collapse_spectroscopy.analysis import equilibrium
from collapse_spectroscopy.models.linear import kl_per_latent


def expected_loss_of(A, W, x, beta, sigma2):
    """L = D + beta R of a linear VAE with posterior variance 1 (the collapsed latents'),
    averaged exactly over the noise: ``||x - W A x||^2 + sum_j ||W_j||^2`` over
    ``2 sigma2``, plus ``beta`` times the KL. Data centered (the biases at the mean)."""
    mu = x @ A.T
    logs2 = torch.zeros_like(mu)
    resid = x - mu @ W.T
    distortion = (resid.square().sum(1) + W.square().sum()).mean() / (2 * sigma2)
    return distortion + beta * kl_per_latent(mu, logs2).sum(1).mean()


@pytest.mark.parametrize("sigma2", [1.0, 0.3])
@pytest.mark.parametrize("T", [1e-3, 0.02, 0.3])
def test_escape_rate_is_minus_the_loss_curvature_at_collapse(T, sigma2):
    rng = np.random.default_rng(0)
    d, n = 4, 20_000
    z = rng.standard_normal((n, d))
    x = z @ np.linalg.cholesky(np.diag([2.0, 1.0, 0.6, 0.4]) + 0.2).T
    x -= x.mean(0)
    xt = torch.as_tensor(x)
    cov = x.T @ x / n
    lam, vecs = np.linalg.eigh(cov)
    V = lam.sum()
    beta = T * V / sigma2
    expected = equilibrium.escape_rate(lam / V, T, V, sigma2)
    for k in range(d):
        e = torch.as_tensor(vecs[:, k])

        def loss(wu, e=e):
            A = (wu[0] * e)[None, :]  # one latent, its encoder gain along PC k
            W = (wu[1] * e)[:, None]  # and its decoder gain
            return expected_loss_of(A, W, xt, beta, sigma2)

        H = torch.autograd.functional.hessian(loss, torch.zeros(2, dtype=torch.float64))
        rate = -np.linalg.eigvalsh(H.numpy())[0]
        assert rate == pytest.approx(expected[k], rel=1e-9, abs=1e-15)
        assert (rate > 0) == (T < lam[k] / V)  # grows exactly below the threshold


def test_small_modes_escape_quadratically_slower():
    """WorldClim's tail at T = 1e-6 (V = 19, the standardized features): modes 17 and 18
    (T_k = 1.0e-5, 2.53e-6) leave collapse at rates ~ V^2 T_k (T_k - T), 23x apart."""
    tk = np.array([9.99e-6, 2.526e-6])
    rate = equilibrium.escape_rate(tk, 1e-6, 19.0)
    np.testing.assert_allclose(rate, 19.0**2 * tk * (tk - 1e-6), rtol=1e-3)
    assert rate[0] / rate[1] == pytest.approx(23.3, rel=0.01)
