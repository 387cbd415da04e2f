"""The analytic equilibrium against the closed forms of docs/science.md §3, and as a true
minimum."""

import numpy as np
import pytest
import torch

from collapse_spectroscopy import equilibrium as eq

TK = np.array([0.5, 0.25, 0.13, 0.07, 0.035, 0.012, 0.003, 0.0])


@pytest.mark.parametrize("T", [1e-4, 0.01, 0.1, 0.3, 0.6, 2.0])
def test_closed_forms(T):
    active = TK > T
    ratio = np.where(active, T / np.where(TK > 0, TK, 1), 1.0)
    np.testing.assert_allclose(eq.signal_fraction(TK, T), np.where(active, 1 - ratio, 0))
    np.testing.assert_allclose(eq.posterior_mean_square(TK, T), np.where(active, 1 - ratio, 0))
    np.testing.assert_allclose(eq.posterior_variance(TK, T), np.where(active, ratio, 1))
    np.testing.assert_allclose(eq.posterior_log_variance(TK, T), np.where(active, np.log(ratio), 0))
    np.testing.assert_allclose(eq.kl_rate(TK, T), np.where(active, -0.5 * np.log(ratio), 0))
    np.testing.assert_allclose(eq.latent_scale(TK, T), 1.0)
    np.testing.assert_allclose(eq.jensen_gap(TK, T), 0.0, atol=1e-15)
    np.testing.assert_allclose(
        eq.utility(TK, T), np.where(active, TK - T**2 / np.where(TK > 0, TK, 1), 0)
    )
    # R = 1/2 (m + v - 1 - l) holds on both branches
    np.testing.assert_allclose(
        eq.kl_rate(TK, T),
        0.5
        * (
            eq.posterior_mean_square(TK, T)
            + eq.posterior_variance(TK, T)
            - 1
            - eq.posterior_log_variance(TK, T)
        ),
        atol=1e-15,
    )
    dn = eq.truncated_distortion(TK, T)
    assert dn[0] == 1.0 and dn.shape == (TK.size + 1,)
    np.testing.assert_allclose(-np.diff(dn), eq.utility(TK, T))
    np.testing.assert_allclose(eq.sampled_distortion(TK, T), np.minimum(T, TK).sum())


def test_limits_and_broadcasting():
    T = np.array([1e-9, 0.5, 1.0])
    rho = eq.signal_fraction(TK, T)
    assert rho.shape == (3, TK.size)
    np.testing.assert_allclose(rho[0, :-1], 1.0, atol=1e-6)  # T -> 0: every real mode on
    assert rho[0, -1] == 0.0  # the zero mode never
    assert np.all(rho[2] == 0)  # T >= 1: all collapsed
    np.testing.assert_allclose(eq.utility(TK, 1e-9), TK, atol=1e-8)  # u_k -> T_k as T -> 0
    np.testing.assert_allclose(eq.sampled_distortion(TK, 2.0), 1.0)  # nothing transmitted


def _population_loss(A, a, B, b, W, c, cov, beta):
    """Exact loss of the linear VAE on N(0, cov), sigma2 = 1, averaged over x and eps."""
    d = cov.shape[0]
    M = torch.eye(d, dtype=cov.dtype) - W @ A
    # E||x - W mu - c||^2 = tr(M cov M^T) + ||W a + c||^2, E s2_j = exp(b_j + B_j cov B_j^T / 2)
    s2 = torch.exp(b + 0.5 * torch.einsum("kd,de,ke->k", B, cov, B))
    dist = torch.trace(M @ cov @ M.T) + (W @ a + c).square().sum() + (s2 * W.square().sum(0)).sum()
    m = torch.einsum("kd,de,ke->k", A, cov, A) + a.square()
    rate = 0.5 * (m + s2 - 1 - b).sum()
    return 0.5 * dist + beta * rate


@pytest.mark.parametrize("T", [0.02, 0.1, 0.3])
def test_equilibrium_is_a_stationary_minimum(T):
    """Build the VAE the analytic equilibrium describes and check that it minimizes L.

    Independent of the formulas above: the population loss is differentiated by autograd;
    its gradient at the analytic parameters must vanish and random perturbations must
    raise it.
    """
    rng = np.random.default_rng(0)
    d = TK.size
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    lam = TK * d  # V = d
    cov = torch.tensor(q @ np.diag(lam) @ q.T)
    beta = T * d  # beta = T V / sigma2 with sigma2 = 1
    rho = eq.signal_fraction(TK, T)
    active = rho > 0
    # encoder gain a_k = sqrt(rho_k / lambda_k) along PC k; decoder w_k = a_k lambda_k
    gain = np.where(active, np.sqrt(rho / np.where(lam > 0, lam, 1)), 0.0)
    A = torch.tensor(np.diag(gain) @ q.T, requires_grad=True)
    W = torch.tensor(q @ np.diag(gain * lam), requires_grad=True)
    b = torch.tensor(eq.posterior_log_variance(TK, T), requires_grad=True)
    a = torch.zeros(d, dtype=torch.float64, requires_grad=True)
    B = torch.zeros(d, d, dtype=torch.float64, requires_grad=True)
    c = torch.zeros(d, dtype=torch.float64, requires_grad=True)
    params = [A, a, B, b, W, c]
    loss = _population_loss(*params, cov, beta)
    grads = torch.autograd.grad(loss, params)
    for name, g in zip("AaBbWc", grads, strict=True):
        # collapsed latents have W_j = 0 and A_j = 0: their encoder gradient vanishes too
        assert g.abs().max().item() < 1e-12, f"dL/d{name} = {g.abs().max().item():.3g}"
    with torch.no_grad():
        for _ in range(20):
            pert = [p + 1e-3 * torch.randn_like(p) for p in params]
            assert _population_loss(*pert, cov, beta) > loss
    # the analytic loss value: sum over modes of the one-mode optimum (docs/science.md §2 check)
    expected = sum(
        (0.5 * lk * (1 - r) - 0.5 * beta * np.log(1 - r)) if r > 0 else 0.5 * lk
        for lk, r in zip(lam, rho, strict=True)
    )
    assert loss.item() == pytest.approx(expected, rel=1e-12)
