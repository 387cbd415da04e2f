"""Observables: a naive loop-based reference computation, Monte-Carlo estimates from posterior
samples and the invariances of docs/science.md §3."""

import numpy as np
import pytest

from collapse_spectroscopy.analysis import observables as ob
from collapse_spectroscopy.errors import InputError


def random_params(d=5, K=7, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "A": rng.normal(size=(K, d)),
        "a": rng.normal(size=K) * 0.3,
        "B": rng.normal(size=(K, d)) * 0.2,
        "b": rng.normal(size=K),
        "W": rng.normal(size=(d, K)),
        "c": rng.normal(size=d) * 0.1,
    }


def data(n=3000, d=5, seed=1, shift=0.0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + shift).astype(np.float32)


def naive(params, x, x_train):
    """One sample and one latent at a time, as the definitions read (float64)."""
    A, a, B, b, W, c = (params[k] for k in "AaBbWc")
    K = A.shape[0]
    xs = x.astype(np.float64)
    xbar = x_train.astype(np.float64).mean(axis=0)
    m, v, l = np.zeros(K), np.zeros(K), np.zeros(K)
    mus = []
    for xi in xs:
        mu = A @ xi + a
        ls = B @ xi + b
        mus.append(mu)
        for j in range(K):
            m[j] += mu[j] ** 2
            v[j] += np.exp(ls[j])
            l[j] += ls[j]
    n = len(xs)
    m, v, l = m / n, v / n, l / n
    rho = m / (m + v)
    order = sorted(range(K), key=lambda j: -rho[j])
    train_mu = np.mean([A @ xi + a for xi in x_train.astype(np.float64)], axis=0)
    norm = np.mean([np.sum((xi - xbar) ** 2) for xi in xs])

    def dn(offset):
        out = []
        for k in range(K + 1):
            total = 0.0
            for xi, mu in zip(xs, mus, strict=True):
                z = offset.copy()
                for j in order[:k]:
                    z[j] = mu[j]
                total += np.sum((xi - W @ z - c) ** 2)
            out.append(total / n / norm)
        return np.array(out)

    return {
        "m": m,
        "v": v,
        "l": l,
        "rho": rho,
        "order": np.array(order),
        "dn": dn(np.zeros(K)),
        "dn_mean": dn(train_mu),
    }


def test_vectorized_matches_naive():
    params = random_params()
    x, x_train = data(400), data(300, seed=2, shift=0.2)
    ref = naive(params, x, x_train)
    obs = ob.measure(params, x, x_train, chunk=128)  # several chunks
    order = ref["order"]
    np.testing.assert_array_equal(obs.latent_index, order)
    np.testing.assert_allclose(obs.per_latent["posterior_mean_square"], ref["m"][order], rtol=1e-12)
    np.testing.assert_allclose(obs.per_latent["posterior_variance"], ref["v"][order], rtol=1e-12)
    np.testing.assert_allclose(
        obs.per_latent["posterior_log_variance"], ref["l"][order], rtol=1e-12, atol=1e-14
    )
    np.testing.assert_allclose(obs.per_latent["signal_fraction"], ref["rho"][order], rtol=1e-12)
    # moment expansion vs explicit residuals: same float64 sums in a different order
    np.testing.assert_allclose(obs.truncated_distortion, ref["dn"], rtol=1e-10)
    np.testing.assert_allclose(obs.truncated_distortion_train_mean, ref["dn_mean"], rtol=1e-10)
    assert obs.distortion_posterior_mean == pytest.approx(ref["dn"][-1], rel=1e-10)


def test_jensen_gap_and_ranking():
    obs = ob.measure(random_params(), data(), data(seed=3))
    p = obs.per_latent
    assert np.all(p["jensen_gap"] >= 0)  # Jensen: log E s2 >= E log s2
    assert np.all(np.diff(p["signal_fraction"]) <= 0)  # ranked, descending


def _mean_and_standard_error(f):
    """Mean over draws and samples of ``f`` (S draws, n samples, ...) and its standard error.

    The observables are exact averages over the given samples, so the only randomness of
    the estimate is the noise draws: the error variance is the within-sample variance over
    the draws, averaged over samples, divided by the number of draws ``S n``.
    """
    S, n = f.shape[:2]
    return f.mean(axis=(0, 1)), np.sqrt(f.var(axis=0, ddof=1).mean(axis=0) / (S * n))


def test_rate_scale_and_moments_match_posterior_samples():
    """``kl_rate``, ``rate``, ``latent_scale``, ``m`` and ``v`` against Monte-Carlo estimates
    from samples of the posterior, not against the formulas the code uses.

    For each evaluation sample, ``S`` pairs of independent draws ``z, z'`` from
    ``q(z|x) = N(mu(x), s2(x))`` estimate (docs/science.md §3):

    - ``R_j = E log q(z_j|x) - log p(z_j)``, the KL as an expectation of the log-density
      ratio (densities written out here); ``rate`` the same with the sum over latents;
    - ``q_j = E z_j^2`` (the scale of the aggregate posterior about the prior mean 0);
    - ``m_j = E z_j z'_j`` (two independent draws share only the mean);
    - ``v_j = E (z_j - z'_j)^2 / 2``.

    The posterior variance depends on ``x`` (``B != 0``), so the mean of ``exp(logs2)``
    and the mean of ``logs2`` differ (a Jensen gap) and a formula mixing them up fails.
    Tolerance: 5 standard errors of the estimate (a 6e-7 chance per check for a correct
    code, and the draws are seeded; measured: within 1.5 standard errors). The standard
    errors of ``R_j`` and ``q_j`` are 0.1-0.9 % of their values, so a factor wrong by 10 %,
    a dropped ``-1`` in ``R_j`` (0.5 nats against ``R_j`` of 0.35-12), ``log v`` for ``l``,
    a centred ``m`` or a mean for the sum in ``rate`` are each many standard errors off.
    """
    params = random_params(seed=4)
    params["A"] = params["A"] * 0.2  # mean and noise terms of comparable size
    x = data(2000)
    obs = ob.measure(params, x, data(seed=3))
    p, order = obs.per_latent, obs.latent_index
    xs = x.astype(np.float64)
    mu = xs @ params["A"].T + params["a"]
    logs2 = xs @ params["B"].T + params["b"]
    s = np.exp(0.5 * logs2)
    rng = np.random.default_rng(2)
    S = 100
    z = mu + s * rng.standard_normal((S, *mu.shape))  # (S, n, K)
    z2 = mu + s * rng.standard_normal((S, *mu.shape))
    log_q = -0.5 * np.log(2 * np.pi) - 0.5 * logs2 - 0.5 * ((z - mu) / s) ** 2
    log_p = -0.5 * np.log(2 * np.pi) - 0.5 * z**2
    samples = {
        "kl_rate": log_q - log_p,
        "latent_scale": z**2,
        "posterior_mean_square": z * z2,
        "posterior_variance": 0.5 * (z - z2) ** 2,
    }
    for name, f in samples.items():
        estimate, se = _mean_and_standard_error(f)
        np.testing.assert_array_less(np.abs(p[name] - estimate[order]), 5 * se[order], err_msg=name)
    estimate, se = _mean_and_standard_error((log_q - log_p).sum(axis=-1))
    assert abs(obs.rate - estimate) < 5 * se


def test_rho_invariant_under_latent_rescaling():
    """mu -> s mu, std -> s std (decoder compensates): rho and Dn_k unchanged, m and v not."""
    params = random_params()
    x, x_train = data(), data(seed=3)
    scale = np.linspace(0.3, 3.0, params["A"].shape[0])
    scaled = dict(params)
    scaled["A"] = params["A"] * scale[:, None]
    scaled["a"] = params["a"] * scale
    scaled["b"] = params["b"] + 2 * np.log(scale)
    scaled["W"] = params["W"] / scale
    o1, o2 = ob.measure(params, x, x_train), ob.measure(scaled, x, x_train)
    np.testing.assert_allclose(
        o1.per_latent["signal_fraction"], o2.per_latent["signal_fraction"], rtol=1e-10
    )
    np.testing.assert_allclose(o1.truncated_distortion, o2.truncated_distortion, rtol=1e-10)
    assert not np.allclose(
        o1.per_latent["posterior_mean_square"], o2.per_latent["posterior_mean_square"]
    )


def test_dn0_is_one_for_a_decoder_bias_at_the_training_mean():
    params = random_params()
    x_train = data(seed=3, shift=0.5)
    params["c"] = x_train.astype(np.float64).mean(axis=0)
    obs = ob.measure(params, data(shift=1.0), x_train)  # test mean differs: still 1
    assert obs.truncated_distortion[0] == pytest.approx(1.0, rel=1e-12)


def test_sampled_distortion_is_reproducible_and_above_the_mean_reconstruction():
    params = random_params()
    x, x_train = data(20000), data(seed=3)
    a = ob.measure(params, x, x_train, seed=5)
    b = ob.measure(params, x, x_train, seed=5)
    assert a.distortion_sampled == b.distortion_sampled
    # noise adds sum_j s2_j ||W_j||^2 on average: the sampled distortion is larger
    assert a.distortion_sampled > a.distortion_posterior_mean


@pytest.mark.parametrize("bad", [np.zeros((0, 5)), np.zeros((10, 4)), np.zeros(5)])
def test_bad_shapes(bad):
    with pytest.raises(InputError, match="shape|empty"):
        ob.measure(random_params(), bad.astype(np.float32), data())


def test_reconstruction_distortion_is_dn_with_every_latent_kept():
    """The autoencoder baseline's distortion (docs/science.md §9) against the naive loop's
    Dn_K (every latent at its posterior mean, normalized by E_eval ||x - xbar_train||^2)
    on a linear model read as an autoencoder (code = mu): the same float64 sums in another
    order, 1e-10 as above; an evaluation split shifted from the training one, so that the
    normalizer's reference (the training mean, not the evaluation mean) matters."""
    params = random_params()
    x, x_train = data(400, shift=0.5), data(300, seed=2)
    A, a, W, c = (params[k] for k in "AaWc")

    def encode(xc):
        return xc @ A.T + a, None

    def decode(z):
        return z @ W.T + c

    reached = ob.reconstruction_distortion(encode, decode, x, x_train, chunk=128)
    assert reached == pytest.approx(naive(params, x, x_train)["dn"][-1], rel=1e-10)
    # the evaluation mean instead of the training mean would give another number
    centred = ob.reconstruction_distortion(encode, decode, x, x, chunk=128)
    assert abs(centred - reached) > 1e-3 * reached
