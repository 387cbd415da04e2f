"""The analytic equilibrium of the linear Gaussian VAE: the oracle (docs/science.md §3, §4, §7).

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
