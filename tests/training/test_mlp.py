"""The MLP family (docs/science.md §9): its model, the ``mlp`` engine, its fixed-draw
validation estimate, the observables through the networks, and a job end to end.

Every training here is tiny (a few hundred updates of a 16-16 network on 5 features),
so each test takes seconds; what they check is exact (bit-identical runs and resumes,
the same validation draws) or argued (tolerances below).
"""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from collapse_spectroscopy.analysis import observables
from collapse_spectroscopy.config import settings
from collapse_spectroscopy.errors import InputError, TrainingError
from collapse_spectroscopy.models.families import FAMILIES, Architecture, numpy_codec
from collapse_spectroscopy.models.linear import LinearVAE, expected_loss
from collapse_spectroscopy.models.mlp import ACTIVATIONS, MLPVAE
from collapse_spectroscopy.store import scanfile
from collapse_spectroscopy.training.checkpoint import PAUSE_ENV
from collapse_spectroscopy.training.engines import TrainingProblem, make_engine, resolve_engine
from collapse_spectroscopy.training.engines.mlp import (
    VALIDATION_DRAWS,
    DrawCache,
    fixed_draw_loss,
    validation_seed,
)
from collapse_spectroscopy.training.scan_point import TrainConfig, train_scan_point
from synthetic_gaussian import gaussian_prepared, gaussian_splits

SPECTRUM = [0.5, 0.3, 0.15, 0.05, 0.0]
ARCH = dict(arch=Architecture("mlp", (16, 16), "gelu"))


@pytest.fixture(scope="module")
def splits():
    return gaussian_splits(SPECTRUM, sizes=(2000, 500, 500), seed=3)


def tiny_config(**kw):
    return TrainConfig(
        **{"engine": "auto", "max_updates": 300, "eval_every": 100, "device": "cpu", **kw}
    )


def test_schema_enums_are_the_registries():
    assert settings.key_schema("model.kind")["enum"] == list(FAMILIES)
    assert settings.key_schema("model.activation")["enum"] == list(ACTIVATIONS)
    defaults = settings.section_defaults("model")
    assert (defaults["kind"], defaults["hidden"], defaults["activation"]) == (
        "linear",
        [64, 64],
        "gelu",
    )


def test_model_shapes_and_seeded_init():
    g = torch.Generator().manual_seed(5)
    model = MLPVAE(5, 3, [8, 7], "tanh", generator=g)
    mu, logs2 = model.encode(torch.randn(11, 5))
    assert mu.shape == logs2.shape == (11, 3)
    assert torch.all(logs2 == 0)  # every posterior starts at the prior's unit variance
    assert model.decode(mu).shape == (11, 5)
    assert [m.out_features for m in model.decoder if hasattr(m, "out_features")] == [7, 8, 5]
    again = MLPVAE(5, 3, [8, 7], "tanh", generator=torch.Generator().manual_seed(5))
    pairs = zip(model.parameters(), again.parameters(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)


@pytest.mark.parametrize(
    "kind, hidden, activation, key",
    [
        ("deep", [4], "gelu", "model.kind"),
        ("mlp", [], "gelu", "model.hidden"),
        ("mlp", [4, 0], "gelu", "model.hidden"),
        ("mlp", [-2], "gelu", "model.hidden"),
        ("mlp", [4], "swish", "model.activation"),
    ],
)
def test_bad_model_names_the_key(kind, hidden, activation, key):
    with pytest.raises(InputError, match=rf"^{key} = "):
        Architecture(kind, tuple(hidden), activation).build(4, 2, generator=None, dtype=None)


def test_engine_choice_follows_the_kind():
    cpu = torch.device("cpu")
    assert resolve_engine("auto", cpu, "mlp") == "mlp_fast"
    assert resolve_engine("auto", torch.device("cuda"), "mlp") == "mlp"
    assert resolve_engine("auto", cpu, "linear") == "numba"  # unchanged
    for name in ("numba", "fast", "autograd"):
        with pytest.raises(InputError, match=rf"training.engine = '{name}' .*model.kind = 'mlp'"):
            resolve_engine(name, cpu, "mlp")


def test_same_seed_is_bit_identical(splits):
    xtr, xva, _, _, _ = splits
    a = train_scan_point(xtr, xva, 0.05, seed=4, latents=4, config=tiny_config(), **ARCH)
    b = train_scan_point(xtr, xva, 0.05, seed=4, latents=4, config=tiny_config(), **ARCH)
    c = train_scan_point(xtr, xva, 0.05, seed=5, latents=4, config=tiny_config(), **ARCH)
    assert a.engine == "mlp_fast" and isinstance(a.model, MLPVAE)  # auto on a CPU
    sa, sb, sc = (r.model.state_dict() for r in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)  # the seed matters
    assert a.log["val_loss"].tolist() == b.log["val_loss"].tolist()


def test_non_finite_loss_names_t_seed_and_update(splits):
    xtr, xva, _, _, _ = splits
    x = xtr.copy()
    x[0] = 1e20  # finite, but its square overflows float32
    with pytest.raises(TrainingError, match=r"non-finite training loss .* at T=0\.1 .*seed=7, upd"):
        train_scan_point(x, xva, 0.1, seed=7, latents=4, config=tiny_config(), **ARCH)


def _engine(model, xtr, xva, beta=0.3, noise_seed=0):
    problem = TrainingProblem(
        model=model,
        x_train=xtr,
        x_val=xva,
        beta=beta,
        sigma2=1.0,
        learning_rate=1e-3,
        batch_size=100,
        shuffle_seed=0,
        noise_seed=noise_seed,
    )
    return make_engine("mlp", problem)


def test_validation_uses_the_same_draws_every_pass(splits):
    """Two passes at the same weights give the same number (the same draws), also after
    training has consumed training noise in between; another noise seed, other draws."""
    xtr, xva, _, _, _ = splits
    model = MLPVAE(5, 4, [16, 16], generator=torch.Generator().manual_seed(0))
    engine = _engine(model, xtr, xva)
    engine.run_window(50)
    first = engine.validation_loss()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    engine.run_window(50)  # moves the weights and the training noise stream
    model.load_state_dict(state)  # back to the weights of the first pass
    assert engine.validation_loss() == first
    other = _engine(model, xtr, xva, noise_seed=1).validation_loss()
    assert other != first and other[2] == first[2]  # other draws; the rate is exact
    assert validation_seed(0) != validation_seed(1)


def test_kept_draws_give_bitwise_the_levels_of_regenerated_ones(splits):
    """The draw cache (DrawCache) keeps the generator's own tensors: at two weight
    settings, passes that read the kept draws equal passes that regenerate them exactly,
    over several chunks; a split beyond the cache's limit keeps nothing and gives the
    same numbers; the noise-free pass keeps nothing."""
    _, xva, _, _, _ = splits
    x = torch.as_tensor(xva, dtype=torch.float32)
    model = MLPVAE(5, 4, [16, 16], generator=torch.Generator().manual_seed(0))
    cache = DrawCache()
    args = (x, 0.01, 1.0, 7)
    first = fixed_draw_loss(model, *args, chunk=64, cache=cache)
    assert len(cache.draws) == -(-x.shape[0] // 64) * VALIDATION_DRAWS  # every chunk's draws
    with torch.no_grad():
        for param in model.parameters():  # other weights: other levels, the same draws
            param.add_(0.05 * torch.randn(param.shape, generator=torch.Generator().manual_seed(1)))
    kept = fixed_draw_loss(model, *args, chunk=64, cache=cache)
    regenerated = fixed_draw_loss(model, *args, chunk=64)
    assert kept == regenerated and kept != first
    small = DrawCache(limit_bytes=x.shape[0] * 4 * VALIDATION_DRAWS * 4 - 1)  # one byte short
    assert fixed_draw_loss(model, *args, chunk=64, cache=small) == regenerated
    assert small.draws == []
    none = DrawCache()
    fixed_draw_loss(model, *args, chunk=64, noise=False, cache=none)
    assert none.draws == []


def test_the_validation_pass_calls_the_networks_a_block_of_rows_at_a_time(splits, monkeypatch):
    """On a CPU each chunk goes through the networks VALIDATION_ROWS rows at a time (the
    draws and the sums stay the chunk's): with blocks of 24 rows in chunks of 64 (two
    full blocks and a remainder per chunk, and a short last chunk), the loss is the one
    of whole-chunk calls. Expected bitwise; rel 1e-6 allows a BLAS that blocks a product's
    rows differently a few float32 ulps (6e-8) per row, below any level early stopping
    compares (test_fixed_draws_make_validation_a_function_of_the_weights)."""
    from collapse_spectroscopy.training.engines import mlp as mlp_engine

    _, xva, _, _, _ = splits
    x = torch.as_tensor(xva, dtype=torch.float32)
    assert x.shape[0] % 64 and x.shape[0] > 3 * 64
    model = MLPVAE(5, 4, [16, 16], generator=torch.Generator().manual_seed(3))
    calls = []
    encode = model.encode
    model.encode = lambda rows: calls.append(rows.shape[0]) or encode(rows)
    monkeypatch.setattr(mlp_engine, "VALIDATION_ROWS", 10**9)
    whole = fixed_draw_loss(model, x, 0.01, 1.0, 7, chunk=64)
    monkeypatch.setattr(mlp_engine, "VALIDATION_ROWS", 24)
    calls.clear()
    blocked = fixed_draw_loss(model, x, 0.01, 1.0, 7, chunk=64)
    assert max(calls) == 24 and sum(calls) == x.shape[0]  # the blocks cover every row once
    np.testing.assert_allclose(blocked, whole, rtol=1e-6)


def test_fixed_draw_estimate_is_the_noise_average_on_a_linear_model(splits):
    """On a linear model the noise average has a closed form (model.expected_loss): the
    estimate with many draws lands on it within 4 standard errors of its own draw noise,
    the standard error measured over 8 independent draw sets."""
    xtr, xva, _, _, _ = splits
    model = LinearVAE(5, 4, generator=torch.Generator().manual_seed(1)).double()
    with torch.no_grad():
        model.enc_logvar.bias.fill_(-0.5)  # a posterior variance that is not 1
    x = torch.as_tensor(xva, dtype=torch.float64)
    exact = expected_loss(model, x, 0.3)[1]
    draws = [fixed_draw_loss(model, x, 0.3, 1.0, seed, draws=8)[1] for seed in range(8)]
    stderr = np.std(draws, ddof=1) / np.sqrt(len(draws))
    assert stderr > 0
    assert abs(np.mean(draws) - exact) < 4 * stderr


def test_observables_through_the_networks_equal_the_closed_forms():
    """measure_decoded (any family) against measure (the linear closed forms) on one
    linear model, float64 throughout: the same numbers up to rounding. 1e-10 is far above
    float64 rounding of sums over 700 samples (~1e-13) and far below any modelling
    difference (pruning to 0 instead of the training mean moves Dn_k by ~1e-1 here)."""
    rng = np.random.default_rng(0)
    x_train, x_eval = rng.standard_normal((900, 5)), rng.standard_normal((700, 5))
    model = LinearVAE(5, 4, generator=torch.Generator().manual_seed(2)).double()
    with torch.no_grad():
        model.enc_logvar.weight.normal_(0, 0.3, generator=torch.Generator().manual_seed(3))
        model.enc_mean.bias.add_(0.4)  # a training mean of mu far from 0
    x_val = rng.standard_normal((400, 5)) * 1.3
    params = model.numpy_params()
    closed = observables.measure(params, x_eval, x_train, seed=3, chunk=256, x_val=x_val)
    encode, decode = numpy_codec(model)
    through = observables.measure_decoded(
        encode, decode, x_eval, x_train, seed=3, chunk=300, x_val=x_val
    )
    assert np.array_equal(closed.latent_index, through.latent_index)
    for name, value in closed.per_latent.items():
        np.testing.assert_allclose(through.per_latent[name], value, rtol=1e-10, err_msg=name)
    for name in (
        "train_mean_mu",
        "truncated_distortion",
        "truncated_distortion_train_mean",
        "distortion_posterior_mean",
        "distortion_sampled",
        "rate",
    ):
        np.testing.assert_allclose(
            getattr(through, name), getattr(closed, name), rtol=1e-10, atol=1e-12, err_msg=name
        )
    # the prior rule decodes fixed draws of the pruned latents and averages: on an affine
    # decoder the antithetic draws average to the prior mean, so it is the zero rule; and
    # the validation split's levels are the closed forms' on that split
    assert set(through.extra) == set(closed.extra) == set(observables.EXTRA_TRUNCATIONS)
    for name, value in closed.extra.items():
        np.testing.assert_allclose(through.extra[name], value, rtol=1e-10, atol=1e-12, err_msg=name)
    np.testing.assert_allclose(
        through.extra["truncated_distortion_prior"], closed.truncated_distortion, rtol=1e-10
    )


def test_the_prior_rule_differs_from_zero_for_a_curved_decoder():
    """Negative control for the test above: through an MLP decoder, averaging the pruned
    latents over their prior is not decoding them at 0 (measured here: the levels differ
    by more than 1e-3 at some k < K, and agree at k = K, where nothing is pruned)."""
    rng = np.random.default_rng(1)
    x_train, x_eval = rng.standard_normal((600, 5)), rng.standard_normal((500, 5))
    gen = torch.Generator().manual_seed(5)
    model = Architecture("mlp", (16,), "tanh").build(5, 4, generator=gen, dtype=torch.float64)
    encode, decode = numpy_codec(model)
    obs = observables.measure_decoded(encode, decode, x_eval, x_train, seed=2)
    prior, zero = obs.extra["truncated_distortion_prior"], obs.truncated_distortion
    assert np.max(np.abs(prior - zero)[:-1]) > 1e-3, (prior, zero)
    assert prior[-1] == pytest.approx(zero[-1], rel=1e-12)


def test_the_codec_calls_the_networks_a_block_of_rows_at_a_time_and_changes_no_row():
    """numpy_codec calls the networks ROWS_PER_CALL rows at a time (a speed-up: the
    activations stay in cache). No layer of a model in eval mode mixes rows, so on 2.5
    blocks (two full and a remainder) every row equals one call on all rows. Expected
    bitwise; 1e-13 allows a BLAS that blocks a product's rows differently a few ulps of
    float64 per output (|values| ~1), far below any measured level's scatter."""
    from collapse_spectroscopy.models.families import ROWS_PER_CALL

    n = 2 * ROWS_PER_CALL + ROWS_PER_CALL // 2
    rng = np.random.default_rng(7)
    x, z = rng.standard_normal((n, 6)), rng.standard_normal((n, 3))
    gen = torch.Generator().manual_seed(8)
    model = Architecture("mlp", (16, 16), "gelu").build(6, 3, generator=gen, dtype=torch.float64)
    encode, decode = numpy_codec(model)
    with torch.no_grad():
        mu, logs2 = (t.numpy() for t in model.encode(torch.from_numpy(x)))
        xhat = model.decode(torch.from_numpy(z)).numpy()
    got_mu, got_logs2 = encode(x)
    for got, want in ((got_mu, mu), (got_logs2, logs2), (decode(z), xhat)):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)


# --- a job end to end, and its resume after SIGKILL --------------------------------------
PAUSE_AT, MAX_UPDATES = 300, 500  # checkpoints at 200 and 400; killed at 300


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    path = tmp_path_factory.mktemp("mlp") / "prepared.npz"
    gaussian_prepared(SPECTRUM, sizes=(2000, 500, 500), seed=4).save(path)
    return path


def train_cmd(prepared, out):
    return [
        sys.executable,
        "-m",
        "collapse_spectroscopy.cli",
        "train",
        *("--data", str(prepared), "-T", "0.05", "--seed", "2", "--out", str(out)),
        *("--kind", "mlp", "--hidden", "16", "16", "--latents", "4"),
        *("--max-updates", str(MAX_UPDATES), "--patience", "30000", "--eval-every", "100"),
        *("--checkpoint-every", "200", "--device", "cpu"),
    ]


@pytest.mark.slow
def test_sigkill_then_rerun_is_bit_identical(prepared, tmp_path):
    ref = tmp_path / "ref" / "p.nc"
    done = subprocess.run(train_cmd(prepared, ref), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "[mlp_fast]" in done.stdout  # auto on a CPU
    point = scanfile.read(ref)
    assert point.attrs["engine"] == "mlp_fast" and '"kind": "mlp"' in point.attrs["model"]
    assert point.sizes["k"] == 5 and np.all(np.isfinite(point["truncated_distortion"]))

    out = tmp_path / "killed" / "p.nc"
    env = {**os.environ, PAUSE_ENV: str(PAUSE_AT)}
    proc = subprocess.Popen(train_cmd(prepared, out), env=env, stderr=subprocess.PIPE)
    marker = out.parent / "p.ckpt.paused"
    deadline = time.time() + 120  # only a failed start gets here
    try:
        while not marker.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.time() < deadline, "no pause"
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    assert torch.load(out.with_suffix(".ckpt"), weights_only=False)["update"] == 200
    rerun = subprocess.run(train_cmd(prepared, out), capture_output=True, text=True)
    assert "resumed from a checkpoint at update 200" in rerun.stdout, rerun.stderr
    a, b = scanfile.read(ref), scanfile.read(out)
    for name in a.data_vars:
        if name != "elapsed_s":
            assert np.array_equal(a[name].values, b[name].values), name
