"""Training: determinism, engine equivalence, failure modes, early stopping."""

import numpy as np
import pytest
import torch

from collapse_spectroscopy import observables
from collapse_spectroscopy.engines import AutogradEngine, FastEngine
from collapse_spectroscopy.errors import InputError, TrainingError
from collapse_spectroscopy.model import LinearVAE
from collapse_spectroscopy.training import TrainConfig, train_scan_point
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
    ref, fast = AutogradEngine(ref_model, beta, 1.0, 1e-3), FastEngine(fast_model, beta, 1.0, 1e-3)
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
    from collapse_spectroscopy.model import expected_loss

    val, _, _ = expected_loss(r.model, torch.as_tensor(xva), r.beta)
    assert val == pytest.approx(r.best_val_loss, rel=1e-6)
    assert list(r.log.columns) == [
        "update",
        "train_loss",
        "val_loss",
        "val_distortion",
        "val_rate",
        "elapsed_s",
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
