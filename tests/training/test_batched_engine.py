"""The batched engine: P scan points as one batched model follow, point by point, the
per-point ``fast`` engine's trajectory (same batches and noise), stop early where it does,
and resume bit for bit (issue 14; docs/science.md §5).

Oracle: ``FastEngine`` (itself checked against autograd + ``torch.optim.Adam`` in
tests/training/test_training.py) run on each point alone. Tolerance 1e-10 in float64: the two
differ only in the order in which the batched products sum (relative rounding ~1e-16
per update), which a few hundred Adam updates amplify by far less than 1e6; a point fed
another point's noise or batches is off by O(1e-3) after the first update.
"""

import numpy as np
import pytest
import torch

from collapse_spectroscopy.errors import InputError, TrainingError
from collapse_spectroscopy.models.linear import LinearVAE, expected_loss
from collapse_spectroscopy.training.batched import train_batch, train_scan_points_batched
from collapse_spectroscopy.training.checkpoint import load as load_checkpoint
from collapse_spectroscopy.training.engines import batched as batched_module
from collapse_spectroscopy.training.engines.base import TrainingProblem
from collapse_spectroscopy.training.engines.batched import BatchedEngine
from collapse_spectroscopy.training.engines.torch_engines import FastEngine
from collapse_spectroscopy.training.scan_point import TrainConfig, train_scan_point
from synthetic_gaussian import gaussian_splits

SPECTRUM = [0.5, 0.3, 0.15, 0.05]
K, BATCH = 5, 128  # 3000 samples: 23 full batches and one of 56 per epoch
POINTS = [(0.4, 0), (0.05, 1), (2.0, 2)]  # (beta, seed): other temperatures and seeds
TOL = 1e-10


@pytest.fixture(scope="module")
def splits():
    xtr, xva, _, _, _ = gaussian_splits(SPECTRUM, sizes=(3000, 1000, 1000), seed=1)
    return xtr, xva


def problem(splits, beta, seed, *, noise_seed=None, scale=1.0):
    model = LinearVAE(4, K, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    with torch.no_grad():
        for w in model.parameters():
            w.mul_(scale)
    return TrainingProblem(
        model=model,
        x_train=splits[0],
        x_val=splits[1],
        beta=beta,
        sigma2=1.0,
        learning_rate=1e-3,
        batch_size=BATCH,
        shuffle_seed=100 + seed,
        noise_seed=200 + seed if noise_seed is None else noise_seed,
    )


WINDOWS = [100, 37, 163]  # 300 updates, ~12.5 epochs; windows end mid-epoch


def run_batch(batch):
    return np.concatenate([batch.run_window(n) for n in WINDOWS], axis=1)


def run_fast(splits, beta, seed):
    engine = FastEngine(problem(splits, beta, seed))
    # copies: on the CPU FastEngine returns a view of a buffer its next window reuses
    return engine, np.concatenate([engine.run_window(n).copy() for n in WINDOWS])


def assert_follows_fast(splits, batch, losses):
    """Each point of ``batch`` (after :func:`run_batch`) against FastEngine alone: the
    loss of every update, the weights and the validation loss, to TOL."""
    val = batch.validation_losses()
    for i, (beta, seed) in enumerate(POINTS):
        fast, ref = run_fast(splits, beta, seed)
        np.testing.assert_allclose(losses[i], ref, rtol=TOL, atol=0, err_msg=f"point {i}")
        scale = fast.p.abs().max().item()
        gap = (batch.point_state(i)["p"] - fast.p).abs().max().item()
        assert gap <= TOL * scale, f"point {i}: weights differ by {gap:.3g}"
        np.testing.assert_allclose(val[i], fast.validation_loss(), rtol=TOL, atol=0)


def test_trajectories_equal_the_per_point_fast_engine(splits):
    """P = 3 points, other temperatures and seeds, 300 updates over 12 epochs (short last
    batches included), in windows that end mid-epoch."""
    batch = BatchedEngine([problem(splits, b, s) for b, s in POINTS])
    losses = run_batch(batch)
    assert losses.shape == (3, 300) and np.all(np.isfinite(losses))
    assert_follows_fast(splits, batch, losses)


def test_another_points_noise_is_caught(splits):
    """The check above is not vacuous: point 1 fed point 0's noise fails it."""
    problems = [problem(splits, b, s) for b, s in POINTS]
    problems[1] = problem(splits, *POINTS[1], noise_seed=problems[0].noise_seed)
    batch = BatchedEngine(problems)
    with pytest.raises(AssertionError, match="point 1"):
        assert_follows_fast(splits, batch, run_batch(batch))


def test_a_retired_point_leaves_the_others_unchanged(splits):
    """Retiring point 1 after 137 updates freezes it; points 0 and 2 run on as alone."""
    batch = BatchedEngine([problem(splits, b, s) for b, s in POINTS])
    first = np.concatenate([batch.run_window(100), batch.run_window(37)], axis=1)
    frozen = batch.point_state(1)
    batch.retire(1)
    assert batch.active == [0, 2]
    rest = batch.run_window(163)
    assert rest.shape == (2, 163)
    for row, i in enumerate((0, 2)):
        _, ref = run_fast(splits, *POINTS[i])
        got = np.concatenate([first[i], rest[row]])
        np.testing.assert_allclose(got, ref, rtol=TOL, atol=0)
    assert torch.equal(batch.point_state(1)["p"], frozen["p"])
    assert batch.point_state(1)["t"] == 137 and batch.t == 300


def test_validation_is_the_exact_expected_loss(splits, monkeypatch):
    """The batched validation pass, cut into many chunks, against model.expected_loss."""
    monkeypatch.setattr(batched_module, "_VALIDATION_VALUES", 3 * (2 * K + 4) * 77)
    batch = BatchedEngine([problem(splits, b, s) for b, s in POINTS])
    batch.run_window(50)
    x_val = torch.as_tensor(splits[1], dtype=torch.float64)
    for i, (beta, _) in enumerate(POINTS):
        ref = expected_loss(batch.sync_point(i), x_val, beta, 1.0)
        np.testing.assert_allclose(batch.validation_losses()[i], ref, rtol=1e-12, atol=0)


def test_state_round_trip_is_bit_identical(splits):
    """A batch loaded from another's mid-epoch state (one point retired) continues on the
    very same trajectory; the state is a snapshot."""
    a = BatchedEngine([problem(splits, b, s) for b, s in POINTS])
    a.run_window(37)
    a.retire(2)
    a.run_window(10)
    state = a.state_dict()
    b = BatchedEngine([problem(splits, b, s + 7) for b, s in POINTS])  # other weights
    b.load_state_dict(state)
    la, lb = a.run_window(60), b.run_window(60)
    assert b.active == [0, 1] and np.array_equal(la, lb)
    for i in range(3):
        assert torch.equal(a.point_state(i)["p"], b.point_state(i)["p"]), i
    c = BatchedEngine([problem(splits, b, s + 9) for b, s in POINTS])
    c.load_state_dict(state)  # taken 60 updates ago, unchanged by them
    assert np.array_equal(c.run_window(60), lb)


TRAIN = dict(
    max_updates=3000,
    eval_every=50,
    patience=200,
    learning_rate=3e-3,
    dtype="float64",
    device="cpu",
    progress=False,
)
SCAN = [(0.2, 0), (0.02, 1), (0.5, 2)]  # (T, seed)


@pytest.fixture(scope="module")
def batched_results(splits):
    return train_scan_points_batched(*splits, SCAN, latents=K, config=TrainConfig(**TRAIN))


def test_early_stopping_per_point_equals_train_scan_point(splits, batched_results):
    """Each point stops at the update where it stops alone (the ``fast`` engine), with the
    same best update and best weights; the points stop at different updates."""
    stops = []
    for (T, seed), got in zip(SCAN, batched_results, strict=True):
        ref = train_scan_point(
            *splits, T, seed, latents=K, config=TrainConfig(engine="fast", **TRAIN)
        )
        assert (got.stop_reason, got.updates_run, got.best_update) == (
            ref.stop_reason,
            ref.updates_run,
            ref.best_update,
        )
        np.testing.assert_allclose(got.log["val_loss"], ref.log["val_loss"], rtol=TOL, atol=0)
        assert got.best_val_loss == pytest.approx(ref.best_val_loss, rel=TOL, abs=0)
        assert got.beta == ref.beta and got.engine == "batched"
        pg, pr = got.model.numpy_params(), ref.model.numpy_params()
        for name in pg:
            gap = np.abs(pg[name] - pr[name]).max()
            assert gap <= TOL * np.abs(pr[name]).max(), (T, name, gap)
        stops.append(got.updates_run)
    assert any(r.stop_reason == "early_stopping" for r in batched_results)
    assert len(set(stops)) == len(stops), f"points stop together {stops}: retiring untested"


def test_resume_is_bit_identical(splits, batched_results, tmp_path):
    """A batch run with a checkpoint file leaves its last checkpoint (update 1000, one
    point already stopped); a rerun resumes from it and ends exactly as the run without
    checkpoints."""
    ckpt = tmp_path / "batch.ckpt"
    cfg = TrainConfig(checkpoint_every=500, **TRAIN)
    first = train_scan_points_batched(*splits, SCAN, latents=K, config=cfg, checkpoint=ckpt)
    state = torch.load(ckpt, weights_only=False)
    assert 0 < state["update"] < max(r.updates_run for r in first)
    assert len(state["engine"]["active"]) < len(SCAN), "no point had stopped: not exercised"
    again = train_scan_points_batched(*splits, SCAN, latents=K, config=cfg, checkpoint=ckpt)
    for ref, a, b in zip(batched_results, first, again, strict=True):
        for r in (a, b):
            assert (r.updates_run, r.best_update, r.stop_reason, r.best_val_loss) == (
                ref.updates_run,
                ref.best_update,
                ref.stop_reason,
                ref.best_val_loss,
            )
            cols = ["update", "train_loss", "val_loss", "val_distortion", "val_rate"]
            assert r.log[cols].equals(ref.log[cols])
            pr, pg = ref.model.numpy_params(), r.model.numpy_params()
            assert all(np.array_equal(pr[k], pg[k]) for k in pr)
    resumed = [r.resumed_from for r in again]
    assert state["update"] in resumed, resumed
    # a checkpoint belongs to its batch: other points are refused with one line
    with pytest.raises(InputError, match="belongs to another training"):
        train_scan_points_batched(*splits, SCAN[:2], latents=K, config=cfg, checkpoint=ckpt)
    assert load_checkpoint(ckpt, state["identity"]) is not None


def test_a_non_finite_point_is_named_or_retired(splits):
    """Point 1 starts with huge weights (its loss overflows): by default the error names it
    and the update; with keep_going it is retired and the others train on unchanged."""

    def make():  # new models: training writes its weights into the models
        scales = [1.0, 1e200, 1.0]
        pairs = zip(POINTS, scales, strict=True)
        return BatchedEngine([problem(splits, *p, scale=a) for p, a in pairs])

    cfg = TrainConfig(max_updates=300, eval_every=100, patience=10_000, progress=False)
    labels = [f"point {i}" for i in range(3)]
    ids = [{"point": i} for i in range(3)]
    with pytest.raises(TrainingError, match=r"at point 1, update 1\b"):
        train_batch(make(), cfg, labels=labels, identities=ids)
    batch = make()
    runs = train_batch(batch, cfg, labels=labels, identities=ids, keep_going=True)
    assert isinstance(runs[1], TrainingError) and "point 1, update 1" in str(runs[1])
    for i in (0, 2):
        fast, ref = run_fast(splits, *POINTS[i])
        assert runs[i].update == 300
        gap = (batch.point_state(i)["p"] - fast.p).abs().max().item()
        assert gap <= TOL * fast.p.abs().max().item(), i


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(batch_size=64), "point 1 has batch_size 64, point 0 128"),
        (dict(sigma2=2.0), "point 1 has sigma2 2.0"),
        (dict(x_train="other"), "point 1 has another x_train"),
    ],
)
def test_points_that_cannot_share_a_batch(splits, change, match):
    import dataclasses

    other = problem(splits, 0.1, 1)
    if change.get("x_train") == "other":
        change = dict(x_train=splits[0][::-1].copy())
    with pytest.raises(InputError, match=match):
        BatchedEngine([problem(splits, 0.1, 0), dataclasses.replace(other, **change)])


def test_bad_scan_input(splits):
    with pytest.raises(InputError, match="training.engine = 'numba'"):
        train_scan_points_batched(*splits, SCAN, config=TrainConfig(engine="numba"))
    with pytest.raises(InputError, match="no scan points"):
        train_scan_points_batched(*splits, [])
    with pytest.raises(InputError, match="training.average = 'ema'"):
        train_scan_points_batched(*splits, SCAN, config=TrainConfig(average="ema"))
    with pytest.raises(InputError, match="temperature T = -1"):
        train_scan_points_batched(*splits, [(0.1, 0), (-1.0, 1)])
    with pytest.raises(InputError, match="cuda_graphs needs a CUDA device"):
        BatchedEngine([problem(splits, 0.1, 0)], cuda_graphs=True)


def test_registered_engine_is_a_batch_of_one(splits):
    """``training.engine: batched`` through the unchanged trainer: a batch of one point
    that follows ``fast`` (validation losses of every window to TOL)."""
    cfg = dict(max_updates=300, eval_every=100, patience=10_000, dtype="float64", device="cpu")
    a = train_scan_point(*splits, 0.05, 3, latents=K, config=TrainConfig(engine="batched", **cfg))
    b = train_scan_point(*splits, 0.05, 3, latents=K, config=TrainConfig(engine="fast", **cfg))
    assert a.engine == "batched" and len(a.log) == 3
    np.testing.assert_allclose(a.log["val_loss"], b.log["val_loss"], rtol=TOL, atol=0)


def test_each_point_of_a_batch_is_checked_for_loss_spikes(splits, monkeypatch):
    """The batch's trainer hands every point's window to the loss-spike check
    (docs/science.md §7b), with that point's run, as the single-point trainer does."""
    from collapse_spectroscopy.training import protocol

    seen = []
    real = protocol.report_spike

    def spy(losses, run, label):
        seen.append((label, run.update, losses.size))
        real(losses, run, label)

    monkeypatch.setattr(protocol, "report_spike", spy)
    cfg = TrainConfig(**{**TRAIN, "max_updates": 600, "eval_every": 200, "patience": 10**6})
    results = train_scan_points_batched(*splits, SCAN, latents=K, config=cfg)
    windows = {(label, u) for label, u, n in seen if n == 200}
    assert len(windows) == len(seen) == sum(r.log.shape[0] for r in results)
    assert len(seen) == 3 * len(SCAN) and {u for _, u in windows} == {200, 400, 600}
