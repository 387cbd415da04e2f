"""The batched engine for ``model.kind: mlp`` (issue 22 item 2): P MLP VAEs as one stacked
model follow, point by point, the single-point ``mlp_fast`` engine's trajectory (the same
batches, noise, Adam and fixed-draw validation), stop early where it does, and resume bit
for bit (docs/science.md §5).

Oracle: ``MLPFastEngine`` run on each point alone (itself checked against autograd and
``torch.optim.Adam``, the ``mlp`` engine, in tests/training/test_mlp_fast.py), with the
point's model, beta, shuffle and noise seeds.

Tolerances:

- **float64: 1e-10 relative.** The batched engine evaluates the same formulas with the
  same kernels, but each product is a ``torch.baddbmm``/``torch.bmm`` over P points
  instead of one ``torch.addmm``/``torch.mm``, and the loss sums are batched dot products:
  another summation order, a few float64 round-offs (~1e-16 relative) per gradient. Adam's
  step is invariant to the gradient's scale, so a relative gradient error delta moves a
  weight by ~lr delta per update; 300 updates add up to ~1e-15 (measured: losses
  <= 2e-15, weights <= 7e-16, validation <= 3e-16 of the largest, every activation).
  1e-10 is far above that and far below a real difference: a point fed another point's
  noise is off by 0.035 of its largest weight after 3 updates and by 0.6 after 300
  (measured; checked below, so that the bound is shown to separate).
- **float32: 1e-5 relative**, tests/training/test_mlp_fast.py's argument with float32's
  unit round-off 6e-8 (measured here: losses <= 1.1e-6, weights <= 6.4e-7, validation
  <= 1.9e-7).
- The protocol's decisions (the update each point stops at, its best update) are exact:
  the validation losses agree to 1e-15, far below the gaps early stopping compares.
"""

import dataclasses
import io

import numpy as np
import pytest
import torch
from torch.nn.utils import parameters_to_vector

from collapse_spectroscopy.errors import InputError
from collapse_spectroscopy.models.families import Architecture
from collapse_spectroscopy.models.linear import LinearVAE
from collapse_spectroscopy.models.mlp import ACTIVATIONS, MLPVAE
from collapse_spectroscopy.training.batched import train_scan_points_batched
from collapse_spectroscopy.training.engines import ENGINES, TrainingProblem, resolve_engine
from collapse_spectroscopy.training.engines.batched import FAMILY_ENGINES, batched_engine
from collapse_spectroscopy.training.engines.batched_mlp import BatchedMLPEngine
from collapse_spectroscopy.training.engines.mlp_fast import MLPFastEngine
from collapse_spectroscopy.training.scan_point import TrainConfig, train_scan_point
from synthetic_gaussian import gaussian_splits

SPECTRUM = [0.5, 0.3, 0.15, 0.05, 0.0]
K, BATCH, HIDDEN = 4, 64, (16, 12)  # 2000 samples: 31 full batches and one of 16 per epoch
POINTS = [(0.3, 0), (0.05, 1), (1.0, 2)]  # (beta, seed): other temperatures and seeds
WINDOWS = [100, 37, 163]  # 300 updates, ~9.4 epochs; windows end mid-epoch
TOL, FLOAT32_TOL = 1e-10, 1e-5


@pytest.fixture(scope="module")
def splits():
    xtr, xva, _, _, _ = gaussian_splits(SPECTRUM, sizes=(2000, 500, 500), seed=3)
    return xtr, xva


def problem(splits, beta, seed, activation="gelu", dtype=torch.float64, *, noise_seed=None, init=0):
    g = torch.Generator().manual_seed(seed + init)
    model = MLPVAE(5, K, list(HIDDEN), activation, generator=g, dtype=dtype)
    return TrainingProblem(
        model=model,
        x_train=splits[0],
        x_val=splits[1],
        beta=beta,
        sigma2=0.7,
        learning_rate=3e-3,
        batch_size=BATCH,
        shuffle_seed=100 + seed,
        noise_seed=200 + seed if noise_seed is None else noise_seed,
    )


def relative(a, b) -> float:
    """The largest difference relative to the largest magnitude of ``b``."""
    a, b = (
        v.detach().double().cpu().numpy()
        if isinstance(v, torch.Tensor)
        else np.asarray(v, dtype=np.float64)
        for v in (a, b)
    )
    return float(np.abs(a - b).max() / np.abs(b).max())


def run_fast(splits, beta, seed, activation="gelu", dtype=torch.float64, windows=WINDOWS):
    engine = MLPFastEngine(problem(splits, beta, seed, activation, dtype))
    return engine, np.concatenate([engine.run_window(n) for n in windows])


def assert_follows_mlp_fast(splits, batch, losses, activation="gelu", dtype=torch.float64):
    """Each point of ``batch`` (after WINDOWS) against mlp_fast alone: the loss of every
    update, the weights and the validation loss."""
    tol = TOL if dtype == torch.float64 else FLOAT32_TOL
    val = batch.validation_losses()
    for i, (beta, seed) in enumerate(POINTS):
        fast, ref = run_fast(splits, beta, seed, activation, dtype)
        assert losses[i].dtype == ref.dtype
        assert np.max(np.abs(losses[i] - ref) / np.abs(ref)) < tol, f"point {i}: losses"
        assert relative(batch.point_state(i)["p"], fast.p) < tol, f"point {i}: weights"
        assert relative(val[i], fast.validation_loss()) < tol, f"point {i}: validation"


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_trajectories_equal_the_per_point_mlp_fast_engine(splits, activation):
    """P = 3 points, other temperatures and seeds, 300 updates over 9 epochs (short last
    batches included), in windows that end mid-epoch, for every model.activation."""
    batch = batched_engine([problem(splits, b, s, activation) for b, s in POINTS])
    assert isinstance(batch, BatchedMLPEngine)
    losses = np.concatenate([batch.run_window(n) for n in WINDOWS], axis=1)
    assert losses.shape == (3, 300) and np.all(np.isfinite(losses))
    assert_follows_mlp_fast(splits, batch, losses, activation)


def test_float32_follows_to_round_off(splits):
    """float32 GELU (on the CPU the native-kernel path of mlp_fast) to the float32 bound."""
    f32 = torch.float32
    batch = batched_engine([problem(splits, b, s, dtype=f32) for b, s in POINTS])
    losses = np.concatenate([batch.run_window(n) for n in WINDOWS], axis=1)
    assert_follows_mlp_fast(splits, batch, losses, dtype=f32)


def test_another_points_noise_is_caught(splits):
    """The check above is not vacuous: point 1 fed point 0's noise fails it."""
    problems = [problem(splits, b, s) for b, s in POINTS]
    problems[1] = problem(splits, *POINTS[1], noise_seed=problems[0].noise_seed)
    batch = batched_engine(problems)
    losses = np.concatenate([batch.run_window(n) for n in WINDOWS], axis=1)
    with pytest.raises(AssertionError, match="point 1"):
        assert_follows_mlp_fast(splits, batch, losses)


def test_a_retired_point_leaves_the_others_unchanged(splits):
    """Retiring point 1 after 137 updates freezes it (its weights and step, and its model
    through the point's view); points 0 and 2 run on as alone."""
    batch = batched_engine([problem(splits, b, s) for b, s in POINTS])
    first = np.concatenate([batch.run_window(100), batch.run_window(37)], axis=1)
    frozen = batch.point_state(1)
    batch.retire(1)
    assert batch.active == [0, 2]
    rest = batch.run_window(163)
    assert rest.shape == (2, 163)
    for row, i in enumerate((0, 2)):
        _, ref = run_fast(splits, *POINTS[i])
        got = np.concatenate([first[i], rest[row]])
        assert np.max(np.abs(got - ref) / np.abs(ref)) < TOL, i
    assert torch.equal(batch.point_state(1)["p"], frozen["p"])
    assert int(batch.point_state(1)["step"]) == 137 and batch.t == 300
    fast, _ = run_fast(splits, *POINTS[1], windows=[137])
    model = batch.view(1).sync_model()  # the frozen weights, copied into the point's model
    assert relative(parameters_to_vector(model.parameters()).detach(), fast.p) < TOL


def test_state_round_trip_is_bit_identical(splits):
    """A batch loaded from another's mid-epoch state (one point retired) continues on the
    very same trajectory; the state is a snapshot, through torch.save as a checkpoint."""
    a = batched_engine([problem(splits, b, s) for b, s in POINTS])
    a.run_window(37)
    a.retire(2)
    a.run_window(10)
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    # other initial weights (the validation draws are the noise seed's, as in a rerun)
    b = batched_engine([problem(splits, b, s, init=7) for b, s in POINTS])
    buffer.seek(0)
    b.load_state_dict(torch.load(buffer, weights_only=False))
    la, lb = a.run_window(60), b.run_window(60)
    assert b.active == [0, 1] and np.array_equal(la, lb)
    for i in range(3):
        assert torch.equal(a.point_state(i)["p"], b.point_state(i)["p"]), i
    assert a.validation_losses() == b.validation_losses()


def test_a_points_state_is_mlp_fasts(splits):
    """A point's state is mlp_fast's state_dict: loaded into mlp_fast it continues that
    point's trajectory, bit for bit in the batch noise and batches."""
    batch = batched_engine([problem(splits, b, s) for b, s in POINTS])
    batch.run_window(137)
    fast = MLPFastEngine(problem(splits, *POINTS[1]))
    fast.load_state_dict(batch.point_state(1))
    _, ref = run_fast(splits, *POINTS[1], windows=[137, 163])
    assert np.max(np.abs(fast.run_window(163) - ref[137:]) / np.abs(ref[137:])) < TOL


TRAIN = dict(
    max_updates=3000,
    eval_every=50,
    patience=300,
    learning_rate=3e-3,
    batch_size=BATCH,
    dtype="float64",
    device="cpu",
    progress=False,
)
SCAN = [(0.2, 0), (0.02, 1), (0.6, 2)]  # (T, seed): stop at 850, 1900 and 600
ARCH = dict(arch=Architecture("mlp", tuple(HIDDEN), "tanh"))


@pytest.fixture(scope="module")
def batched_results(splits):
    config = TrainConfig(**TRAIN)
    return train_scan_points_batched(*splits, SCAN, latents=K, config=config, **ARCH)


def test_early_stopping_per_point_equals_train_scan_point(splits, batched_results):
    """Each point stops at the update where it stops alone (``mlp_fast``), with the same
    best update, validation log and best weights; the points stop at different updates,
    so two are retired while the third trains on."""
    stops = []
    for (T, seed), got in zip(SCAN, batched_results, strict=True):
        config = TrainConfig(engine="mlp_fast", **TRAIN)
        ref = train_scan_point(*splits, T, seed, latents=K, config=config, **ARCH)
        assert (got.stop_reason, got.updates_run, got.best_update) == (
            ref.stop_reason,
            ref.updates_run,
            ref.best_update,
        )
        assert got.log["update"].equals(ref.log["update"])
        for col in ("train_loss", "val_loss", "val_distortion", "val_rate"):
            assert relative(got.log[col].to_numpy(), ref.log[col].to_numpy()) < TOL, (T, col)
        assert got.best_val_loss == pytest.approx(ref.best_val_loss, rel=TOL, abs=0)
        assert got.beta == ref.beta and got.engine == "batched" and isinstance(got.model, MLPVAE)
        assert got.model.spec() == ref.model.spec()
        sg, sr = got.model.state_dict(), ref.model.state_dict()
        assert max(relative(sg[k], sr[k]) for k in sr) < TOL, T
        stops.append(got.updates_run)
    assert all(r.stop_reason == "early_stopping" for r in batched_results)
    assert len(set(stops)) == len(stops), f"points stop together {stops}: retiring untested"


def test_resume_is_bit_identical(splits, batched_results, tmp_path):
    """A batch run with a checkpoint file leaves its last checkpoint (update 1500, two
    points already stopped); a rerun resumes from it and ends exactly as the run without
    checkpoints: logs, stops and best weights bit for bit."""
    ckpt = tmp_path / "batch.ckpt"
    cfg = TrainConfig(checkpoint_every=500, **TRAIN)
    first = train_scan_points_batched(*splits, SCAN, latents=K, config=cfg, checkpoint=ckpt, **ARCH)
    state = torch.load(ckpt, weights_only=False)
    assert 0 < state["update"] < max(r.updates_run for r in first)
    assert len(state["engine"]["active"]) < len(SCAN), "no point had stopped: not exercised"
    assert all(ident["kind"] == "mlp" for ident in state["identity"]["batch"])
    again = train_scan_points_batched(*splits, SCAN, latents=K, config=cfg, checkpoint=ckpt, **ARCH)
    cols = ["update", "train_loss", "val_loss", "val_distortion", "val_rate"]
    for ref, a, b in zip(batched_results, first, again, strict=True):
        for r in (a, b):
            assert (r.updates_run, r.best_update, r.stop_reason, r.best_val_loss) == (
                ref.updates_run,
                ref.best_update,
                ref.stop_reason,
                ref.best_val_loss,
            )
            assert r.log[cols].equals(ref.log[cols])
            sr, sg = ref.model.state_dict(), r.model.state_dict()
            assert all(torch.equal(sr[k], sg[k]) for k in sr)
    assert state["update"] in [r.resumed_from for r in again]
    # the checkpoint belongs to its architecture: another activation is refused
    other = dict(arch=Architecture("mlp", tuple(HIDDEN), "gelu"))
    with pytest.raises(InputError, match="belongs to another training"):
        train_scan_points_batched(*splits, SCAN, latents=K, config=cfg, checkpoint=ckpt, **other)


def test_registered_engine_is_a_batch_of_one(splits):
    """``training.engine: batched`` with model.kind mlp through the unchanged trainer: a
    batch of one point that follows ``mlp_fast`` (the validation log to TOL)."""
    cfg = dict(max_updates=300, eval_every=100, patience=10_000, dtype="float64", device="cpu")
    runs = {
        name: train_scan_point(
            *splits, 0.05, 3, latents=K, config=TrainConfig(engine=name, **cfg), **ARCH
        )
        for name in ("batched", "mlp_fast")
    }
    a, b = runs["batched"], runs["mlp_fast"]
    assert a.engine == "batched" and len(a.log) == 3
    assert relative(a.log["val_loss"].to_numpy(), b.log["val_loss"].to_numpy()) < TOL


def test_batched_trains_both_families_and_auto_never_picks_it():
    """The registry's kinds of ``batched`` are the families it has an engine for; ``auto``
    picks a per-point engine for either family on any device, never ``batched`` (a
    point's result would then depend on the points it shares a job with)."""
    assert ENGINES["batched"].kinds == tuple(FAMILY_ENGINES) == ("linear", "mlp")
    for device in (torch.device("cpu"), torch.device("cuda")):
        for kind in ("linear", "mlp"):
            assert resolve_engine("batched", device, kind) == "batched"
            assert resolve_engine("auto", device, kind) != "batched"


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(hidden=[16, 8]), "point 1 has model architecture"),
        (dict(activation="relu"), "point 1 has model architecture"),
        (dict(kind="linear"), "point 1 has model.kind 'linear', point 0 'mlp'"),
        (dict(batch_size=32), "point 1 has batch_size 32, point 0 64"),
    ],
)
def test_points_that_cannot_share_a_batch(splits, change, match):
    other = problem(splits, 0.1, 1)
    g = torch.Generator().manual_seed(1)
    if "kind" in change:
        other = dataclasses.replace(other, model=LinearVAE(5, K, generator=g, dtype=torch.float64))
    elif "batch_size" in change:
        other = dataclasses.replace(other, **change)
    else:
        arch = {"hidden": list(HIDDEN), "activation": "gelu", **change}
        model = MLPVAE(5, K, generator=g, dtype=torch.float64, **arch)
        other = dataclasses.replace(other, model=model)
    with pytest.raises(InputError, match=match):
        batched_engine([problem(splits, 0.1, 0), other])


def test_bad_batched_input(splits):
    with pytest.raises(InputError, match="cuda_graphs needs a CUDA device"):
        batched_engine([problem(splits, 0.1, 0)], cuda_graphs=True)
    with pytest.raises(InputError, match="no scan points"):
        batched_engine([])
    with pytest.raises(InputError, match="model.activation = 'swish'"):
        train_scan_points_batched(
            *splits, SCAN, latents=K, arch=Architecture("mlp", tuple(HIDDEN), "swish")
        )
    with pytest.raises(InputError, match="training.average = 'ema'"):
        config = TrainConfig(average="ema")
        train_scan_points_batched(*splits, SCAN, latents=K, config=config, **ARCH)
