"""Resumable training: a job killed with SIGKILL between two checkpoints and rerun gives the
same scan point, bit for bit, as one that was never interrupted; SIGTERM/SIGUSR1 write a
checkpoint and exit 4 (issue 5).

Every signal is sent at a known update, never after a sleep (a sleep races the job, which
may finish first): the test-only setting ``checkpoint.PAUSE_ENV`` stops the job at the
end of the window that reaches ``PAUSE_AT`` and makes it wait there for the signal.
"""

import os
import signal
import subprocess

import numpy as np
import pytest
import torch

from collapse_spectroscopy.store import scanfile
from collapse_spectroscopy.training.checkpoint import PAUSE_ENV
from pause_helpers import TRAIN_CLI, pausable_training, wait_paused
from synthetic_gaussian import gaussian_prepared

EVAL_EVERY, CHECKPOINT_EVERY = 250, 500
PAUSE_AT = 1250  # between the checkpoints at 1000 and 1500
MAX_UPDATES = 2000  # leaves 750 updates to run after a resume


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    path = tmp_path_factory.mktemp("resume") / "prepared.npz"
    gaussian_prepared([0.5, 0.3, 0.15, 0.05, 0.0], sizes=(4000, 1000, 1000), seed=4).save(path)
    return path


@pytest.fixture(scope="module")
def reference(prepared, tmp_path_factory):
    """The scan point of an uninterrupted run, per engine (made once)."""
    done = {}

    def point(engine):
        if engine not in done:
            out = tmp_path_factory.mktemp(f"ref-{engine}") / "p.nc"
            subprocess.run(train_cmd(prepared, out, engine), check=True, capture_output=True)
            done[engine] = out
        return done[engine]

    return point


def train_cmd(prepared, out, engine, temperature=0.05):
    cmd = [*TRAIN_CLI, "-T", str(temperature), "--seed", "2", "--out", str(out)]
    return cmd + pausable_training(prepared, MAX_UPDATES, EVAL_EVERY, CHECKPOINT_EVERY, engine)


def assert_same_point(a, b):
    da, db = scanfile.read(a), scanfile.read(b)
    for name in da.data_vars:
        if name == "elapsed_s":  # wall time
            continue
        assert np.array_equal(da[name].values, db[name].values), name


def start_paused(cmd, out):
    """Start a training that stops at update PAUSE_AT and waits there; return it once it
    waits. It cannot finish first: it blocks until a signal comes."""
    env = {**os.environ, PAUSE_ENV: str(PAUSE_AT)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert wait_paused(proc, out.with_suffix(".ckpt"), PAUSE_AT) == f"{PAUSE_AT}\n"
    return proc


def checkpoint_update(out):
    return torch.load(out.with_suffix(".ckpt"), weights_only=False)["update"]


@pytest.mark.parametrize("engine", ["numba", "fast"])
@pytest.mark.slow
def test_sigkill_then_rerun_is_bit_identical(prepared, reference, tmp_path, engine):
    out = tmp_path / "killed" / "p.nc"
    proc = start_paused(train_cmd(prepared, out, engine), out)
    proc.send_signal(signal.SIGKILL)  # at update 1250: 250 updates past the last checkpoint
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert not out.exists()
    assert checkpoint_update(out) == 1000
    rerun = subprocess.run(
        train_cmd(prepared, out, engine), check=True, capture_output=True, text=True
    )
    assert "resumed from a checkpoint at update 1000" in rerun.stdout
    assert_same_point(reference(engine), out)
    assert not out.with_suffix(".ckpt").exists()  # done: no checkpoint left behind
    assert not list(out.parent.glob(".tmp-*"))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1], ids=["SIGTERM", "SIGUSR1"])
@pytest.mark.slow
def test_signal_writes_a_checkpoint_and_exits_4(prepared, reference, tmp_path, sig):
    out = tmp_path / "sig" / "p.nc"
    proc = start_paused(train_cmd(prepared, out, "numba"), out)
    proc.send_signal(sig)  # at update 1250, not a checkpoint update: the signal writes one
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 4, err
    assert f"interrupted: {sig.name} at update {PAUSE_AT}" in err
    assert "rerun the job to resume" in err
    assert not out.exists()
    assert checkpoint_update(out) == PAUSE_AT
    rerun = subprocess.run(
        train_cmd(prepared, out, "numba"), check=True, capture_output=True, text=True
    )
    assert f"resumed from a checkpoint at update {PAUSE_AT}" in rerun.stdout
    assert_same_point(reference("numba"), out)


@pytest.mark.slow
def test_a_foreign_checkpoint_is_refused(prepared, tmp_path):
    out = tmp_path / "p.nc"
    proc = start_paused(train_cmd(prepared, out, "numba"), out)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert checkpoint_update(out) == 1000
    cmd = train_cmd(prepared, out, "numba", temperature=0.07)  # same output name
    run = subprocess.run(cmd, capture_output=True, text=True)
    assert run.returncode == 2
    assert "belongs to another training" in run.stderr
    assert os.path.exists(out.with_suffix(".ckpt"))  # kept for the user to decide


def test_a_checkpoint_from_before_the_largest_batch_loss_column_resumes(tmp_path):
    """A checkpoint written before the log had ``train_loss_max`` (six columns per row, as
    in the WorldClim MLP scan's archive) resumes: its rows get NaN there, the rows trained
    after the resume get the window's largest batch loss, and everything else is what the
    uninterrupted training logs (the resume is bit for bit, test above)."""
    from collapse_spectroscopy.training.scan_point import TrainConfig, train_scan_point
    from synthetic_gaussian import gaussian_splits

    xtr, xva, _, _, _ = gaussian_splits([0.6, 0.3, 0.1], sizes=(2000, 500, 500), seed=5)
    config = TrainConfig(max_updates=1000, eval_every=250, checkpoint_every=500, patience=10**6)
    ckpt = tmp_path / "p.ckpt"
    whole = train_scan_point(xtr, xva, 0.05, latents=3, config=config, checkpoint=ckpt)
    state = torch.load(ckpt, weights_only=False)  # the checkpoint at update 500
    assert state["update"] == 500 and len(state["rows"]) == 2
    state["rows"] = [row[:6] for row in state["rows"]]  # the old format
    torch.save(state, ckpt)
    resumed = train_scan_point(xtr, xva, 0.05, latents=3, config=config, checkpoint=ckpt)
    new, old = resumed.log["train_loss_max"], whole.log["train_loss_max"]
    assert new.iloc[:2].isna().all() and new.iloc[2:].equals(old.iloc[2:])
    assert (old >= whole.log["train_loss"]).all()  # a window's largest is at least its mean
    cols = ["update", "train_loss", "val_loss", "val_distortion", "val_rate"]
    assert resumed.log[cols].equals(whole.log[cols])
