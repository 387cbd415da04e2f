"""The numba engine: the reference Adam trajectory, determinism, equilibrium, failures."""

import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from numba import njit
from scipy import stats

from collapse_spectroscopy.analysis import observables
from collapse_spectroscopy.errors import TrainingError
from collapse_spectroscopy.models.linear import LinearVAE
from collapse_spectroscopy.store import scanfile
from collapse_spectroscopy.training.engines import TrainingProblem
from collapse_spectroscopy.training.engines.batches import BatchStream
from collapse_spectroscopy.training.engines.numba import update
from collapse_spectroscopy.training.engines.numba.engine import NumbaEngine
from collapse_spectroscopy.training.engines.numba.rng import draw_normals
from collapse_spectroscopy.training.engines.numba.vecmath import vexp, vlog, vsincos
from collapse_spectroscopy.training.engines.torch_engines import AutogradEngine
from collapse_spectroscopy.training.scan_point import TrainConfig, seed_streams, train_scan_point
from synthetic_gaussian import gaussian_prepared, gaussian_splits

SPECTRUM = [0.5, 0.3, 0.15, 0.05]


def problem(model, x, beta, *, sigma2=1.0):
    """A training problem on ``x``, also its validation split (lr 1e-3, batch 256; the
    tests give their own batches and noise)."""
    return TrainingProblem(
        model=model,
        x_train=x,
        x_val=x,
        beta=beta,
        sigma2=sigma2,
        learning_rate=1e-3,
        batch_size=256,
        shuffle_seed=0,
        noise_seed=0,
    )


@pytest.fixture(scope="module")
def splits():
    return gaussian_splits(SPECTRUM, sizes=(3000, 1000, 1000), seed=1)


def _worldclim_shaped(n=4000, d=19, seed=2):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)) @ rng.standard_normal((d, d)) / math.sqrt(d)
    return (x - x.mean(0)) / x.std(0)


@pytest.mark.parametrize("shape", ["small", "worldclim"])
def test_numba_engine_follows_autograd_adam(splits, shape):
    """Same init, batches and noise, float64: 1000 updates of the numba engine (in windows
    of 100 updates per call) follow autograd + torch.optim.Adam to 1e-5 relative."""
    if shape == "small":
        x, K, beta = splits[0].astype(np.float64), 6, 0.4
    else:  # the paper's sizes: d = 19 features, K = 32 latents
        x, K, beta = _worldclim_shaped(), 32, 0.05 * 19
    xt = torch.as_tensor(x)
    d, bs, window = x.shape[1], 128, 100
    ref_model = LinearVAE(d, K, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    nb_model = LinearVAE(d, K, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ref = AutogradEngine(problem(ref_model, x, beta))
    eng = NumbaEngine(problem(nb_model, x, beta))
    g = torch.Generator().manual_seed(1)
    worst_loss = worst_param = 0.0
    for _ in range(1000 // window):
        rows, sizes, noise, ref_losses = [], [], [], []
        for step in range(window):
            # mostly full batches, some short ones (odd sizes exercise the loop remainders)
            idx = torch.randint(0, x.shape[0], (bs if step % 7 else 37,), generator=g)
            eps = torch.randn(idx.numel(), K, generator=g, dtype=torch.float64)
            ref_losses.append(ref.step(xt[idx], eps).item())
            rows.append(idx.numpy())
            sizes.append(idx.numel())
            noise.append(eps.numpy())
        losses = eng.run_batches(np.concatenate(rows), np.array(sizes), np.concatenate(noise))
        rel = np.abs(losses / np.array(ref_losses) - 1).max()
        worst_loss = max(worst_loss, rel)
        p_ref, p_nb = ref_model.numpy_params(), eng.sync_model().numpy_params()
        for name in p_ref:
            scale = np.abs(p_ref[name]).max() + 1e-12
            worst_param = max(worst_param, np.abs(p_nb[name] - p_ref[name]).max() / scale)
    print(
        f"\n[{shape}] max relative deviation over 1000 updates: "
        f"params {worst_param:.2e}, batch losses {worst_loss:.2e}"
    )
    assert worst_param < 1e-5
    assert worst_loss < 1e-9
    assert eng.t == ref.opt.state_dict()["state"][0]["step"] == 1000


def test_updates_do_not_depend_on_how_they_are_cut_into_calls(splits):
    """Three updates in one compiled call, or in three calls of one update (explicit noise):
    the same weights, moments and step, bit for bit."""
    x = splits[0].astype(np.float64)
    K = 5

    def engine():
        model = LinearVAE(4, K, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
        return NumbaEngine(problem(model, x, 0.3))

    a, b = engine(), engine()
    rng = np.random.default_rng(0)
    rows = rng.integers(0, x.shape[0], (3, 50))
    eps = rng.standard_normal((150, K))
    for u in range(3):
        a.run_batches(rows[u], np.array([50]), eps[50 * u : 50 * (u + 1)])
    b.run_batches(rows.ravel(), np.array([50, 50, 50]), eps)
    assert np.array_equal(a.p, b.p) and np.array_equal(a.v, b.v) and a.t == b.t == 3


def test_same_seed_is_bit_identical(splits):
    xtr, xva, xte, _, _ = splits
    cfg = TrainConfig(engine="numba", max_updates=600, eval_every=200, patience=10_000)
    runs = [train_scan_point(xtr, xva, 0.1, seed=3, latents=6, config=cfg) for _ in range(2)]
    p0, p1 = (r.model.numpy_params() for r in runs)
    for name in p0:
        assert np.array_equal(p0[name], p1[name]), name
    assert runs[0].log["val_loss"].tolist() == runs[1].log["val_loss"].tolist()
    assert runs[0].engine == "numba"
    other = train_scan_point(xtr, xva, 0.1, seed=4, latents=6, config=cfg)
    assert not np.array_equal(other.model.numpy_params()["A"], p0["A"])


def test_trains_to_the_same_equilibrium_as_the_torch_engine(splits):
    """Different noise draws, same distribution: both engines reach the same signal
    fractions, and the analytic ones ``rho_k = 1 - T V / lambda_k`` (train covariance).

    Tolerance 0.03 on each rho: across seeds this configuration gives a standard deviation
    of 0.002-0.004 per rho for either engine (stationary Adam noise at lr 3e-3 plus the
    seed's initialization), and a bias against the oracle of <= 0.006 (finite lr, finite
    budget); 0.03 is > 5 sigma of the difference of two independent runs. A wrong gradient
    or noise scale moves them by far more: a doubled KL term gives 1 - 2 T / T_k
    (0.60, 0.34, 0 here), a noise standard deviation of 0.5 instead of 1 shifts rho by > 0.1.
    """
    xtr, xva, _, _, _ = splits
    T = 0.1
    lam = np.linalg.eigvalsh(np.cov(xtr.T.astype(np.float64), bias=True))[::-1]
    oracle = np.maximum(0.0, 1.0 - T * lam.sum() / lam)
    rho = {}
    for engine in ("numba", "fast"):
        cfg = TrainConfig(
            engine=engine, max_updates=4000, eval_every=200, patience=100_000, learning_rate=3e-3
        )
        r = train_scan_point(xtr, xva, T, seed=0, latents=4, config=cfg)
        obs = observables.measure(r.model.numpy_params(), xtr, xtr, seed=0)
        rho[engine] = obs.per_latent["signal_fraction"]
    np.testing.assert_allclose(rho["numba"], rho["fast"], atol=0.03)
    np.testing.assert_allclose(rho["numba"], oracle, atol=0.03)


def _first_update_with_row(n, bs, seed, row):
    """The update whose batch first holds ``row`` (the loop's batch stream, replayed)."""
    g = torch.Generator().manual_seed(seed_streams(seed)[1])
    update = 0
    while True:
        perm = torch.randperm(n, generator=g)
        for start in range(0, n, bs):
            update += 1
            if row in perm[start : start + bs].tolist():
                return update


@pytest.mark.parametrize("engine", ["numba", "fast"])
def test_non_finite_loss_names_t_seed_and_the_exact_update(splits, engine):
    """One sample whose square overflows float32: the loss is inf at exactly the first
    update whose batch holds it, and both engines (same batches) name that update."""
    xtr, xva, _, _, _ = splits
    x = xtr.copy()
    x[1234] = 1e20
    expected = _first_update_with_row(x.shape[0], 256, 7, 1234)
    assert expected > 1  # the bad row is not in the first batch: a mid-window failure
    cfg = TrainConfig(engine=engine, max_updates=200, eval_every=50)
    with pytest.raises(TrainingError, match=rf"T=0\.1 .*seed=7, update {expected}\b"):
        train_scan_point(x, xva, 0.1, seed=7, latents=4, config=cfg)


def test_non_finite_from_the_start(splits):
    xtr, xva, _, _, _ = splits
    huge = (xtr * 1e20).astype(np.float32)
    cfg = TrainConfig(engine="numba", max_updates=50, eval_every=10)
    with pytest.raises(TrainingError, match=r"T=0\.1 .*seed=7, update 1\b"):
        train_scan_point(huge, xva, 0.1, seed=7, latents=4, config=cfg)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_noise_is_standard_normal(dtype):
    """The engine's Box-Muller noise: N(0, 1) by a KS test and its first four moments
    (fixed seed, so deterministic), and seeds give different streams."""
    z = draw_normals(5, 400_000, dtype)
    assert z.dtype == dtype
    assert stats.kstest(z, "norm").pvalue > 1e-3
    assert abs(z.mean()) < 5 / math.sqrt(z.size)
    assert abs(z.var() - 1) < 5 * math.sqrt(2 / z.size)
    assert abs(stats.skew(z)) < 5 * math.sqrt(6 / z.size)
    assert abs(stats.kurtosis(z)) < 5 * math.sqrt(24 / z.size)
    # the two halves of each Box-Muller pair are uncorrelated
    h = z.size // 2
    assert abs(np.corrcoef(z[:h], z[h : 2 * h])[0, 1]) < 5 / math.sqrt(h)
    assert not np.array_equal(draw_normals(6, 1000, dtype), z[:1000])
    assert np.array_equal(draw_normals(5, z.size, dtype), z)


@njit(cache=True)
def _apply_math(x, e, lg, s, c):
    # exp of x, log of |x| (x != 0), sin and cos of x (|x| <= pi/4)
    for i in range(x.size):
        e[i] = vexp(x[i])
        if x[i] != 0:
            lg[i] = vlog(abs(x[i]))
        s[i], c[i] = vsincos(x[i])


@pytest.mark.parametrize("dtype, ulp", [(np.float32, 2**-23), (np.float64, 2**-52)])
def test_vectorized_math(dtype, ulp):
    """exp, log and sin/cos kernels: accurate to a few ulp, and exp keeps IEEE edges."""
    rng = np.random.default_rng(0)
    hi = 87.0 if dtype == np.float32 else 700.0
    out = lambda x: [np.zeros_like(x) for _ in range(4)]  # noqa: E731
    x = np.concatenate([rng.uniform(-hi, hi, 20000), rng.uniform(-1, 1, 20000)]).astype(dtype)
    e, lg, _, _ = res = out(x)
    _apply_math(x, *res)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(e, np.exp(x64), rtol=2 * ulp)
    np.testing.assert_allclose(lg, np.log(np.abs(x64)), rtol=2 * ulp, atol=2 * ulp)
    r = rng.uniform(-math.pi / 4, math.pi / 4, 20000).astype(dtype)
    _, _, s, c = res = out(r)
    _apply_math(r, *res)
    np.testing.assert_allclose(s, np.sin(r.astype(np.float64)), rtol=2 * ulp, atol=ulp / 4)
    np.testing.assert_allclose(c, np.cos(r.astype(np.float64)), rtol=2 * ulp)
    edge = np.array([np.nan, np.inf, -np.inf, 1e4, -1e4, 0], dtype=dtype)
    e, _, _, _ = res = out(edge)
    _apply_math(edge, *res)
    assert np.isnan(e[0]) and e[1] == np.inf and e[2] == 0
    assert e[3] == np.inf and e[4] == 0 and e[5] == 1


@pytest.mark.parametrize("n, bs", [(3000, 256), (1000, 1000), (999, 1000), (5, 2), (4096, 256)])
def test_windows_are_the_per_update_batches(n, bs):
    """The numba engine's windows of batches are the torch engines' batches, in order."""
    one, many = BatchStream(n, bs, seed=4), BatchStream(n, bs, seed=4)
    ref = [one.next().numpy() for _ in range(4000)]
    rows, sizes = zip(*(many.window(k) for k in (1, 7, 1000, 13, 2979)), strict=True)
    assert np.array_equal(np.concatenate(sizes), [len(b) for b in ref])
    assert np.array_equal(np.concatenate(rows), np.concatenate(ref))


@pytest.mark.slow
def test_a_cold_and_a_warm_compile_cache_give_the_same_point(tmp_path):
    """The first training after an empty numba cache (the engine compiled in the process)
    and a later one (the compiled code loaded from the cache) give the same scan point, bit
    for bit (issue 9: they differed by ~1e-8 while the helpers were separate functions).
    Subprocesses with a private NUMBA_CACHE_DIR: the project's own cache is not touched."""
    data = tmp_path / "prepared.npz"
    gaussian_prepared([0.5, 0.3, 0.15, 0.05, 0.0], sizes=(4000, 1000, 1000), seed=4).save(data)
    env = {
        **os.environ,
        "NUMBA_CACHE_DIR": str(tmp_path / "numba-cache"),
        "NUMBA_DEBUG_CACHE": "1",  # prints "[cache] data saved/loaded ..."
    }
    logs = {}
    for run in ("cold", "warm"):
        cmd = [sys.executable, "-m", "collapse_spectroscopy.cli", "train", "--data", str(data)]
        cmd += ["-T", "0.05", "--seed", "2", "--latents", "6", "--engine", "numba"]
        cmd += ["--max-updates", "3000", "--patience", "3000", "--eval-every", "250"]
        cmd += ["--out", str(tmp_path / run / "p.nc")]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        logs[run] = proc.stdout + proc.stderr
    assert "[cache] data saved" in logs["cold"] and "[cache] data loaded" not in logs["cold"]
    assert "[cache] data loaded" in logs["warm"] and "[cache] data saved" not in logs["warm"]
    cold, warm = (scanfile.read(tmp_path / run / "p.nc") for run in ("cold", "warm"))
    for name in cold.data_vars:
        if name != "elapsed_s":  # wall time
            assert np.array_equal(cold[name].values, warm[name].values), name
    assert cold.attrs == warm.attrs


def _sampled_loss_monte_carlo(params, x, beta, sigma2, draws, seed):
    """Per-draw ``(L, D, R)`` of the sampled beta-VAE loss on ``x`` in plain numpy, each a
    mean over the samples with fresh noise (docs/science.md §1). Independent of the
    closed forms: D from decoded samples, R as the sampled log-ratio
    ``log q(z|x) - log p(z)`` of the drawn ``z`` (its mean is the KL)."""
    A, a, B, b, W, c = (params[k] for k in "AaBbWc")
    mu, ls = x @ A.T + a, x @ B.T + b
    rng = np.random.default_rng(seed)
    out = np.empty((draws, 3))
    for m in range(draws):
        eps = rng.standard_normal(mu.shape)
        z = mu + np.exp(0.5 * ls) * eps
        D = ((x - z @ W.T - c) ** 2).sum(axis=1).mean() / (2 * sigma2)
        # log N(z; mu, s2) - log N(z; 0, 1) = (z^2 - eps^2 - logs2) / 2
        R = (0.5 * (z**2 - eps**2 - ls)).sum(axis=1).mean()
        out[m] = D + beta * R, D, R
    return out


@pytest.mark.parametrize("dtype, rtol", [(torch.float32, 1e-6), (torch.float64, 1e-12)])
def test_validation_loss_is_the_expected_sampled_loss(dtype, rtol):
    """The engine's validation loss (second moments + one jitted pass for the exp terms) is
    the sampled loss averaged over the noise: against a Monte-Carlo estimate (anchor), and
    equal to :func:`model.expected_loss` (the per-sample closed form) on the same weights.

    Monte Carlo: 4000 independent noise draws of the whole split, each giving a mean over
    the 1000 samples, so the estimate's standard error (SE) comes from the spread of the
    draws themselves; each of L, D and R must be within 5 SE (a correct formula fails with
    probability < 1e-6 for this fixed seed's kind of draw; the estimate is deterministic).
    5 SE is < 1 % of the noise term ``E_x sum_j s2_j ||W_j||^2 / (2 sigma2)`` of D (0.9 nats
    here; checked below) and of ``E_x sum_j s2_j / 2`` of R: that term dropped, halved or
    doubled, or ``s`` in place of ``s^2``, is tens of SE off.
    """
    from collapse_spectroscopy.models.linear import expected_loss

    model = LinearVAE(7, 5, generator=torch.Generator().manual_seed(1), dtype=dtype)
    with torch.no_grad():  # a non-trivial posterior variance
        model.enc_logvar.weight.normal_(0.0, 0.3, generator=torch.Generator().manual_seed(2))
        model.enc_logvar.bias.normal_(0.0, 0.5, generator=torch.Generator().manual_seed(3))
    x = np.random.default_rng(0).standard_normal((1000, 7)) + 0.3  # not centred
    x = x.astype(np.float32 if dtype == torch.float32 else np.float64)
    beta, sigma2 = 0.7, 1.3
    engine = NumbaEngine(problem(model, x, beta, sigma2=sigma2))
    got = np.array(engine.validation_loss())

    params = model.numpy_params()
    draws = _sampled_loss_monte_carlo(params, x.astype(np.float64), beta, sigma2, 4000, 5)
    mc, se = draws.mean(axis=0), draws.std(axis=0, ddof=1) / np.sqrt(len(draws))
    s2 = np.exp(x.astype(np.float64) @ params["B"].T + params["b"])
    noise_D = (s2 @ (params["W"] ** 2).sum(axis=0)).mean() / (2 * sigma2)
    noise_R = s2.sum(axis=1).mean() / 2
    assert 5 * se[1] < 0.01 * noise_D and 5 * se[2] < 0.01 * noise_R  # a sharp anchor
    assert np.all(np.abs(got - mc) < 5 * se), (got, mc, se)

    ref = expected_loss(model, torch.from_numpy(x), beta, sigma2)
    np.testing.assert_allclose(got, ref, rtol=rtol)


def test_the_cache_key_covers_every_inlined_module():
    """numba checks a cached entry point against its own file only (engines/numba/update.py);
    the digest written there of the modules inlined into it makes their edits count."""
    digest = update.inlined_sources_sha256()
    assert update.INLINED_SHA256 == digest, (
        "a module inlined into the numba entry points changed: set INLINED_SHA256 = "
        f"{digest!r} in engines/numba/update.py, so that numba recompiles them"
    )
