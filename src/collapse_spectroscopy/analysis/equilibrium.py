"""The analytic equilibrium of the linear Gaussian VAE: the oracle (docs/science.md §3, §4, §7).

Also the model at that equilibrium (:func:`equilibrium_parameters`) and what it gives on an
evaluation split whose covariance differs from the training one, the split-aware references
(``split_*``, docs/science.md §4.7).

For data whose training covariance has eigenvalues ``lambda_k`` and total variance
``V = sum lambda_k``, the global minimum of ``L = D + beta R`` with a linear decoder and a
(constant-variance) Gaussian posterior aligns one latent with each principal component.
Mode ``k`` has collapse threshold ``T_k = lambda_k / V`` and, at temperature ``T``:

=====================  ============================  ==============
observable              active branch (T < T_k)        collapsed
=====================  ============================  ==============
signal fraction rho     1 - T/T_k                      0
posterior mean sq. m    1 - T/T_k                      0
posterior variance v    T/T_k                          1
log-variance l          log(T/T_k)                     0
KL rate R               -1/2 log(T/T_k)                0
latent scale q          1                              1
Jensen gap J            0                              0
utility u_k(T)          T_k - T^2/T_k                  0
=====================  ============================  ==============

Derivation (one mode, unit latent scale): with encoder gain ``a`` and posterior variance
``s2`` the optimal decoder is ``w = a lambda / q``; the posterior-mean reconstruction leaves
``lambda (1-rho)^2`` of the mode's variance, so it removes ``T_k rho (2 - rho)`` of the
normalized distortion, i.e. ``T_k - T^2/T_k``. A sampled reconstruction leaves
``lambda (1 - rho)``, i.e. exactly ``T`` per active mode: the sampled normalized distortion
is ``sum_k min(T, T_k)``.

All functions take the normalized spectrum ``T_k = lambda_k / V`` (any order; returned in
the same order) and broadcast over ``T``: inputs of shape ``(...,)`` for T give outputs of
shape ``(..., n_modes)``.
"""

from __future__ import annotations

import numpy as np


def _grid(spectrum, temperature):
    tk = np.asarray(spectrum, dtype=np.float64)
    t = np.asarray(temperature, dtype=np.float64)[..., None]
    return tk, t


def _active(tk, t):
    # A mode of zero (or negative, i.e. rounding) eigenvalue is never active.
    return (tk > 0) & (t < tk)


def _ratio(tk, t):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(tk > 0, t / np.where(tk > 0, tk, 1.0), np.inf)


def signal_fraction(spectrum, temperature):
    """Equilibrium ``rho_k(T) = max(0, 1 - T/T_k)``."""
    tk, t = _grid(spectrum, temperature)
    return np.where(_active(tk, t), 1.0 - _ratio(tk, t), 0.0)


def posterior_mean_square(spectrum, temperature):
    """Equilibrium ``m_k(T) = max(0, 1 - T/T_k)`` at unit latent scale."""
    return signal_fraction(spectrum, temperature)


def posterior_variance(spectrum, temperature):
    """Equilibrium ``v_k(T) = min(1, T/T_k)``."""
    tk, t = _grid(spectrum, temperature)
    return np.where(_active(tk, t), _ratio(tk, t), 1.0)


def posterior_log_variance(spectrum, temperature):
    """Equilibrium ``l_k(T) = min(0, log(T/T_k))``: slope 1 in log T on the active branch."""
    tk, t = _grid(spectrum, temperature)
    with np.errstate(divide="ignore"):
        return np.where(_active(tk, t), np.log(np.where(_active(tk, t), _ratio(tk, t), 1.0)), 0.0)


def kl_rate(spectrum, temperature):
    """Equilibrium ``R_k(T) = max(0, -1/2 log(T/T_k))`` in nats: slope -1/2 in log T."""
    return -0.5 * posterior_log_variance(spectrum, temperature)


def latent_scale(spectrum, temperature):
    """Equilibrium ``q_k = m_k + v_k = 1`` on both branches."""
    return posterior_mean_square(spectrum, temperature) + posterior_variance(spectrum, temperature)


def jensen_gap(spectrum, temperature):
    """Equilibrium ``J_k = log v_k - l_k = 0``: the posterior variance does not vary with x."""
    return np.log(posterior_variance(spectrum, temperature)) - posterior_log_variance(
        spectrum, temperature
    )


def utility(spectrum, temperature):
    """Finite-T utility ``u_k(T) = T_k - T^2/T_k`` of an active mode, 0 when collapsed.

    Equivalently ``u_k / T_k = rho_k (2 - rho_k)``: posterior means shrink a mode by rho.
    """
    tk, t = _grid(spectrum, temperature)
    rho = signal_fraction(tk, t[..., 0])
    return tk * rho * (2.0 - rho)


def truncated_distortion(spectrum, temperature):
    """Equilibrium ``Dn_k(T)`` for ``k = 0..n`` keeping the ``k`` largest modes at their means.

    Returns shape ``(..., n + 1)`` with ``Dn_0 = 1``. Modes are ranked by ``T_k`` descending,
    which at equilibrium is the ranking by rho.
    """
    tk = np.sort(np.asarray(spectrum, dtype=np.float64))[::-1]
    u = utility(tk, temperature)
    zero = np.zeros(u.shape[:-1] + (1,))
    return 1.0 - np.concatenate([zero, np.cumsum(u, axis=-1)], axis=-1)


def sampled_distortion(spectrum, temperature):
    """Equilibrium normalized distortion of a sampled reconstruction: ``sum_k min(T, T_k)``."""
    tk, t = _grid(spectrum, temperature)
    return np.minimum(t, np.clip(tk, 0.0, None)).sum(axis=-1)


# --- Leaving the collapsed state (docs/science.md §7b) ---


def escape_rate(spectrum, temperature, total_variance: float, sigma2: float = 1.0):
    """Growth rate of mode ``k`` out of the collapsed state under gradient flow on ``L``.

    At collapse (the latent's encoder gain ``w`` and decoder gain ``u`` along PC ``k`` zero,
    its posterior variance 1) the loss is, in ``(w, u)``, a quadratic form with Hessian
    ``[[beta lambda, -lambda/sigma2], [-lambda/sigma2, 1/sigma2]]`` (``lambda = V T_k``,
    ``beta = T V / sigma2``); the returned rate is minus its smallest eigenvalue: positive
    (``w, u`` grow like ``exp(rate t)`` in gradient-flow time ``t``) exactly when
    ``T < T_k``, negative (the collapse is stable) above. For a small mode it is about
    ``V^2 T_k (T_k - T) / sigma2`` (``-a + c^2 / b`` to first order in the small entries
    ``a = beta lambda``, ``c = lambda / sigma2``): quadratic in the mode's size, which is
    why the tail takes so long to leave collapse from a random start.
    """
    tk, t = _grid(spectrum, temperature)
    V = float(total_variance)
    lam = V * tk
    a, b, c = t * V / sigma2 * lam, 1.0 / sigma2, lam / sigma2
    return 0.5 * (np.sqrt((a - b) ** 2 + 4.0 * c**2) - (a + b))


# --- The model at its training equilibrium, measured on another split (docs/science.md §4.7) ---


def equilibrium_parameters(mean, covariance, temperature: float, latents: int) -> dict:
    """The linear VAE at the analytic equilibrium of a training split, as ``measure`` takes it.

    ``mean`` and ``covariance`` (population) are the training split's; with its eigenpairs
    ``(lambda_k, e_k)``, ``V = sum lambda_k`` and ``T_k = lambda_k / V``, latent ``k`` holds
    PC ``k``: ``mu_k(x) = a_k e_k.(x - mean)`` with ``a_k = sqrt(rho_k / lambda_k)``, a
    constant log-variance ``log(T/T_k)``, decoder column ``W_k = a_k lambda_k e_k`` and bias
    ``c = mean`` (docs/science.md §2). Collapsed modes and spare latents (``latents > d``)
    have zero weights and the prior's unit variance; with ``latents < d`` only the largest
    modes are represented. Returns float64 arrays ``A, a, B, b, W, c``.
    """
    mean = np.asarray(mean, dtype=np.float64)
    lam, vecs = np.linalg.eigh(np.asarray(covariance, dtype=np.float64))
    order = np.argsort(lam)[::-1]
    lam, vecs = np.clip(lam[order], 0.0, None), vecs[:, order]
    d, n = lam.size, min(int(latents), lam.size)
    tk = lam / lam.sum()
    rho = signal_fraction(tk, temperature)[:n]
    gain = np.where(rho > 0, np.sqrt(rho / np.where(lam[:n] > 0, lam[:n], 1.0)), 0.0)
    A = np.zeros((latents, d))
    W = np.zeros((d, latents))
    b = np.zeros(latents)
    A[:n] = gain[:, None] * vecs[:, :n].T
    W[:, :n] = vecs[:, :n] * (gain * lam[:n])
    b[:n] = posterior_log_variance(tk, temperature)[:n]
    return {"A": A, "a": -A @ mean, "B": np.zeros((latents, d)), "b": b, "W": W, "c": mean}


def _split_ratio(spectrum, eval_spectrum):
    tk = np.asarray(spectrum, dtype=np.float64)
    ev = np.asarray(eval_spectrum, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return tk, np.where(tk > 0, ev / np.where(tk > 0, tk, 1.0), 0.0)


def split_posterior_mean_square(spectrum, eval_spectrum, temperature):
    """``m_k`` on an evaluation split of the training equilibrium: ``r_k (1 - T/T_k)``.

    ``spectrum`` is the training ``lambda_k / V``; ``eval_spectrum`` the evaluation split's
    mean square along the same training PC about the training mean, over the training
    ``V`` (``spectra.pca_eval_ratio``); ``r_k`` is their ratio. The posterior variance does
    not depend on x at equilibrium, so ``v_k`` is :func:`posterior_variance` on any split.
    """
    tk, r = _split_ratio(spectrum, eval_spectrum)
    return r * posterior_mean_square(tk, temperature)


def split_signal_fraction(spectrum, eval_spectrum, temperature):
    """``rho_k`` on an evaluation split of the training equilibrium (docs/science.md §4.7).

    ``rho = r (1 - t) / (r (1 - t) + t)`` with ``t = T/T_k`` and ``r_k`` the evaluation over
    the training variance along PC ``k`` (:func:`split_posterior_mean_square`); 0 for
    ``T >= T_k``. It still vanishes at the training ``T_k``, but its low-T slope is that of
    a threshold ``r_k T_k``.
    """
    m = split_posterior_mean_square(spectrum, eval_spectrum, temperature)
    v = posterior_variance(spectrum, temperature)
    return m / (m + v)


def split_utility(spectrum, eval_spectrum, temperature):
    """Utility of PC ``k``'s latent on the evaluation split: ``(S_k / sum S) rho_k (2 - rho_k)``.

    ``S_k`` is ``eval_spectrum`` (all ``d`` directions, so that ``sum S`` is the split's
    ``E ||x - xbar_train||^2 / V``, the normalizer of ``Dn``), ``rho_k = 1 - T/T_k`` the
    *training* equilibrium's: the posterior-mean reconstruction scales PC ``k``'s
    coordinate by it on any split. As ``T -> 0`` it is the split-matched PCA utility.
    """
    tk, t = _grid(spectrum, temperature)
    ev = np.asarray(eval_spectrum, dtype=np.float64)
    rho = signal_fraction(tk, t[..., 0])
    return ev / ev.sum() * rho * (2.0 - rho)


def split_truncated_distortion(spectrum, eval_spectrum, temperature):
    """Equilibrium ``Dn_k``, ``k = 0..n``, on the evaluation split, latents ranked as measured.

    At each ``T`` the latents are ranked by their evaluation-split ``rho``
    (:func:`split_signal_fraction`, descending, stable), as ``observables.measure`` ranks
    them; ``Dn_0 = 1``. Shape ``(..., n + 1)``.
    """
    rho = split_signal_fraction(spectrum, eval_spectrum, temperature)
    u = split_utility(spectrum, eval_spectrum, temperature)
    order = np.argsort(-rho, axis=-1, kind="stable")
    u = np.take_along_axis(u, order, axis=-1)
    zero = np.zeros(u.shape[:-1] + (1,))
    return 1.0 - np.concatenate([zero, np.cumsum(u, axis=-1)], axis=-1)
