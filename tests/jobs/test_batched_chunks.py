"""A chunk job with ``training.engine: batched`` (issue 14): its points left to train are
trained together as one batched model, then each is measured and written as after a
training of its own; one batch checkpoint, a bit-identical resume, finished points kept.

Oracles:
- three one-point jobs with the ``fast`` engine, the per-point engine the batched one
  follows (tests/training/test_batched_engine.py). In float64 the two differ only in the order the
  batched products sum (~1e-16 relative per update); 2000 Adam updates amplify that by far
  less than 1e6, and the observables are smooth functions of the weights on this
  well-conditioned data (eigenvalues 0.5..0.05, no latent near its threshold), so every
  number of a scan point agrees to TOL = 1e-10 relative to the largest of its kind. A point
  trained with another point's seed or temperature differs by O(1e-2).
- the same chunk never interrupted, for the resume: on the CPU the batched training is
  deterministic, so the files must agree bit for bit (the wall times aside).
Signals are sent at a known update (the test-only pause, ``checkpoint.PAUSE_ENV``).
"""

import os
import signal
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from collapse_spectroscopy.config import settings
from collapse_spectroscopy.jobs import train_job
from collapse_spectroscopy.jobs.points import PointFiles, batch_checkpoint
from collapse_spectroscopy.jobs.train_job import train_points
from collapse_spectroscopy.store import scanfile
from collapse_spectroscopy.training.checkpoint import PAUSE_ENV
from pause_helpers import TRAIN_CLI, pausable_training, wait_paused
from synthetic_gaussian import gaussian_prepared
from test_chunks import assert_clean, assert_same_point, checkpoint_update

EVAL_EVERY, CHECKPOINT_EVERY, MAX_UPDATES = 250, 500, 2000
PAUSE_AT = 1250  # between the checkpoints at 1000 and 1500
POINTS = [(0.05, 2, "a"), (0.02, 1, "b"), (0.1, 0, "c")]  # not in scan order
TOL = 1e-10
LATENTS = 6
EVAL_SPLIT = settings.section_defaults("training")["eval_split"]
SIGMA2 = settings.section_defaults("model")["sigma2"]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    path = tmp_path_factory.mktemp("batched_chunks") / "prepared.npz"
    gaussian_prepared([0.5, 0.3, 0.15, 0.05, 0.0], sizes=(4000, 1000, 1000), seed=4).save(path)
    return path


def training(engine, **extra):
    options = dict(
        max_updates=MAX_UPDATES,
        patience=500,  # the points stop at 2000, 1750 and 1500 (a, b, c)
        learning_rate=1e-2,
        eval_every=EVAL_EVERY,
        checkpoint_every=CHECKPOINT_EVERY,
        engine=engine,
        device="cpu",
        progress=False,
    )
    return {**options, **extra}


def run_job(prepared, folder, engine, names=None, **extra):
    """``train_points`` on the chunk's points (``names``: a subset, e.g. one point); the
    report lines, as the CLI prints them."""
    points = [
        PointFiles.of(t, s, folder / f"{n}.nc") for t, s, n in POINTS if n in (names or "abc")
    ]
    lines = []
    train_points(
        points,
        data=prepared,
        latents=LATENTS,
        sigma2=SIGMA2,
        training=training(engine, **extra),
        eval_split=EVAL_SPLIT,
        report=lambda p, r: lines.append(f"{p.label}: {r.summary_line() if r else 'kept'}"),
    )
    return lines


@pytest.fixture(scope="module")
def fast_alone(prepared, tmp_path_factory):
    """Each point trained by a job of its own with the fast engine, in float64."""
    folder = tmp_path_factory.mktemp("fast_alone")
    for _, _, name in POINTS:
        run_job(prepared, folder, "fast", names=name, dtype="float64")
    return folder


def assert_close_point(ref, got, tol=TOL):
    """Every number of the scan point, the weights and the training log to ``tol``,
    relative to the largest magnitude of its kind; the same update counts and stops."""

    def close(a, b, what):
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        assert a.shape == b.shape, what
        assert np.array_equal(np.isnan(a), np.isnan(b)), what
        ok = ~np.isnan(a)
        scale = max(np.abs(a[ok]).max(initial=0.0), 1e-300)
        gap = np.abs(a[ok] - b[ok]).max(initial=0.0)
        assert gap <= tol * scale, f"{what}: differs by {gap:.3g} (scale {scale:.3g})"

    da, db = scanfile.read(ref.with_suffix(".nc")), scanfile.read(got.with_suffix(".nc"))
    assert set(da.data_vars) == set(db.data_vars)
    for name in da.data_vars:
        if name != "elapsed_s" and da[name].dtype.kind in "fiu":
            close(da[name].values, db[name].values, name)
        elif name != "elapsed_s":
            assert np.array_equal(da[name].values, db[name].values), name
    wa, wb = (torch.load(p.with_suffix(".pt"), weights_only=False) for p in (ref, got))
    for k in wa["state_dict"]:
        close(wa["state_dict"][k].numpy(), wb["state_dict"][k].numpy(), f"weights {k}")
    la, lb = (pd.read_csv(p.with_suffix(".log.csv")) for p in (ref, got))
    assert la["update"].equals(lb["update"])  # the same windows and the same stop
    for col in ("train_loss", "val_loss", "val_distortion", "val_rate"):
        close(la[col], lb[col], f"log {col}")


@pytest.fixture(scope="module")
def batched_chunk(prepared, tmp_path_factory):
    """The three points as one chunk job with the batched engine, in float64."""
    folder = tmp_path_factory.mktemp("batched_chunk")
    return folder, run_job(prepared, folder, "batched", dtype="float64")


def test_a_batched_chunk_follows_three_fast_jobs(batched_chunk, fast_alone):
    folder, lines = batched_chunk
    assert len(lines) == 3 and all("[batched]" in line for line in lines), lines
    updates = []
    for t, s, name in POINTS:
        assert_close_point(fast_alone / name, folder / name)
        updates.append(int(scanfile.read(folder / f"{name}.nc")["updates_run"].values))
        assert f"T={t:g}, seed={s}: trained" in "\n".join(lines)
    assert len(set(updates)) > 1, f"every point ran {updates}: retiring a point untested"
    assert_clean(folder)


def test_another_points_training_is_caught(batched_chunk, fast_alone):
    """The comparison above is not vacuous: point b's files against point a's oracle."""
    with pytest.raises(AssertionError):
        assert_close_point(fast_alone / "a", batched_chunk[0] / "b")


class Killed(BaseException):
    """Stands for SIGKILL while a point is written (nothing after it runs)."""


def test_a_rerun_keeps_the_written_points_and_retrains_the_rest(
    prepared, fast_alone, tmp_path, monkeypatch
):
    """A batched chunk killed while writing its second point: the rerun keeps the first
    (not retrained: the same inode), deletes the checkpoint of the three points (it belongs
    to another training now) and trains the two left, as a batch, to the oracle."""
    measure_and_write = train_job.measure_and_write
    calls = []

    def dies_at_the_second(point, *args):
        calls.append(point.label)
        if len(calls) == 2:
            raise Killed
        measure_and_write(point, *args)

    monkeypatch.setattr(train_job, "measure_and_write", dies_at_the_second)
    with pytest.raises(Killed):
        run_job(prepared, tmp_path, "batched", dtype="float64")
    monkeypatch.undo()
    a = tmp_path / "a.nc"
    ckpt = batch_checkpoint([PointFiles.of(*POINTS[0][:2], a)])
    assert ckpt.is_file() and not (tmp_path / "b.nc").exists()
    inode = a.with_suffix(".pt").stat().st_ino
    a.unlink()  # Snakemake deletes a failed job's outputs before the rerun

    lines = run_job(prepared, tmp_path, "batched", dtype="float64")
    assert lines[0] == "T=0.05, seed=2: kept", lines
    assert a.with_suffix(".pt").stat().st_ino == inode
    for _, _, name in POINTS[1:]:
        assert_close_point(fast_alone / name, tmp_path / name)
    assert_close_point(fast_alone / "a", a)
    assert_clean(tmp_path)


def test_a_foreign_checkpoint_is_deleted_and_said(prepared, tmp_path, capsys):
    """The rerun's log names the checkpoint it deleted."""
    ckpt = batch_checkpoint([PointFiles.of(*POINTS[0][:2], tmp_path / "a.nc")])
    torch.save({"identity": {"batch": [{"T": 0.05}]}, "update": 500}, ckpt)  # one point's
    run_job(prepared, tmp_path, "batched", max_updates=500)
    out = capsys.readouterr().out
    assert f"checkpoint {str(ckpt)!r} belongs to another training (1 points, not these 3)" in out
    assert "deleted; training the 3 points left afresh" in out
    assert_clean(tmp_path)


def chunk_cmd(prepared, folder):
    # pausable_training's 6 latents are LATENTS; every point trains to the end
    cmd = TRAIN_CLI + pausable_training(
        prepared, MAX_UPDATES, EVAL_EVERY, CHECKPOINT_EVERY, engine="batched"
    )
    for t, s, name in POINTS:
        cmd += ["--point", str(t), str(s), str(folder / f"{name}.nc")]
    return cmd


@pytest.mark.slow
def test_an_interrupted_batched_chunk_resumes_bit_identically(prepared, tmp_path):
    """Through the CLI (float32): SIGUSR1 at update 1250 writes the batch checkpoint there
    and exits 4 with no point written; the rerun resumes and writes what a chunk never
    interrupted writes, bit for bit."""
    whole = tmp_path / "whole"
    whole.mkdir()
    subprocess.run(chunk_cmd(prepared, whole), check=True, capture_output=True)
    out = tmp_path / "out"
    out.mkdir()
    cmd = chunk_cmd(prepared, out)
    ckpt = batch_checkpoint([PointFiles.of(*POINTS[0][:2], out / "a.nc")])
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, PAUSE_ENV: str(PAUSE_AT)},
    )
    wait_paused(proc, ckpt, PAUSE_AT)
    proc.send_signal(signal.SIGUSR1)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 4, err
    assert "interrupted" in err and str(ckpt) in err
    assert checkpoint_update(ckpt) == PAUSE_AT
    assert not list(out.glob("*.nc"))

    rerun = subprocess.run(cmd, check=True, capture_output=True, text=True)
    assert rerun.stdout.count(f"resumed from a checkpoint at update {PAUSE_AT}") == 3
    for _, _, name in POINTS:
        assert_same_point(whole / name, out / name)
    assert_clean(out)


UNUSED_BY_TRAIN = ("collapse_spectroscopy.datasets", "matplotlib", "rasterio", "scipy.optimize")
PROBE = """
import sys
from collapse_spectroscopy.cli import main
try:
    status = main(sys.argv[1:])
except SystemExit as exc:  # --help
    status = exc.code
loaded = [m for m in sys.modules if m == "torch" or any(m.startswith(n) for n in {names})]
print(status, sorted(loaded))
"""


def test_train_imports_only_what_it_uses(prepared, tmp_path):
    """Start-up (issue 14): ``train --help`` loads neither torch nor the datasets package;
    a real job loads torch (its models) but not the datasets package, matplotlib, rasterio
    or the fits' scipy.optimize."""
    probe = [sys.executable, "-c", PROBE.format(names=UNUSED_BY_TRAIN)]
    out = subprocess.run([*probe, "train", "--help"], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines()[-1] == "0 []", out.stdout[-300:]
    job = ["train", "--data", str(prepared), "-T", "0.1", "--out", str(tmp_path / "p.nc")]
    job += ["--max-updates", "10", "--eval-every", "5", "--engine", "fast"]
    out = subprocess.run([*probe, *job], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines()[-1] == "0 ['torch']", out.stdout
