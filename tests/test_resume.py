"""Resumable training: a job killed with SIGKILL at a random update and rerun gives the
same scan point, bit for bit, as one that was never interrupted; SIGTERM/SIGUSR1 write a
checkpoint and exit 4 (issue 5)."""

import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from collapse_spectroscopy import scanfile
from synthetic_gaussian import gaussian_prepared


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    path = tmp_path_factory.mktemp("resume") / "prepared.npz"
    gaussian_prepared([0.5, 0.3, 0.15, 0.05, 0.0], sizes=(4000, 1000, 1000), seed=4).save(path)
    return path


def train_cmd(prepared, out, engine):
    return [
        sys.executable,
        "-m",
        "collapse_spectroscopy.cli",
        "train",
        "--data",
        str(prepared),
        "-T",
        "0.05",
        "--seed",
        "2",
        "--out",
        str(out),
        "--latents",
        "6",
        "--max-updates",
        "30000",
        "--patience",
        "30000",
        "--eval-every",
        "250",
        "--checkpoint-every",
        "500",
        "--engine",
        engine,
    ]


def assert_same_point(a, b):
    da, db = scanfile.read(a), scanfile.read(b)
    for name in da.data_vars:
        if name == "elapsed_s":  # wall time
            continue
        assert np.array_equal(da[name].values, db[name].values), name


def start(cmd):
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(path, proc, timeout=120):
    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, f"finished before a checkpoint: {proc.communicate()}"
        assert time.time() < deadline
        time.sleep(0.02)


@pytest.mark.parametrize("engine", ["numba", "fast"])
def test_sigkill_then_rerun_is_bit_identical(prepared, tmp_path, engine):
    ref = tmp_path / "ref" / "p.nc"
    subprocess.run(train_cmd(prepared, ref, engine), check=True, capture_output=True)

    out = tmp_path / "killed" / "p.nc"
    proc = start(train_cmd(prepared, out, engine))
    wait_for(out.with_suffix(".ckpt"), proc)
    time.sleep(random.uniform(0.0, 0.3))  # kill at a random update after a checkpoint
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert not out.exists()
    rerun = subprocess.run(
        train_cmd(prepared, out, engine), check=True, capture_output=True, text=True
    )
    assert "resumed from a checkpoint at update" in rerun.stdout
    assert_same_point(ref, out)
    assert not out.with_suffix(".ckpt").exists()  # done: no checkpoint left behind
    assert not list(out.parent.glob(".tmp-*"))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_signal_writes_a_checkpoint_and_exits_4(prepared, tmp_path, sig):
    ref = tmp_path / "ref" / "p.nc"
    subprocess.run(train_cmd(prepared, ref, "numba"), check=True, capture_output=True)
    out = tmp_path / "sig" / "p.nc"
    proc = start(train_cmd(prepared, out, "numba"))
    wait_for(out.with_suffix(".ckpt"), proc)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 4, err
    assert "interrupted" in err and "rerun the job to resume" in err
    assert out.with_suffix(".ckpt").exists() and not out.exists()
    subprocess.run(train_cmd(prepared, out, "numba"), check=True, capture_output=True)
    assert_same_point(ref, out)


def test_a_foreign_checkpoint_is_refused(prepared, tmp_path):
    out = tmp_path / "p.nc"
    proc = start(train_cmd(prepared, out, "numba"))
    wait_for(out.with_suffix(".ckpt"), proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    cmd = train_cmd(prepared, out, "numba")
    cmd[cmd.index("-T") + 1] = "0.07"  # another temperature, same output name
    run = subprocess.run(cmd, capture_output=True, text=True)
    assert run.returncode == 2
    assert "belongs to another training" in run.stderr
    assert os.path.exists(out.with_suffix(".ckpt"))  # kept for the user to decide
