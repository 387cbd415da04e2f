"""Training: determinism, engine equivalence, failure modes, early stopping."""

import subprocess
import sys
from dataclasses import fields

import numpy as np
import pytest
import torch

from collapse_spectroscopy.analysis import observables
from collapse_spectroscopy.config import settings
from collapse_spectroscopy.errors import InputError, TrainingError
from collapse_spectroscopy.models.linear import LinearVAE
from collapse_spectroscopy.models.mlp import MLPVAE
from collapse_spectroscopy.training.engines import ENGINES, Engine, make_engine
from collapse_spectroscopy.training.engines.torch_engines import AutogradEngine, FastEngine
from collapse_spectroscopy.training.scan_point import TrainConfig, train_scan_point
from engine_problems import problem
from synthetic_gaussian import gaussian_splits

SPECTRUM = [0.5, 0.3, 0.15, 0.05]


@pytest.fixture(scope="module")
def splits():
    return gaussian_splits(SPECTRUM, sizes=(3000, 1000, 1000), seed=1)


def test_same_seed_is_bit_identical(splits):
    xtr, xva, xte, _, _ = splits
    cfg = TrainConfig(max_updates=600, eval_every=200, patience=10_000)
    runs = [train_scan_point(xtr, xva, 0.1, seed=3, latents=6, config=cfg) for _ in range(2)]
    obs = [observables.measure(r.model.numpy_params(), xte, xtr, seed=3) for r in runs]
    for name, values in obs[0].per_latent.items():
        assert np.array_equal(values, obs[1].per_latent[name]), name
    assert np.array_equal(obs[0].truncated_distortion, obs[1].truncated_distortion)
    assert runs[0].log["val_loss"].tolist() == runs[1].log["val_loss"].tolist()
    other = train_scan_point(xtr, xva, 0.1, seed=4, latents=6, config=cfg)
    assert not np.array_equal(other.model.numpy_params()["A"], runs[0].model.numpy_params()["A"])


def test_fast_engine_follows_autograd_adam(splits):
    """Same init, batches and noise, float64: the trajectories agree to 1e-5 over 1000 steps."""
    xtr = torch.as_tensor(splits[0], dtype=torch.float64)
    d, K, beta, bs = xtr.shape[1], 6, 0.4, 128
    ref_model = LinearVAE(d, K, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    fast_model = LinearVAE(d, K, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ref = AutogradEngine(problem(ref_model, splits[0], beta))
    fast = FastEngine(problem(fast_model, splits[0], beta))
    g = torch.Generator().manual_seed(1)
    for step in range(1000):
        idx = torch.randint(0, xtr.shape[0], (bs if step % 7 else 37,), generator=g)
        eps = torch.randn(idx.numel(), K, generator=g, dtype=torch.float64)
        l_ref, l_fast = ref.step(xtr[idx], eps), fast.step(xtr[idx], eps)
        assert l_fast.item() == pytest.approx(l_ref.item(), rel=1e-10)
    p_ref, p_fast = ref_model.numpy_params(), fast.sync_model().numpy_params()
    for name in p_ref:
        scale = np.abs(p_ref[name]).max() + 1e-12
        assert np.abs(p_fast[name] - p_ref[name]).max() / scale < 1e-5, name


def test_engines_agree_through_the_training_loop(splits):
    xtr, xva, _, _, _ = splits
    cfg = dict(max_updates=300, eval_every=100, patience=10_000, dtype="float64")
    a = train_scan_point(xtr, xva, 0.05, latents=5, config=TrainConfig(engine="fast", **cfg))
    b = train_scan_point(xtr, xva, 0.05, latents=5, config=TrainConfig(engine="autograd", **cfg))
    np.testing.assert_allclose(a.log["val_loss"], b.log["val_loss"], rtol=1e-9)


def test_non_finite_loss_names_t_seed_and_update(splits):
    xtr, xva, _, _, _ = splits
    huge = (xtr * 1e20).astype(np.float32)  # squares overflow float32: the loss is inf
    with pytest.raises(TrainingError, match=r"T=0\.1 .*seed=7, update 1\b"):
        train_scan_point(
            huge, xva, 0.1, seed=7, latents=4, config=TrainConfig(max_updates=50, eval_every=10)
        )


def test_early_stopping_keeps_the_best_weights(splits):
    xtr, xva, _, _, _ = splits
    cfg = TrainConfig(max_updates=20_000, eval_every=50, patience=300, learning_rate=3e-3)
    r = train_scan_point(xtr, xva, 0.2, latents=4, config=cfg)
    assert r.stop_reason == "early_stopping"
    assert r.updates_run - r.best_update >= 300 and r.updates_run < 20_000
    assert r.best_val_loss == r.log["val_loss"].min()
    assert r.log.loc[r.log.val_loss.idxmin(), "update"] == r.best_update
    # the returned model is the best one: its validation loss is the logged best
    from collapse_spectroscopy.models.linear import expected_loss

    val, _, _ = expected_loss(r.model, torch.as_tensor(xva), r.beta)
    assert val == pytest.approx(r.best_val_loss, rel=1e-6)
    assert list(r.log.columns) == [
        "update",
        "train_loss",
        "val_loss",
        "val_distortion",
        "val_rate",
        "elapsed_s",
        "train_loss_max",
    ]


def test_patience_fraction_and_count():
    assert TrainConfig(max_updates=500_000, patience=0.1).patience_updates == 50_000
    assert TrainConfig(patience=1234).patience_updates == 1234


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(x_train=np.zeros((10, 3, 1))), "2-D"),
        (dict(x_train=np.zeros((0, 4))), "empty"),
        (dict(x_val=np.zeros((0, 4))), "empty"),
        (dict(x_val=np.zeros((10, 3))), "features"),
        (dict(x_train=np.full((10, 4), np.nan)), "non-finite"),
        (dict(temperature=0.0), "temperature"),
        (dict(temperature=-1.0), "temperature"),
        (dict(latents=0), "latents"),
    ],
)
def test_bad_input(kwargs, match):
    args = dict(
        x_train=np.ones((10, 4), np.float32),
        x_val=np.ones((5, 4), np.float32),
        temperature=0.1,
        latents=3,
    )
    args.update(kwargs)
    with pytest.raises(InputError, match=match):
        train_scan_point(
            args.pop("x_train"),
            args.pop("x_val"),
            args.pop("temperature"),
            latents=args.pop("latents"),
            config=TrainConfig(max_updates=5),
        )


@pytest.mark.parametrize(
    "key, value",
    [
        ("learning_rate", -1.0),
        ("batch_size", 0),
        ("max_updates", 0),
        ("patience", 0),
        ("engine", "magic"),
        ("eval_every", 0),
    ],
)
def test_bad_config(key, value):
    with pytest.raises(InputError, match=f"training.{key}"):
        TrainConfig(**{key: value}).validate()


def _engine(name, splits, seed=0):
    # the linear VAE, or a small MLP VAE for an engine that trains only that family
    g = torch.Generator().manual_seed(seed)
    if "linear" in ENGINES[name].kinds:
        model = LinearVAE(4, 5, generator=g)
    else:
        model = MLPVAE(4, 5, [8, 6], "gelu", generator=g)
    x = splits[0]
    return make_engine(name, problem(model, x, 0.3, x_val=splits[1], batch_size=100))


def _params(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(pa: dict, pb: dict) -> bool:
    return pa.keys() == pb.keys() and all(torch.equal(pa[k], pb[k]) for k in pa)


@pytest.mark.parametrize("name", list(ENGINES))
def test_every_engine_follows_the_protocol(splits, name):
    """Each registered engine has the protocol's members, runs a window of updates into
    finite losses, and its windows compose: 10 updates in one window or in windows of 3
    and 7 are the same updates (same batches, noise and weights)."""
    a, b = _engine(name, splits), _engine(name, splits)
    assert isinstance(a, Engine) and a.name == name
    la = a.run_window(10)
    lb = np.concatenate([b.run_window(3), b.run_window(7)])
    assert la.shape == (10,) and np.all(np.isfinite(la))
    assert np.array_equal(la, lb)
    assert _same(_params(a.sync_model()), _params(b.sync_model()))
    loss, distortion, rate = a.validation_loss()
    assert loss == pytest.approx(distortion + 0.3 * rate, rel=1e-12)


@pytest.mark.parametrize("name", list(ENGINES))
def test_state_dict_round_trip(splits, name):
    """An engine loaded from another's state continues on the very same trajectory (weights,
    Adam state, batch order, noise), also mid-epoch; the saved state is a snapshot."""
    a, b = _engine(name, splits), _engine(name, splits, seed=1)  # b: other weights
    a.run_window(37)  # mid-epoch (30 batches of 100 per epoch)
    state = a.state_dict()
    b.load_state_dict(state)
    la, lb = a.run_window(40), b.run_window(40)
    assert np.array_equal(la, lb)
    assert _same(_params(a.sync_model()), _params(b.sync_model()))
    c = _engine(name, splits, seed=2)
    c.load_state_dict(state)  # the state taken 40 updates ago, unchanged by them
    assert np.array_equal(c.run_window(40), lb)


def test_engine_names_come_from_one_registry():
    """The schema's training.engine enum and the training option agree with the registry."""
    assert settings.key_schema("training.engine")["enum"] == ["auto", *ENGINES]
    for name in ("auto", *ENGINES):
        TrainConfig(engine=name).validate()


def test_train_config_defaults_are_the_schema_defaults():
    defaults = settings.section_defaults("training")
    config = TrainConfig()
    shared = [f.name for f in fields(TrainConfig) if f.name in defaults]
    assert len(shared) == 9
    for name in shared:
        assert getattr(config, name) == defaults[name], name


def test_torch_engines_do_not_import_numba(tmp_path):
    """A training with a torch engine neither imports numba nor needs it."""
    code = (
        "import sys, numpy as np\n"
        "from collapse_spectroscopy.training.scan_point import TrainConfig, train_scan_point\n"
        "x = np.random.default_rng(0).standard_normal((300, 3)).astype(np.float32)\n"
        "cfg = TrainConfig(engine='fast', max_updates=20, eval_every=10, device='cpu')\n"
        "train_scan_point(x, x, 0.1, latents=2, config=cfg)\n"
        "assert 'numba' not in sys.modules, 'numba was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
