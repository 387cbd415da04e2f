"""Moving an unfinished run to another folder or machine (README, "Moving an unfinished
run"): the run's ``results/R`` without its ``data/`` (the prepared copy of the user's data,
rebuilt from the source where the run lands), packed with ``tar`` and unpacked elsewhere,
resumes there. Oracle: the uninterrupted run. On one CPU training is deterministic, so the
moved run must write the same weights and training logs bit for bit, with the finished
point restored from its record (not retrained) and the interrupted one resumed from its
checkpoint.

The interruptions act at a known state, never after a timer: each run of the chain waits
at the test-only pause (``checkpoint.PAUSE_ENV``) and only then gets SIGTERM, which makes
it write a checkpoint at the pause and exit 4.
"""

import contextlib
import os
import signal
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import torch

from collapse_spectroscopy.training.checkpoint import PAUSE_ENV
from pause_helpers import wait_paused
from workflow_helpers import ROOT, SNAKEMAKE, tiny_config, workdir

TEMPERATURES = [0.02, 0.08, 0.3]  # one chain, cold to warm
PAUSE_AT = 750  # between the checkpoints at 500 and 1000: only SIGTERM writes one here
TARGET = "results/tiny/scan.nc"


def chain_config():
    config = tiny_config(
        TEMPERATURES, max_updates=1500, patience=30000, eval_every=250, checkpoint_every=500
    )
    config["runs"]["tiny"]["scan"]["start"] = "continuation"
    return config


def snakemake(wd, *args, env=None, check=True):
    cmd = [*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(wd), "--cores", "1", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc


def training_pids(wd: Path) -> list[int]:
    """The training jobs running in ``wd`` (from ``/proc``: their command lines name the
    run's config under ``wd``'s results)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(entry / "cwd")
        except (OSError, ValueError):
            continue  # not a process, or one that ended meanwhile
        if b"train" in argv and Path(cwd) == wd:
            pids.append(int(entry.name))
    return pids


def stop_at_pause(wd: Path, temperature: float) -> None:
    """Run the workflow in ``wd`` with the pause; once the chain waits at it in the point of
    ``temperature``, SIGTERM the training job (a checkpoint there, exit 4) and let the
    workflow end as it does after a failed job."""
    checkpoint = wd / "results/tiny/scan" / f"T={temperature!r}" / "seed=0.ckpt"
    cmd = [*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(wd), "--cores", "1", TARGET]
    env = {**os.environ, PAUSE_ENV: str(PAUSE_AT)}
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        start_new_session=True,
    )  # fmt: skip
    try:
        wait_paused(proc, checkpoint, PAUSE_AT)
        (pid,) = training_pids(wd.resolve())
        os.kill(pid, signal.SIGTERM)
        proc.communicate(timeout=300)
    finally:
        with contextlib.suppress(ProcessLookupError):  # never leave a paused job behind
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode != 0, "the workflow finished although its job was stopped"


def assert_same_point(a: Path, b: Path):
    """The same scan point: its weights, and its training log but the wall-time column."""
    wa, wb = (torch.load(p.with_suffix(".pt"), weights_only=False)["state_dict"] for p in (a, b))
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[n], wb[n]) for n in wa), f"{a}: weights"
    la, lb = (pd.read_csv(p.with_suffix(".log.csv")) for p in (a, b))
    assert la.drop(columns="elapsed_s").equals(lb.drop(columns="elapsed_s")), a


@pytest.mark.slow
def test_an_unfinished_chain_moved_with_tar_resumes_where_it_stopped(tmp_path):
    first = workdir(tmp_path / "first", chain_config())
    scan = first / "results/tiny/scan"
    stop_at_pause(first, 0.02)  # the chain's first point, checkpointed at 750
    stop_at_pause(first, 0.08)  # a rerun finishes it (resumed past the pause), stops the next
    assert (scan / "T=0.02" / "seed=0.finished").is_dir(), "no record of the finished point"
    assert torch.load(scan / "T=0.08/seed=0.ckpt", weights_only=False)["update"] == PAUSE_AT
    assert not list(scan.glob("T=*/seed=0.nc")), "Snakemake keeps no output of a failed job"

    # the README's recipe: pack the run without its prepared data, unpack it elsewhere
    archive = tmp_path / "tiny.tar.gz"
    pack = ["tar", "-czf", str(archive), "--exclude=results/tiny/data", "config", "results/tiny"]
    subprocess.run(pack, cwd=first, check=True)
    moved = tmp_path / "moved"
    moved.mkdir()
    subprocess.run(["tar", "-xzf", str(archive)], cwd=moved, check=True)
    assert not (moved / "results/tiny/data").exists()

    snakemake(moved, TARGET)
    log = (moved / "results/tiny/logs/train/chunk0.log").read_text()
    assert "T=0.02, seed=0: kept: written by an earlier run" in log, log
    assert f"resumed from a checkpoint at update {PAUSE_AT}" in log, log
    assert not list((moved / "results/tiny/scan").glob("T=*/*.ckpt")), "a checkpoint was left"
    assert not list((moved / "results/tiny/scan").glob("T=*/*.finished")), "records were left"

    alone = workdir(tmp_path / "alone", chain_config())
    snakemake(alone, TARGET)
    for t in TEMPERATURES:
        point = Path("results/tiny/scan") / f"T={t!r}" / "seed=0.nc"
        assert_same_point(alone / point, moved / point)
