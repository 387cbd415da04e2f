"""Continuation starts (``scan.start: continuation``; docs/science.md §5.8): a chain job.

Oracles:

- **A chain job is a row of single jobs.** The points of a job given ``--chain`` must write
  exactly what separate one-point jobs write when each is handed its predecessor's weights
  with ``--start-from`` (the path the workflow takes with ``points_per_job: 1``). On the
  CPU training is deterministic, so the files agree bit for bit.
- **The start is the predecessor's weights.** A chained point differs from the same point
  started at random (else the chain did nothing), and its first logged validation loss
  is the one of the predecessor's saved weights evaluated at the point's own beta, as an
  independent computation (the closed-form expected loss of :mod:`.models.linear`) says.
- **A killed chain resumes bit-identically**, the signal sent at a known update (the
  test-only pause), never after a sleep.
"""

import itertools
import json
import os
import signal
import subprocess

import numpy as np
import pandas as pd
import pytest
import torch

from collapse_spectroscopy.analysis.temperature import temperature_to_beta, total_variance
from collapse_spectroscopy.config.checks import check_config
from collapse_spectroscopy.errors import InputError
from collapse_spectroscopy.jobs.points import PointFiles
from collapse_spectroscopy.jobs.train_job import train_points
from collapse_spectroscopy.models.linear import LinearVAE, expected_loss
from collapse_spectroscopy.store.prepared import load_prepared
from collapse_spectroscopy.training.checkpoint import PAUSE_ENV
from collapse_spectroscopy.training.scan_point import TrainConfig, train_scan_point
from pause_helpers import TRAIN_CLI, pausable_training, wait_paused
from synthetic_gaussian import gaussian_prepared
from workflow_helpers import ROOT, SNAKEMAKE, tiny_config, workdir

EVAL_EVERY, CHECKPOINT_EVERY, MAX_UPDATES = 250, 500, 1500
PAUSE_AT = 750  # between the checkpoints at 500 and 1000
# a chain cold to warm, as the workflow orders it by default
CHAIN = [(0.01, 3, "a"), (0.03, 3, "b"), (0.1, 3, "c")]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    path = tmp_path_factory.mktemp("chain") / "prepared.npz"
    gaussian_prepared([0.5, 0.3, 0.15, 0.05, 0.0], sizes=(4000, 1000, 1000), seed=5).save(path)
    return path


def options(prepared):
    return pausable_training(prepared, MAX_UPDATES, EVAL_EVERY, CHECKPOINT_EVERY)


def chain_cmd(prepared, folder):
    points = [a for t, s, n in CHAIN for a in ("--point", str(t), str(s), str(folder / f"{n}.nc"))]
    return [*TRAIN_CLI, *options(prepared), "--chain", *points]


def single_cmd(prepared, folder, t, s, name, start=None):
    cmd = [*TRAIN_CLI, *options(prepared), "-T", str(t), "--seed", str(s)]
    cmd += ["--out", str(folder / f"{name}.nc")]
    return cmd + (["--chain", "--start-from", str(start)] if start else [])


@pytest.fixture(scope="module")
def singles(prepared, tmp_path_factory):
    """The chain as one job per point, each started from its predecessor's .pt."""
    folder = tmp_path_factory.mktemp("singles")
    before = None
    for t, s, name in CHAIN:
        subprocess.run(single_cmd(prepared, folder, t, s, name, before), check=True)
        before = folder / f"{name}.pt"
    return folder


def weights(path):
    return torch.load(path.with_suffix(".pt"), weights_only=False)["state_dict"]


def assert_same_files(a, b):
    """Equal points: the weights, and the training log but its wall-time column."""
    wa, wb = weights(a), weights(b)
    assert all(torch.equal(wa[n], wb[n]) for n in wa), "weights"
    la, lb = (pd.read_csv(p.with_suffix(".log.csv")) for p in (a, b))
    assert la.drop(columns="elapsed_s").equals(lb.drop(columns="elapsed_s"))


@pytest.mark.slow
def test_a_chain_job_writes_what_single_jobs_started_from_their_predecessor_write(
    prepared, singles, tmp_path
):
    subprocess.run(chain_cmd(prepared, tmp_path), check=True, capture_output=True)
    for _, _, name in CHAIN:
        assert_same_files(singles / name, tmp_path / name)


def test_a_chained_point_starts_from_its_predecessors_weights(prepared, tmp_path):
    """The first validation pass of a chained point, after ``eval_every`` updates, lies
    close to the predecessor's weights' expected loss at the new beta, far closer than a
    random start's; and the chained point's weights are not the random start's."""
    ds = load_prepared(prepared)
    config = TrainConfig(max_updates=500, patience=30000, eval_every=1, engine="numba")
    first = train_scan_point(ds.x_train, ds.x_val, 0.01, 3, latents=6, config=config)
    start = first.model.state_dict()
    chained = train_scan_point(ds.x_train, ds.x_val, 0.03, 3, latents=6, config=config, start=start)
    fresh = train_scan_point(ds.x_train, ds.x_val, 0.03, 3, latents=6, config=config)
    # independent: the closed-form expected beta-VAE loss of the start weights at T = 0.03
    beta = temperature_to_beta(0.03, total_variance(ds.x_train), 1.0)
    model = LinearVAE(ds.x_train.shape[1], 6, dtype=torch.float64)
    model.load_state_dict({k: v.double() for k, v in start.items()})
    expected = expected_loss(model, torch.as_tensor(ds.x_val, dtype=torch.float64), beta)[0]
    # after one update of lr 1e-3 from the start, the loss has moved by O(lr) of itself;
    # a random start's first loss is O(1) away (its decoder has not learned the data yet)
    first_chained = chained.log["val_loss"].iloc[0]
    assert abs(first_chained - expected) < 0.05 * abs(expected)
    assert abs(fresh.log["val_loss"].iloc[0] - expected) > 0.2 * abs(expected)
    a, b = chained.model.state_dict(), fresh.model.state_dict()
    assert not all(torch.equal(a[n], b[n]) for n in a)


def test_a_checkpoint_of_another_start_is_not_resumed(prepared, tmp_path):
    """A checkpoint left by a point started from weights ``a`` resumes a run started from
    ``a``, and is refused, naming the checkpoint, by a run started from other weights."""
    ds = load_prepared(prepared)
    ckpt = tmp_path / "p.ckpt"
    config = TrainConfig(max_updates=400, patience=30000, eval_every=100, checkpoint_every=200)
    base = dict(latents=6, config=config, checkpoint=ckpt)
    a = train_scan_point(ds.x_train, ds.x_val, 0.02, 1, **base).model.state_dict()
    ckpt.unlink()
    b = {k: v * 0.5 for k, v in a.items()}
    # leaves its last checkpoint, at update 200 (none is written at the end)
    train_scan_point(ds.x_train, ds.x_val, 0.05, 1, **base, start=a)
    assert train_scan_point(ds.x_train, ds.x_val, 0.05, 1, **base, start=a).resumed_from == 200
    with pytest.raises(InputError, match="p.ckpt.*belongs to another training"):
        train_scan_point(ds.x_train, ds.x_val, 0.05, 1, **base, start=b)


def checkpoint_update(path):
    return torch.load(path, weights_only=False)["update"]


@pytest.mark.slow
def test_an_interrupted_chain_resumes_bit_identically(prepared, singles, tmp_path):
    """SIGUSR1 in the first point (exit 4); a rerun finishes it and is SIGKILLed in the
    second; the last rerun keeps the first, resumes the second from its checkpoint (with
    the same start) and trains the third from it: the files of the uninterrupted chain."""
    out = {name: tmp_path / f"{name}.nc" for _, _, name in CHAIN}
    ckpt = {name: p.with_suffix(".ckpt") for name, p in out.items()}
    env = {**os.environ, PAUSE_ENV: str(PAUSE_AT)}
    cmd = chain_cmd(prepared, tmp_path)

    def start():
        return subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )

    proc = start()
    wait_paused(proc, ckpt["a"], PAUSE_AT)
    proc.send_signal(signal.SIGUSR1)  # in a at its update 750: a checkpoint there, exit 4
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 4, err
    proc = start()  # a resumes past the pause and finishes; b stops at 750 and waits
    wait_paused(proc, ckpt["b"], PAUSE_AT)
    proc.send_signal(signal.SIGKILL)  # b's checkpoint at 500 is on disk
    proc.communicate()
    assert out["a"].is_file() and not out["b"].exists()
    assert checkpoint_update(ckpt["b"]) == 500
    out["a"].unlink()  # as Snakemake does before it reruns a job (weights and log stay)

    rerun = subprocess.run(cmd, check=True, capture_output=True, text=True)
    assert "T=0.01, seed=3: kept: written by an earlier run" in rerun.stdout
    assert "resumed from a checkpoint at update 500" in rerun.stdout
    for _, _, name in CHAIN:
        assert_same_files(singles / name, out[name])
    assert not list(tmp_path.glob("*.ckpt"))


def test_start_weights_without_a_chain_are_refused(prepared, tmp_path):
    point = PointFiles.of(0.05, 0, tmp_path / "p.nc")
    with pytest.raises(InputError, match="--start-from starts a chain"):
        train_points(
            [point],
            data=prepared,
            latents=6,
            sigma2=1.0,
            eval_split="test",
            start_from=tmp_path / "x.pt",
        )


def test_a_chain_is_not_trained_as_one_batch(prepared, tmp_path):
    points = [PointFiles.of(t, 0, tmp_path / f"{n}.nc") for t, _, n in CHAIN]
    with pytest.raises(InputError, match="training.engine = 'batched'.*continuation"):
        train_points(
            points,
            data=prepared,
            latents=6,
            sigma2=1.0,
            eval_split="test",
            training={"engine": "batched"},
            chain=True,
        )


def test_start_weights_of_another_model_name_both_shapes(prepared, tmp_path):
    ds = load_prepared(prepared)
    other = LinearVAE(ds.x_train.shape[1], 3).state_dict()  # 3 latents, the run has 6
    config = TrainConfig(max_updates=10, eval_every=5)
    with pytest.raises(InputError, match="start weights are another model's"):
        train_scan_point(ds.x_train, ds.x_val, 0.05, 0, latents=6, config=config, start=other)


def test_missing_start_weights_name_the_file(prepared, tmp_path):
    cmd = single_cmd(prepared, tmp_path, 0.05, 0, "p", start=tmp_path / "nowhere.pt")
    run = subprocess.run(cmd, capture_output=True, text=True)
    assert run.returncode != 0
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "nowhere.pt" in lines[0] and "do not exist" in lines[0]
    assert not (tmp_path / "p.nc").exists()


def snakemake(wd, *args, check=True):
    cmd = [*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(wd), "--cores", "2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, check=check)


@pytest.mark.slow
def test_the_workflow_trains_chains(tmp_path):
    """scan.start continuation, 3 temperatures, 2 seeds, jobs of 2 points: each seed's chain
    cold to warm in two jobs (4 in all), the second given the first's last .pt; every
    point is what a job of its own started from its predecessor's weights writes; a rerun
    has nothing to do."""
    temperatures = [0.02, 0.08, 0.3]
    config = tiny_config(temperatures)
    config["runs"]["tiny"]["scan"].update(seeds=[0, 1], start="continuation", points_per_job=2)
    wd = workdir(tmp_path / "wd", config)
    # the gathered scan only: the figures of a chained scan are the ordinary ones (the
    # sweep test below and tests/workflow draw them)
    proc = snakemake(wd, "results/tiny/scan.nc")
    assert proc.stderr.count("rule train_chunk_tiny_") == 4, proc.stderr
    res = wd / "results" / "tiny" / "scan"
    alone = tmp_path / "alone"
    alone.mkdir()
    run = ["--run-config", "results/tiny/config/train.json"]
    run += ["--data", "results/tiny/data/prepared.npz"]  # as the job names it
    for seed in (0, 1):
        before = None
        for t in temperatures:  # cold to warm
            out = alone / f"{t!r}-{seed}.nc"
            cmd = [*TRAIN_CLI, *run, "-T", str(t), "--seed", str(seed), "--out", str(out)]
            cmd += ["--chain", "--start-from", str(before)] if before else []
            subprocess.run(cmd, check=True, capture_output=True, cwd=wd)
            assert_same_files(out, res / f"T={t!r}" / f"seed={seed}.nc")
            before = out.with_suffix(".pt")
    dry = snakemake(wd, "-n", "results/tiny/scan.nc")
    assert "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout


def test_the_chains_of_a_scan():
    """scan_chains: a chain per seed, in T order (the labels compared as numbers), cut
    into consecutive jobs, each naming the chain's point before it."""
    from collapse_spectroscopy.jobs.chunks import scan_chains

    points = [(t, s) for t in ("0.1", "0.02", "1e-05") for s in (0, 1)]
    jobs = scan_chains(points, 2)
    assert [(j.points, j.start) for j in jobs] == [
        ([("1e-05", 0), ("0.02", 0)], None),
        ([("0.1", 0)], ("0.02", 0)),
        ([("1e-05", 1), ("0.02", 1)], None),
        ([("0.1", 1)], ("0.02", 1)),
    ]
    cooling = scan_chains(points, 3, cooling=True)
    assert [(j.points, j.start) for j in cooling] == [
        ([("0.1", 0), ("0.02", 0), ("1e-05", 0)], None),
        ([("0.1", 1), ("0.02", 1), ("1e-05", 1)], None),
    ]


def test_a_batched_chain_is_refused_before_any_job():
    config = tiny_config([0.1, 0.2], engine="batched")
    config["runs"]["tiny"]["scan"].update(start="continuation", points_per_job=2)
    with pytest.raises(InputError, match=r"runs.tiny.training.engine = 'batched'.*scan.start"):
        check_config(config)


@pytest.mark.slow
def test_a_sweep_trains_both_directions_and_measures_their_hysteresis(tmp_path):
    """scan.start sweep, one point per job: each warming job starts from the next colder
    point's weights in scan/, each cooling job from the next warmer one's in
    scan/cooling/; the spectra table gets both crossing thresholds and their ratio, the
    summary its block, and the figure is drawn."""
    temperatures = [0.02, 0.06, 0.2, 0.6]
    config = tiny_config(temperatures, max_updates=2000)
    config["runs"]["tiny"]["scan"].update(start="sweep", points_per_job=1)
    wd = workdir(tmp_path, config)
    plan = snakemake(wd, "-n", "-p").stdout
    labels = [repr(t) for t in temperatures]
    for folder, order in (("scan", labels), ("scan/cooling", labels[::-1])):
        for before, t in itertools.pairwise(order):
            point = f"--point {t} 0 results/tiny/{folder}/T={t}/seed=0.nc"
            start = f"--chain --start-from results/tiny/{folder}/T={before}/seed=0.pt"
            assert f"{point} {start}" in plan, (point, start)
        assert (
            f"--point {order[0]} 0 results/tiny/{folder}/T={order[0]}/seed=0.nc --chain --threads"
            in plan
        )
    # what a sweep adds, not Figs 1-4 (tests/workflow draws those)
    snakemake(wd, "results/tiny/figures/hysteresis.png", "results/tiny/summary.json")
    res = wd / "results" / "tiny"
    table = pd.read_csv(res / "spectra.csv")
    for name in ("crossing_threshold_warming", "crossing_threshold_cooling", "hysteresis"):
        assert name in table
    both = table.dropna(subset=["hysteresis"])
    assert len(both) >= 1
    ratio = both["crossing_threshold_warming"] / both["crossing_threshold_cooling"]
    np.testing.assert_allclose(both["hysteresis"], ratio, rtol=1e-9)  # the csv's 10 digits
    summary = json.loads((res / "summary.json").read_text())["hysteresis"]
    assert set(summary["ratio"]) == {str(r) for r in both["rank"]}
    # Dn*_k over both directions' points: the lower of the two directions' own minima
    # (this linear run selects on the evaluation split itself, so the minima are plain)
    warm, cool = table["best_distortion"], table["best_distortion_cooling"]
    np.testing.assert_array_equal(table["best_distortion_both_branches"], np.fmin(warm, cool))
    branch = summary["both_branches"]["branch_of_best"]
    for rank, w, c in zip(table["rank"], warm, cool, strict=True):
        if np.isfinite(w) or np.isfinite(c):
            cooler = c < w or (np.isnan(w) and np.isfinite(c))
            assert branch[str(rank)] == ("cooling" if cooler else "warming"), rank
    assert (res / "figures" / "hysteresis.png").stat().st_size > 10_000
    assert (res / "scan_cooling.nc").is_file()
