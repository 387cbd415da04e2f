"""Identities of the observables through a nonlinear decoder (issue 11, must-show 3;
docs/science.md §3, §9).

Which identities of §3 survive a nonlinear decoder: every per-latent observable is a
function of the *encoder's* output alone (``m = E mu^2``, ``v = E s2``, ``l = E logs2``),
so the table of §3 holds unchanged for any family:

- the rate ``R = sum_j R_j`` with ``R_j = 1/2 (m_j + v_j - 1 - l_j) = 1/2 (q_j - 1 - l_j)``,
  because the KL to N(0, 1) is linear in ``mu^2``, ``s2`` and ``logs2`` (checked here
  against torch's own Gaussian KL, an independent closed form, and against the rate the
  ``mlp`` engine's validation loss reports);
- the Jensen gap ``J_j = log v_j - l_j >= 0``, 0 exactly when ``logs2`` does not depend on x;
- ``rho`` is unchanged by rescaling latent ``j`` (``mu_j``, ``s_j`` times ``a_j``) when the
  decoder undoes it on its input (its first layer's column ``j`` divided by ``a_j``): the
  networks reconstruct exactly as before, ``m, v, q`` scale by ``a^2``, ``l`` moves by
  ``2 log a``, ``J`` and every ``Dn_k`` stay. The decoder's first layer is affine in ``z``
  however nonlinear the rest is, so this symmetry of the linear VAE survives.

What does *not* carry over is the equilibrium (``q = 1``, ``J = 0``, the sampled
distortion ``sum_k min(T, T_k)``): those are properties of the linear model's optimum,
not identities, and are not tested here.

The models: one MLP (the schema's default 64-64 GELU, ``K = 6`` for 5 features with 4
non-zero modes, so two latents are spare) briefly trained at T = 0.1, where it has active
and collapsed latents and a learned, x-dependent posterior variance (measured: rho 0.80,
0.65, 0.31, then <= 1e-3; J from 3e-5 to 1.6e-3; R = 1.52 nats); and randomly
initialized ones whose log-variance head is made strongly x-dependent (a large Jensen
gap) or left at its zero initialization (no gap). Everything measured is float64, so
"equal" means to ~1e-12 (rounding of float64 sums over 2,000 samples is ~1e-14
relative).

Last: two CLI ``train`` runs of one seed on the CPU write bit-identical scan points
(tests/training/test_mlp.py checks the resume after SIGKILL and the weights of two library runs).
"""

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch.distributions import Normal, kl_divergence

from collapse_spectroscopy.analysis import observables
from collapse_spectroscopy.config import settings
from collapse_spectroscopy.models.families import Architecture, numpy_codec
from collapse_spectroscopy.models.mlp import MLPVAE
from collapse_spectroscopy.store import scanfile
from collapse_spectroscopy.training.engines.mlp import fixed_draw_loss
from collapse_spectroscopy.training.scan_point import TrainConfig, train_scan_point
from synthetic_gaussian import gaussian_prepared, gaussian_splits

# the schema's default MLP (64-64 GELU)
MLP = Architecture.from_spec({**settings.section_defaults("model"), "kind": "mlp"})

SPECTRUM = [0.5, 0.3, 0.15, 0.05, 0.0]
K = 6
# float64 identities between quantities that do not cancel (sums of positive terms,
# products, rescalings): a float64 mean over n = 2,000 samples (pairwise summation) is off
# by <= log2(n) eps ~ 11 x 2.2e-16 ~ 2.4e-15 relative, plus a few eps per element-wise
# operation; 1e-12 leaves a factor ~300 for any BLAS or SIMD path.
EXACT = 1e-12
EPS = np.finfo(np.float64).eps


def cancellation_bound(magnitude, n: int = 2000, ops: int = 8):
    """Rounding bound of a float64 mean over ``n`` samples of a difference of terms whose
    absolute values add up to ``magnitude`` (per sample, averaged): each of ``ops``
    element-wise operations rounds by eps of its operands, the pairwise mean by log2(n)
    eps of the sum of absolute values; times 4 for the constants we do not count. The
    result of a cancelling difference (a KL of a nearly collapsed latent, ~1e-4 of its
    terms' size) can be off by this in absolute terms, so a relative tolerance would
    depend on how collapsed a latent happens to be on a given CPU's training."""
    return 4.0 * (ops + np.log2(n)) * EPS * np.asarray(magnitude)


@pytest.fixture(scope="module")
def splits():
    xtr, xva, xte, _, _ = gaussian_splits(SPECTRUM, sizes=(4000, 1000, 2000), seed=5)
    return xtr.astype(np.float64), xva.astype(np.float64), xte.astype(np.float64)


@pytest.fixture(scope="module")
def trained(splits):
    """A default-architecture MLP VAE after 1,500 updates at T = 0.1 (~3 s), float64."""
    xtr, xva, _ = splits
    config = TrainConfig(max_updates=1500, patience=0.5, eval_every=500, device="cpu")
    x_train, x_val = xtr.astype(np.float32), xva.astype(np.float32)
    result = train_scan_point(x_train, x_val, 0.1, seed=1, latents=K, config=config, arch=MLP)
    return result.model.double()


def random_mlp(logvar_scale: float, seed: int = 0) -> MLPVAE:
    """A random 32-32 tanh MLP VAE; its log-variance rows drawn with ``logvar_scale``."""
    model = MLPVAE(5, K, [32, 32], "tanh", generator=torch.Generator().manual_seed(seed))
    model = model.double()
    with torch.no_grad():
        out = model.encoder[-1]
        g = torch.Generator().manual_seed(seed + 1)
        out.weight[K:].normal_(0.0, logvar_scale, generator=g)
    return model


def measure(model, splits):
    xtr, _, xte = splits
    encode, decode = numpy_codec(model)
    return observables.measure_decoded(encode, decode, xte, xtr, seed=0, chunk=700)


def raw_order(obs, name):
    """A ranked per-latent array back in unit order (latent_index says who is where)."""
    out = np.empty_like(obs.per_latent[name])
    out[obs.latent_index] = obs.per_latent[name]
    return out


# --- the rate ----------------------------------------------------------------------------
def test_rate_is_the_mean_gaussian_kl_per_latent(trained, splits):
    """R_j against torch's KL(N(mu, s2) || N(0, 1)) averaged over the evaluation split,
    the total against the sum and against the formula 1/2 sum_j (q_j - 1 - l_j)."""
    xte = splits[2]
    obs = measure(trained, splits)
    with torch.no_grad():
        mu, logs2 = trained.encode(torch.from_numpy(xte))
        kl = kl_divergence(Normal(mu, torch.exp(0.5 * logs2)), Normal(0.0, 1.0))
    # R_j = 1/2 (mu^2 + s2 - 1 - logs2) averaged: its terms add up to (m + v + 1 + E|logs2|)/2
    with torch.no_grad():
        size = 0.5 * (mu**2 + torch.exp(logs2) + 1.0 + logs2.abs()).mean(0).numpy()
    bound = cancellation_bound(size, n=xte.shape[0])
    assert np.all(np.abs(raw_order(obs, "kl_rate") - kl.mean(0).numpy()) <= bound)
    p = obs.per_latent
    assert abs(obs.rate - p["kl_rate"].sum()) <= bound.sum()
    half = 0.5 * (p["latent_scale"] - 1.0 - p["posterior_log_variance"]).sum()
    assert abs(obs.rate - half) <= bound.sum()
    assert obs.rate > 0.5  # active latents: the rate is not trivially 0


def test_rate_is_the_rate_the_engine_validates(trained, splits):
    """The measured rate is the rate term of the mlp engine's validation loss on the same
    split (exact there too; its distortion term is a draw average and is not compared)."""
    xte = splits[2]
    _, _, rate = fixed_draw_loss(trained, torch.from_numpy(xte), 0.5, 1.0, seed=0, draws=1)
    assert measure(trained, splits).rate == pytest.approx(rate, rel=EXACT)


# --- the Jensen gap ----------------------------------------------------------------------
def naive_jensen_gap(model, x):
    with torch.no_grad():
        logs2 = model.encode(torch.from_numpy(x))[1].numpy()
    return np.log(np.exp(logs2).mean(0)) - logs2.mean(0)


@pytest.mark.parametrize("which", ["trained", "x_dependent", "constant"])
def test_jensen_gap_is_nonnegative_and_log_v_minus_l(which, trained, splits):
    model = {
        "trained": trained,
        "x_dependent": random_mlp(logvar_scale=1.0),
        "constant": random_mlp(logvar_scale=0.0),  # logs2 = its bias: no x dependence
    }[which]
    obs = measure(model, splits)
    gap = raw_order(obs, "jensen_gap")
    np.testing.assert_allclose(gap, naive_jensen_gap(model, splits[2]), rtol=1e-10, atol=EXACT)
    if which == "constant":
        np.testing.assert_allclose(gap, 0.0, atol=EXACT)
    else:
        assert np.all(gap >= 0.0), gap
    if which == "x_dependent":
        assert np.all(gap > 0.01), gap  # a gap the sign test can see (measured 0.14-1.2)


# --- the rescaling symmetry --------------------------------------------------------------
def rescaled(model, a):
    """``model`` with latent ``j`` scaled by ``a_j`` in the encoder and undone on the
    decoder's input: mu -> a mu, logs2 -> logs2 + 2 log a, first decoder layer W -> W / a."""
    out = type(model)(model.d, model.latents, model.hidden, model.activation).double()
    out.load_state_dict(model.state_dict())
    a_t = torch.as_tensor(a, dtype=torch.float64)
    with torch.no_grad():
        head = out.encoder[-1]
        head.weight[:K] *= a_t[:, None]
        head.bias[:K] *= a_t
        head.bias[K:] += 2.0 * torch.log(a_t)
        out.decoder[0].weight /= a_t[None, :]
    return out


@pytest.mark.parametrize("which", ["trained", "random"])
def test_rho_is_invariant_when_encoder_output_and_decoder_input_rescale(which, trained, splits):
    model = trained if which == "trained" else random_mlp(logvar_scale=0.5, seed=3)
    a = np.array([0.3, 2.0, 5.0, 0.7, 1.6, 0.05])
    scaled = rescaled(model, a)
    xte = splits[2]
    with torch.no_grad():  # the networks reconstruct exactly as before
        x = torch.from_numpy(xte)
        mu, _ = model.encode(x)
        mu2, _ = scaled.encode(x)
        np.testing.assert_allclose(mu2.numpy(), mu.numpy() * a, rtol=EXACT, atol=EXACT)
        d1, d2 = model.decode(mu).numpy(), scaled.decode(mu2).numpy()
        np.testing.assert_allclose(d2, d1, rtol=EXACT, atol=EXACT)
    o1, o2 = measure(model, splits), measure(scaled, splits)
    raw = raw_order
    np.testing.assert_allclose(raw(o2, "signal_fraction"), raw(o1, "signal_fraction"), rtol=EXACT)
    assert np.array_equal(o1.latent_index, o2.latent_index)  # so the ranking is the same
    for name in ("posterior_mean_square", "posterior_variance", "latent_scale"):
        np.testing.assert_allclose(raw(o2, name), a**2 * raw(o1, name), rtol=EXACT, err_msg=name)
    np.testing.assert_allclose(
        raw(o2, "posterior_log_variance"),
        raw(o1, "posterior_log_variance") + 2.0 * np.log(a),
        rtol=EXACT,
        atol=EXACT,
    )
    np.testing.assert_allclose(raw(o2, "jensen_gap"), raw(o1, "jensen_gap"), atol=EXACT)
    for name in ("truncated_distortion", "truncated_distortion_train_mean"):
        np.testing.assert_allclose(getattr(o2, name), getattr(o1, name), rtol=EXACT, err_msg=name)
    # the rate is not scale-invariant: it is what pins the scale (docs/science.md §3)
    assert not np.allclose(raw(o2, "kl_rate"), raw(o1, "kl_rate"), rtol=1e-3)


# --- bit-identical observables for one seed ----------------------------------------------
def train_cmd(prepared, out):
    return [
        sys.executable,
        "-m",
        "collapse_spectroscopy.cli",
        "train",
        *("--data", str(prepared), "-T", "0.05", "--seed", "3", "--out", str(out)),
        *("--kind", "mlp", "--hidden", "16", "16", "--latents", "4"),
        *("--max-updates", "400", "--eval-every", "100", "--device", "cpu"),
    ]


@pytest.mark.slow
def test_two_cli_runs_of_one_seed_write_identical_observables(tmp_path):
    prepared = tmp_path / "prepared.npz"
    gaussian_prepared(SPECTRUM, sizes=(2000, 500, 500), seed=6).save(prepared)
    points = []
    for name in ("first", "second"):
        out = tmp_path / name / "p.nc"
        done = subprocess.run(train_cmd(prepared, out), capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        points.append(scanfile.read(out))
    a, b = points
    assert set(a.data_vars) == set(b.data_vars)
    assert "signal_fraction" in a.data_vars and "truncated_distortion" in a.data_vars
    for name in a.data_vars:
        if name != "elapsed_s":  # wall time, the one thing allowed to differ
            assert np.array_equal(a[name].values, b[name].values), name
