"""The rate–distortion plane and its Gaussian bound (docs/science.md §9.1).

Oracles: the linear VAE's analytic equilibrium (docs/science.md §2: mode ``k`` keeps ``T``
of its variance and carries ``1/2 log(T_k/T)`` nats), an independent numerical solution of
the reverse water-filling program, and a trained-free linear model measured on data whose
covariance is known exactly.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize

from collapse_spectroscopy.analysis import equilibrium
from collapse_spectroscopy.analysis.observables import measure
from collapse_spectroscopy.analysis.rate_distortion import (
    bound_levels,
    gaussian_curve,
    gaussian_rate,
    rate_distortion_points,
    split_reference,
    water_level,
)

SPECTRA = [
    np.array([0.5, 0.3, 0.15, 0.05]),
    np.array([0.9, 0.05, 0.03, 0.015, 0.005]),
    np.array([1.0]),
    np.array([0.25, 0.25, 0.25, 0.25]),  # degenerate: every piece boundary at once
]


@pytest.mark.parametrize("p", SPECTRA, ids=["four", "steep", "one", "flat"])
def test_the_linear_equilibrium_lies_on_the_gaussian_bound(p):
    """At every T, the equilibrium's (sum R_k, sum min(T, T_k)) is a point of R_G(D), with
    the water level at T. Both sides are a few logs and sums of numbers of order 1:
    round-off ~1e-15 relative, so 1e-12 is far from any code path's difference."""
    t = np.logspace(-4, 0, 41)
    rate = equilibrium.kl_rate(p, t).sum(axis=-1)
    dist = equilibrium.sampled_distortion(p, t)  # already summed over modes
    np.testing.assert_allclose(gaussian_rate(p, dist), rate, rtol=1e-12, atol=1e-12)
    active = t < p.max()
    np.testing.assert_allclose(water_level(p, dist)[active], t[active], rtol=1e-12)


def _water_filling_by_optimizer(p, d):
    """min sum 1/2 log(p_i / D_i) over 0 < D_i <= p_i, sum D_i = d: the Gaussian R(D) as a
    convex program, solved numerically (no water level anywhere)."""
    x0 = p * d / p.sum()
    res = minimize(
        lambda di: 0.5 * np.sum(np.log(p / di)),
        x0,
        jac=lambda di: -0.5 / di,
        bounds=[(1e-12, pi) for pi in p],
        constraints=[
            {"type": "eq", "fun": lambda di: di.sum() - d, "jac": lambda di: np.ones_like(di)}
        ],
        method="SLSQP",
        options={"ftol": 1e-12, "maxiter": 500},
    )
    # SLSQP may end on "positive directional derivative" at the optimum's flat bottom:
    # what matters is a feasible point, checked here
    assert abs(res.x.sum() - d) < 1e-9 and np.all(res.x <= p + 1e-12), res
    return res.fun


@pytest.mark.parametrize("d", [0.01, 0.1, 0.3, 0.55, 0.9])
def test_the_bound_equals_the_convex_program(d):
    """Reverse water-filling against SLSQP on the program it solves. SLSQP stops at ftol
    1e-12 on an objective of order 1-10, with feasibility to 1e-9; a feasible point's
    objective is >= the optimum and the gap is second order in its distance from it, so
    1e-6 relative is the optimizer's accuracy, not ours."""
    p = SPECTRA[1]
    assert gaussian_rate(p, d) == pytest.approx(_water_filling_by_optimizer(p, d), rel=1e-6)


def test_the_bound_ends_and_is_monotone():
    p = SPECTRA[0]
    assert gaussian_rate(p, 1.0) == 0.0 and gaussian_rate(p, 1.5) == 0.0
    assert gaussian_rate(p, 0.0) == np.inf
    d, r = gaussian_curve(p, bound_levels(p))
    # down to a tenth of the smallest mode, where every mode keeps that much
    assert d[0] == pytest.approx(4 * 0.005) and d[-1] == pytest.approx(1.0) and r[-1] == 0.0
    assert np.all(np.diff(d) > 0) and np.all(np.diff(r) <= 0)
    assert gaussian_curve(p, bound_levels(p, lowest=1e-4))[0][0] == pytest.approx(1e-5)


def _exact_covariance_sample(cov, n, seed):
    """n samples whose population mean is 0 and covariance is exactly ``cov``."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, cov.shape[0]))
    z -= z.mean(axis=0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False, bias=True))).T
    return z @ np.linalg.cholesky(cov).T


def _measured_point(params, x, seed=0):
    obs = measure(params, x, x, seed=seed)
    return rate_distortion_points([0.0], [0], [obs.rate], [obs.distortion_sampled], REF(x))[0]


def REF(x):
    return split_reference(x, x)


@pytest.fixture(scope="module")
def gaussian_data():
    rng = np.random.default_rng(3)
    q, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    cov = q @ np.diag([4.0, 2.0, 1.0, 0.5, 0.25]) @ q.T
    return cov, _exact_covariance_sample(cov, 400_000, 7)


@pytest.mark.parametrize("t", [0.02, 0.08, 0.3])
def test_a_measured_equilibrium_point_is_on_the_bound(gaussian_data, t):
    """End to end: the equilibrium model measured on data of that covariance (train = eval)
    through `measure` and the stored-distortion rescaling. The rate is exact (closed form);
    the distortion is a one-draw estimate whose relative standard error is ~sqrt(2/(n m))
    with m >= 1 noisy modes (~2e-3 at n = 4e5); through dR/dD = -1/(2 theta) that is
    <= 2e-3 D / (2 T) <= 5e-3 nats at these T. 0.02 nats is four of those."""
    cov, x = gaussian_data
    params = equilibrium.equilibrium_parameters(np.zeros(5), cov, t, 6)
    point = _measured_point(params, x)
    assert abs(point["excess_rate"]) < 0.02, point
    # and the point is where the closed forms put it
    tk = np.sort(np.linalg.eigvalsh(cov))[::-1] / np.trace(cov)
    assert point["rate"] == pytest.approx(equilibrium.kl_rate(tk, t).sum(), rel=1e-9)


def test_a_model_off_equilibrium_lies_above_the_bound(gaussian_data):
    """Negative control: the same model with its encoder gains at 0.6 of equilibrium
    carries less rate and distorts far more; it sits well above the bound (> 5x the
    tolerance of the test above), so that test can fail."""
    cov, x = gaussian_data
    params = equilibrium.equilibrium_parameters(np.zeros(5), cov, 0.02, 6)
    params = dict(params, A=0.6 * params["A"], a=0.6 * params["a"])
    assert _measured_point(params, x)["excess_rate"] > 0.1


def test_the_rescaling_to_the_evaluation_variance():
    """stored_over_eval = E||x - xbar_train||^2 / tr cov(x): a shifted evaluation split
    adds the squared shift; the spectrum sums to 1."""
    rng = np.random.default_rng(0)
    train = rng.standard_normal((1000, 3))
    x = rng.standard_normal((2000, 3)) * [1.0, 2.0, 0.5]
    shift = np.array([1.0, -2.0, 0.0])
    ref = split_reference(train, x + shift)
    v = np.var(x, axis=0).sum()
    offset = np.square(x.mean(0) + shift - train.mean(0)).sum()
    assert ref["total_variance"] == pytest.approx(v, rel=1e-12)
    assert ref["stored_over_eval"] == pytest.approx((v + offset) / v, rel=1e-12)
    assert ref["spectrum"].sum() == pytest.approx(1.0, rel=1e-12)
