"""Averaged weights (training.average: none | ema | polyak; docs/science.md §5.4).

The oracles: a naive numpy average of the recorded iterates (the arithmetic), the autograd
engine (the same averages on the same batches and noise), the analytic equilibrium (the
excess loss over the equilibrium's; the oracle scan with averaged weights is in
tests/analysis/test_oracle.py), and the trainings of the engines recorded before averaging
existed (``none`` changes nothing).
"""

import json
import math

import numpy as np
import pytest
import torch
import xarray as xr

from collapse_spectroscopy.analysis import equilibrium, observables, pca
from collapse_spectroscopy.analysis.temperature import temperature_to_beta
from collapse_spectroscopy.cli import main
from collapse_spectroscopy.config import settings
from collapse_spectroscopy.errors import InputError
from collapse_spectroscopy.models.linear import LinearVAE, expected_loss
from collapse_spectroscopy.training.engines import ENGINES, engine_class, make_engine
from collapse_spectroscopy.training.engines.averaging import AVERAGES, polyak_blocks
from collapse_spectroscopy.training.engines.layout import pack
from collapse_spectroscopy.training.engines.mlp import fixed_draw_loss, validation_seed
from collapse_spectroscopy.training.engines.numba.engine import NumbaEngine
from collapse_spectroscopy.training.engines.torch_engines import AutogradEngine
from collapse_spectroscopy.training.scan_point import TrainConfig, seed_streams, train_scan_point
from engine_problems import problem as engine_problem
from synthetic_gaussian import gaussian_prepared, gaussian_splits

SPECTRUM = [0.5, 0.3, 0.15, 0.05]
AVERAGING = ["ema", "polyak"]


@pytest.fixture(scope="module")
def splits():
    return gaussian_splits(SPECTRUM, sizes=(3000, 1000, 1000), seed=1)


def problem(*args, batch_size=100, **kwargs):
    # batches of 100: the averaging tests run many short windows on 3,000 samples
    return engine_problem(*args, batch_size=batch_size, **kwargs)


# --- the arithmetic -------------------------------------------------------------------


def test_polyak_blocks_span_h_to_1_1_h():
    """Blocks of H // 10 updates, as many as fit in H: the tail holds H to 1.1 H updates
    (H to H + b - 1 when 10 does not divide H), every update alone below H = 10."""
    assert polyak_blocks(10_000) == (10, 1000)
    assert polyak_blocks(23) == (11, 2)  # 22 to 23 updates
    assert polyak_blocks(5) == (5, 1)


def naive_average(kind, iterates, H):
    """The documented average of ``iterates`` (rows: the weights after updates 1..n),
    straight from its definition (docs/science.md §5.4, engines/averaging.py)."""
    n = len(iterates)
    if kind == "ema":  # the mean of the first H, then weights (1 - 1/H)^age / H
        first = min(n, H)
        a = 1.0 / H
        ages = np.arange(n - first - 1, -1, -1)
        return (1 - a) ** (n - first) * iterates[:first].mean(axis=0) + (
            a * (1 - a) ** ages[:, None] * iterates[first:]
        ).sum(axis=0)
    nblocks, block = polyak_blocks(H)
    span = n if n < nblocks * block else nblocks * block + n % block
    return iterates[n - span :].mean(axis=0)


def raw_and_handed_out(eng):
    """The raw iterate and the weights the engine hands out (``sync_model``), as flat
    float64 vectors in one order: the flat layout for the engines that keep one, else
    the model's parameter order."""
    model = eng.sync_model()
    if isinstance(getattr(eng, "p", None), np.ndarray | torch.Tensor):  # numba, fast
        handed_out = torch.zeros(len(eng.p), dtype=torch.float64)
        pack(model, handed_out)
        raw = eng.p.numpy() if isinstance(eng.p, torch.Tensor) else eng.p
        return raw.astype(np.float64), handed_out.numpy()
    vector = torch.nn.utils.parameters_to_vector
    return eng.weights().numpy().copy(), vector(model.parameters()).detach().numpy()


@pytest.mark.parametrize("kind", AVERAGING)
@pytest.mark.parametrize("H", [23, 40])
@pytest.mark.parametrize("name", ["numba", "fast", "autograd", "mlp"])
def test_the_average_is_the_naive_one(splits, name, kind, H):
    """Each engine's handed-out weights after every one of 157 updates (one window each,
    so each state is seen) equal the naive average of its recorded raw iterates, to 1e-12
    relative in float64 (rounding of ~150 float64 sums of O(1) values: ~1e-14). Before any
    update they are the initial weights."""
    x = splits[0].astype(np.float64)
    model = LinearVAE(4, 5, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    eng = make_engine(name, problem(model, x, 0.3, kind, H, batch_size=30))
    raw, handed_out = raw_and_handed_out(eng)
    assert np.array_equal(raw, handed_out)
    iterates, worst = [], 0.0
    for _ in range(157):
        eng.run_window(1)
        raw, handed_out = raw_and_handed_out(eng)
        iterates.append(raw)
        expected = naive_average(kind, np.array(iterates), H)
        worst = max(worst, np.abs(handed_out - expected).max() / np.abs(expected).max())
    assert worst < 1e-12
    # and it is an average, not the iterate: far from the last weights by now
    assert np.abs(handed_out - raw).max() > 1e-4


# --- the engines agree ---------------------------------------------------------------


@pytest.mark.parametrize("kind", AVERAGING)
def test_numba_averages_follow_autograd(splits, kind):
    """Same init, batches and noise, float64: 600 updates of the numba engine (windows of
    100 updates per call) and autograd + torch.optim.Adam + its float64 average give the
    same averaged weights to 1e-5 relative, the bound the raw trajectories are held to
    (tests/training/test_engine_numba.py), and the same validation loss of them to 1e-9 relative
    (the averages differ by ~1e-7 relative and the loss is smooth in them: measured 1e-11).
    Horizon 50 (polyak: 10 blocks of 5), so the EMA leaves its warm-up and the ring turns
    over many times."""
    x = splits[0].astype(np.float64)
    xt = torch.as_tensor(x)
    K, beta, H = 6, 0.4, 50
    models = [
        LinearVAE(4, K, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        for _ in range(2)
    ]
    ref = AutogradEngine(problem(models[0], x, beta, kind, H))
    eng = NumbaEngine(problem(models[1], x, beta, kind, H))
    g = torch.Generator().manual_seed(1)
    for _ in range(6):
        rows, sizes, noise = [], [], []
        for step in range(100):
            idx = torch.randint(0, x.shape[0], (128 if step % 7 else 37,), generator=g)
            eps = torch.randn(idx.numel(), K, generator=g, dtype=torch.float64)
            ref.step(xt[idx], eps)
            ref.average.update(ref.weights())  # what run_window does after each step
            rows.append(idx.numpy())
            sizes.append(idx.numel())
            noise.append(eps.numpy())
        eng.run_batches(np.concatenate(rows), np.array(sizes), np.concatenate(noise))
        p_ref, p_nb = ref.sync_model().numpy_params(), eng.sync_model().numpy_params()
        for name in p_ref:
            scale = np.abs(p_ref[name]).max()
            assert np.abs(p_nb[name] - p_ref[name]).max() < 1e-5 * scale, name
        np.testing.assert_allclose(eng.validation_loss(), ref.validation_loss(), rtol=1e-9)
    # the averaged model is not the raw iterate
    raw = models[0].numpy_params()
    assert np.abs(ref.sync_model().numpy_params()["W"] - raw["W"]).max() > 1e-4


@pytest.mark.parametrize("kind", AVERAGING)
def test_fast_averages_follow_autograd(splits, kind):
    """The torch engines draw the same batches and noise: through their own window loops,
    1000 updates of ``fast`` and ``autograd`` (float64, horizon 50) give the same averaged
    weights to 1e-5 relative (their raw trajectories' bound, tests/training/test_training.py)."""
    x = splits[0].astype(np.float64)
    engines = [
        make_engine(
            name,
            problem(
                LinearVAE(4, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64),
                x,
                0.4,
                kind,
                50,
            ),
        )
        for name in ("fast", "autograd")
    ]
    for e in engines:
        e.run_window(1000)
    pa, pb = (e.sync_model().numpy_params() for e in engines)
    for name in pa:
        assert np.abs(pa[name] - pb[name]).max() < 1e-5 * np.abs(pb[name]).max(), name


# --- averaging leaves training alone; none leaves everything as it was -----------------


@pytest.mark.parametrize("name", ["numba", "fast", "autograd", "mlp"])
def test_averaging_does_not_touch_the_training_trajectory(splits, name):
    """With averaging on, the raw iterate follows the very trajectory it follows with
    averaging off, bit for bit (same batch losses), so only what is handed out differs."""
    losses = {}
    for kind in ("none", "ema", "polyak"):
        model = LinearVAE(4, 5, generator=torch.Generator().manual_seed(0))
        eng = make_engine(name, problem(model, splits[0], 0.3, kind, 30, x_val=splits[1]))
        losses[kind] = np.concatenate([eng.run_window(70), eng.run_window(45)])
    assert np.array_equal(losses["none"], losses["ema"])
    assert np.array_equal(losses["none"], losses["polyak"])


# The validation losses of 2000 updates (8 evaluations) recorded with the code of before
# averaging existed (T 0.02, seed 3, 6 latents, lr 3e-3, batch 64, float64). Tolerance
# 1e-9 relative, not equality: these runs were bit-identical on the machine that recorded
# them (all four engines, float32 and float64, weights and logs), but the rounding of the
# compiled numba code and of torch's CPU kernels depends on the CPU's vector width; it
# moves these numbers by ~1e-15, far below 1e-9, while any change of the update, the batch
# order or the weights validated moves them by > 1e-6.
RECORDED_VAL_LOSS = {
    "fast": [0.7700562510807298, 0.6628084632146176, 0.592164488619465, 0.5468701630864226,
             0.528131728096548, 0.5213565405800479, 0.5190741444781943, 0.5172024885064661],
    "numba": [0.7704235139351868, 0.6592846388072046, 0.5878764222503378, 0.5452789524560805,
              0.5271840129153488, 0.5205024417297994, 0.5181432824895191, 0.5165565308323345],
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(RECORDED_VAL_LOSS))
def test_average_none_is_the_training_of_before(splits, name):
    xtr, xva, _, _, _ = splits
    cfg = TrainConfig(
        engine=name,
        max_updates=2000,
        eval_every=250,
        patience=500,
        dtype="float64",
        learning_rate=3e-3,
        batch_size=64,
    )
    assert cfg.average == "none"  # the default
    r = train_scan_point(xtr, xva, 0.02, seed=3, latents=6, config=cfg)
    np.testing.assert_allclose(r.log["val_loss"], RECORDED_VAL_LOSS[name], rtol=1e-9, atol=0)
    assert r.best_update == 2000


@pytest.mark.parametrize("name", ["numba", "fast", "autograd", "mlp"])
def test_the_kept_weights_are_the_validated_average(splits, name):
    """The trainer, unchanged, keeps what the engine validated: with averaging on, the
    returned model's validation loss, recomputed from scratch (the per-sample closed form;
    for mlp the fixed-draw estimate with its seed), is the best logged one, to 1e-10
    relative in float64 (numba's second-moment form against the per-sample one: ~1e-14),
    and that model is not the best raw iterate of the same training."""
    xtr, xva, _, _, _ = splits
    kept = {}
    for kind in ("none", "ema"):
        cfg = TrainConfig(
            engine=name,
            max_updates=600,
            eval_every=100,
            patience=600,
            dtype="float64",
            average=kind,
            average_horizon=100,
        )
        r = train_scan_point(xtr, xva, 0.05, seed=1, latents=4, config=cfg)
        x_val = torch.as_tensor(xva, dtype=torch.float64)
        if name == "mlp":
            seed = validation_seed(seed_streams(1)[2])
            loss = fixed_draw_loss(r.model, x_val, r.beta, 1.0, seed)[0]
        else:
            loss = expected_loss(r.model, x_val, r.beta, 1.0)[0]
        assert loss == pytest.approx(r.best_val_loss, rel=1e-10)
        assert r.log["val_loss"].min() == r.best_val_loss
        kept[kind] = r.model.numpy_params()
    assert not np.allclose(kept["none"]["W"], kept["ema"]["W"], rtol=1e-6, atol=0)


# --- state and resume -------------------------------------------------------------------


@pytest.mark.parametrize("kind", AVERAGING)
@pytest.mark.parametrize("name", ["numba", "fast", "autograd", "mlp"])
def test_state_round_trip_with_averaging(splits, name, kind):
    """An engine loaded from another's state (mid-block: 37 updates, polyak blocks of 3)
    continues with the same raw and averaged weights, bit for bit; the state is a copy."""

    def engine(seed):
        model = LinearVAE(4, 5, generator=torch.Generator().manual_seed(seed))
        return make_engine(name, problem(model, splits[0], 0.3, kind, 30, x_val=splits[1]))

    a, b = engine(0), engine(1)
    a.run_window(37)
    state = a.state_dict()
    b.load_state_dict(state)
    assert np.array_equal(a.run_window(40), b.run_window(40))
    pa, pb = a.sync_model().numpy_params(), b.sync_model().numpy_params()
    assert all(np.array_equal(pa[k], pb[k]) for k in pa)
    assert a.validation_loss() == b.validation_loss()
    c = engine(2)
    c.load_state_dict(state)  # taken 40 updates ago: unchanged by them
    c.run_window(40)
    pc = c.sync_model().numpy_params()
    assert all(np.array_equal(pa[k], pc[k]) for k in pa)


@pytest.mark.parametrize("kind", AVERAGING)
def test_resume_from_a_checkpoint_is_bit_identical(splits, kind, tmp_path):
    """A training that resumes from the checkpoint left at update 900 (mid-block of
    polyak's blocks of 7) ends with the weights, log and best update of the training that
    ran through, bit for bit (numba engine, the default on a CPU)."""
    xtr, xva, _, _, _ = splits
    cfg = TrainConfig(
        max_updates=1000,
        eval_every=100,
        patience=1000,
        checkpoint_every=300,
        average=kind,
        average_horizon=70,
    )
    ckpt = tmp_path / "point.ckpt"
    full = train_scan_point(xtr, xva, 0.05, seed=2, latents=5, config=cfg, checkpoint=ckpt)
    assert ckpt.exists()  # the one of update 900: the caller removes it after the outputs
    resumed = train_scan_point(xtr, xva, 0.05, seed=2, latents=5, config=cfg, checkpoint=ckpt)
    assert resumed.resumed_from == 900 and full.resumed_from == 0
    pf, pr = full.model.numpy_params(), resumed.model.numpy_params()
    assert all(np.array_equal(pf[k], pr[k]) for k in pf)
    cols = ["update", "train_loss", "val_loss", "val_distortion", "val_rate"]
    assert full.log[cols].equals(resumed.log[cols])
    assert full.best_update == resumed.best_update


# --- closer to equilibrium ----------------------------------------------------------------


def excess_loss(params, x, beta):
    """The expected loss (exact over the noise, float64) of ``params`` on ``x``, over that
    of the analytic equilibrium of ``x`` (the global minimum on ``x``, docs/science.md §2)."""
    mean, cov = x.mean(axis=0), np.cov(x.T, bias=True)
    K = params["W"].shape[1]

    def loss(p):
        model = LinearVAE(x.shape[1], K, dtype=torch.float64)
        with torch.no_grad():
            for layer, (w, b) in (("enc_mean", "Aa"), ("enc_logvar", "Bb"), ("dec", "Wc")):
                getattr(model, layer).weight.copy_(torch.as_tensor(p[w]))
                getattr(model, layer).bias.copy_(torch.as_tensor(p[b]))
        return expected_loss(model, torch.as_tensor(x), beta)[0]

    T = beta / np.trace(cov)  # sigma2 = 1
    return loss(params) - loss(equilibrium.equilibrium_parameters(mean, cov, T, K))


def test_averaged_weights_are_closer_to_equilibrium_than_the_best_iterate():
    """At a low T (0.02, a fifth of the smallest threshold) with a noisy small batch (16)
    and a large learning rate (3e-3), the best raw iterate sits on the minibatch-noise
    floor; the averaged weights of the very same training (the raw trajectory does not
    depend on averaging) sit much closer to the analytic equilibrium.

    Measured on three seeds (20,000 updates, horizon 2,000): excess training loss over the
    equilibrium's 1.2e-3 to 1.7e-3 for the best iterate, 3e-5 to 2.9e-4 averaged (ratios
    0.03 to 0.17; what is left is mostly the slow relaxation that averaging cannot
    remove), and the validation loss between evaluations jitters 20 to 50 times less. The
    test asks for ratio < 0.3 per seed and a tenfold smaller jitter, and the largest rho
    error against the oracle ``1 - T/T_k`` to shrink. A broken average (e.g. the raw
    iterate handed out) gives ratio 1 and fails.
    """
    xtr, xva, _, _, _ = gaussian_splits(SPECTRUM, sizes=(4000, 2000, 2000), seed=1)
    x64 = xtr.astype(np.float64)
    T = 0.02
    beta = temperature_to_beta(T, float(np.trace(np.cov(x64.T, bias=True))), 1.0)
    tk = pca.pca_spectrum(xtr)
    rho_eq = equilibrium.signal_fraction(tk, T)
    for seed in (0, 1, 2):
        out = {}
        for kind in ("none", *AVERAGING):
            cfg = TrainConfig(
                engine="numba",
                max_updates=20_000,
                eval_every=500,
                patience=20_000,
                batch_size=16,
                learning_rate=3e-3,
                average=kind,
                average_horizon=0.1,
                dtype="float64",
            )
            r = train_scan_point(xtr, xva, T, seed=seed, latents=4, config=cfg)
            params = r.model.numpy_params()
            rho = observables.measure(params, xtr, xtr, seed=0).per_latent["signal_fraction"]
            jitter = np.diff(r.log["val_loss"].to_numpy()[-20:]).std()
            out[kind] = (excess_loss(params, x64, beta), np.abs(rho - rho_eq).max(), jitter)
        best = out["none"]
        assert best[0] > 0
        for kind in AVERAGING:
            excess, rho_err, jitter = out[kind]
            assert 0 < excess < 0.3 * best[0], (seed, kind, excess, best[0])
            assert rho_err < best[1], (seed, kind, rho_err, best[1])
            assert jitter < 0.1 * best[2], (seed, kind, jitter, best[2])


# --- settings and bad input -----------------------------------------------------------------


def test_the_schema_and_the_engines_name_the_same_averages():
    assert settings.key_schema("training.average")["enum"] == list(AVERAGES)
    assert TrainConfig().average == "none"  # the paper's best-iterate rule
    assert TrainConfig(max_updates=500_000).average_updates == 10_000
    assert TrainConfig(average_horizon=300).average_updates == 300


@pytest.mark.parametrize(
    "key, value",
    [
        ("average", "mean"),
        ("average", "EMA"),
        ("average_horizon", 0),
        ("average_horizon", -0.5),
        ("average_horizon", 2.5),
        ("average_horizon", math.inf),
        ("average_horizon", math.nan),
    ],
)
def test_a_bad_average_setting_is_one_line(key, value):
    with pytest.raises(InputError, match=rf"^training\.{key} = .*: expected"):
        TrainConfig(**{key: value}).validate()


def test_an_engine_without_averaging_refuses_it(splits):
    """The batched engine does not average: asking it to is an InputError, not a silent
    best-iterate run."""
    assert "batched" in ENGINES and not getattr(engine_class("batched"), "averages", False)
    xtr, xva, _, _, _ = splits
    cfg = TrainConfig(engine="batched", max_updates=10, eval_every=5, average="ema")
    with pytest.raises(InputError, match=r"training\.average = 'ema' .*'batched'"):
        train_scan_point(xtr, xva, 0.1, latents=3, config=cfg)


def test_the_cli_trains_with_averaged_weights(tmp_path):
    """``train --average ema --average-horizon 100`` reaches the training (recorded with
    the point) and changes the weights kept; a bad value is one line and exit 2."""
    data = tmp_path / "prepared.npz"
    gaussian_prepared(SPECTRUM, sizes=(3000, 1000, 1000), seed=2).save(data)
    common = ["train", "--data", str(data), "-T", "0.05", "--latents", "4"]
    common += ["--max-updates", "800", "--eval-every", "200", "--patience", "800"]
    weights = {}
    for kind in ("none", "ema"):
        out = tmp_path / kind / "p.nc"
        assert (
            main([*common, "--average", kind, "--average-horizon", "100", "--out", str(out)]) == 0
        )
        with xr.open_dataset(out) as ds:
            training = json.loads(ds.attrs["training"])
        assert training["average"] == kind and training["average_horizon"] == 100
        weights[kind] = torch.load(out.with_suffix(".pt"), weights_only=True)["state_dict"]
    assert not torch.equal(weights["none"]["dec.weight"], weights["ema"]["dec.weight"])
    with pytest.raises(SystemExit) as exc:
        main([*common, "--average", "mean", "--out", str(tmp_path / "bad.nc")])
    assert exc.value.code == 2
