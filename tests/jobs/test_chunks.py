"""Several scan points in one job (``scan.points_per_job``, issue 14): the same files as one
job per point, and a chunk interrupted in its second point resumes without retraining the
first (its file untouched) and resumes the second from its checkpoint, bit for bit.

Oracle: the same points trained one per process (``train -T --seed --out``), the path
every scan job took before chunks; on the CPU a point's training is deterministic, so the
files must agree exactly (the wall times aside). Every signal is sent at a known update
(the test-only pause, ``checkpoint.PAUSE_ENV``), never after a sleep.
"""

import os
import signal
import subprocess

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from collapse_spectroscopy.config.checks import check_config
from collapse_spectroscopy.errors import InputError
from collapse_spectroscopy.jobs import chunks
from collapse_spectroscopy.store import scanfile
from collapse_spectroscopy.training.checkpoint import PAUSE_ENV
from pause_helpers import TRAIN_CLI, pausable_training, wait_paused
from synthetic_gaussian import gaussian_prepared
from workflow_helpers import ROOT, SNAKEMAKE, tiny_config, workdir

EVAL_EVERY, CHECKPOINT_EVERY = 250, 500
PAUSE_AT = 1250  # between the checkpoints at 1000 and 1500
MAX_UPDATES = 2000
# three points of different T and seed; not in scan order, so order is not what matches
POINTS = [(0.05, 2, "a"), (0.02, 1, "b"), (0.1, 0, "c")]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    path = tmp_path_factory.mktemp("chunks") / "prepared.npz"
    gaussian_prepared([0.5, 0.3, 0.15, 0.05, 0.0], sizes=(4000, 1000, 1000), seed=4).save(path)
    return path


def options(prepared):
    return pausable_training(prepared, MAX_UPDATES, EVAL_EVERY, CHECKPOINT_EVERY)


def chunk_cmd(prepared, folder):
    points = [
        a for t, s, name in POINTS for a in ("--point", str(t), str(s), str(folder / f"{name}.nc"))
    ]
    return [*TRAIN_CLI, *options(prepared), *points]


@pytest.fixture(scope="module")
def separate(prepared, tmp_path_factory):
    """Each point trained by a job of its own (the oracle)."""
    folder = tmp_path_factory.mktemp("separate")
    for t, s, name in POINTS:
        cmd = [
            *TRAIN_CLI,
            *options(prepared),
            "-T",
            str(t),
            "--seed",
            str(s),
            "--out",
            str(folder / f"{name}.nc"),
        ]
        subprocess.run(cmd, check=True, capture_output=True)
    return folder


def assert_same_point(a, b):
    """Equal scan points: every variable and attribute but the wall time, the weights (and
    everything saved with them), and the training log but its wall-time column."""
    da, db = scanfile.read(a.with_suffix(".nc")), scanfile.read(b.with_suffix(".nc"))
    assert set(da.data_vars) == set(db.data_vars)
    for name in da.data_vars:
        if name != "elapsed_s":  # wall time
            va, vb = da[name].values, db[name].values
            assert np.array_equal(va, vb, equal_nan=va.dtype.kind == "f"), name
    assert da.attrs == db.attrs
    wa, wb = (torch.load(p.with_suffix(".pt"), weights_only=False) for p in (a, b))
    assert wa.keys() == wb.keys()
    for k, v in wa.items():
        if k == "state_dict":
            assert all(torch.equal(v[n], wb[k][n]) for n in v), "weights"
        else:
            assert v == wb[k], k
    la, lb = (pd.read_csv(p.with_suffix(".log.csv")) for p in (a, b))
    assert la.drop(columns="elapsed_s").equals(lb.drop(columns="elapsed_s"))


def assert_clean(folder):
    """A finished job leaves no checkpoint, no record of finished points, no temporary."""
    assert not list(folder.glob("*.ckpt"))
    assert not list(folder.glob(f"*{chunks.FINISHED_SUFFIX}"))
    assert not list(folder.glob(".tmp-*"))


@pytest.mark.slow
def test_a_chunk_writes_what_separate_jobs_write(prepared, separate, tmp_path):
    run = subprocess.run(chunk_cmd(prepared, tmp_path), check=True, capture_output=True, text=True)
    for t, s, name in POINTS:
        assert_same_point(separate / name, tmp_path / name)
        assert f"T={t:g}, seed={s}: trained {MAX_UPDATES} updates" in run.stdout
    assert_clean(tmp_path)


def checkpoint_update(path):
    return torch.load(path, weights_only=False)["update"]


@pytest.mark.slow
def test_an_interrupted_chunk_resumes_where_it_stopped(prepared, separate, tmp_path):
    """SIGUSR1 in the first point (exit 4), a rerun finishes it and is SIGKILLed in the
    second; the last rerun keeps the first, resumes the second, trains the third."""
    out = {name: tmp_path / f"{name}.nc" for _, _, name in POINTS}
    ckpt = {name: p.with_suffix(".ckpt") for name, p in out.items()}
    env = {**os.environ, PAUSE_ENV: str(PAUSE_AT)}
    cmd = chunk_cmd(prepared, tmp_path)

    def start():
        return subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )

    proc = start()
    wait_paused(proc, ckpt["a"], PAUSE_AT)
    proc.send_signal(signal.SIGUSR1)  # in point a at update 1250: a checkpoint there, exit 4
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 4, err
    assert checkpoint_update(ckpt["a"]) == PAUSE_AT
    assert not any(p.exists() for p in out.values())

    proc = start()  # a resumes past the pause, finishes; b stops at 1250 and waits
    wait_paused(proc, ckpt["b"], PAUSE_AT)
    proc.send_signal(signal.SIGKILL)  # in point b, 250 updates past its checkpoint at 1000
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert out["a"].is_file() and not ckpt["a"].exists()
    assert chunks.record_path(chunks_point(out["a"])).is_dir()
    assert not out["b"].exists() and checkpoint_update(ckpt["b"]) == 1000
    written = {p: (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes()) for p in files(out["a"])}
    # Snakemake deletes a job's outputs before it reruns the job: a's scan-point file goes
    # (its weights and log stay, to check they are left as they are)
    out["a"].unlink()

    rerun = subprocess.run(cmd, check=True, capture_output=True, text=True)
    assert "T=0.05, seed=2: kept: written by an earlier run" in rerun.stdout
    assert "T=0.02, seed=1: trained" in rerun.stdout
    assert "resumed from a checkpoint at update 1000" in rerun.stdout
    for p, (ino, mtime, content) in written.items():
        st = p.stat()  # the very file written before the kill: the same inode, not retrained
        assert (st.st_ino, st.st_mtime_ns, p.read_bytes()) == (ino, mtime, content), p
    for _, _, name in POINTS:
        assert_same_point(separate / name, out[name])
    assert_clean(tmp_path)


def chunks_point(out):
    from collapse_spectroscopy.jobs.points import PointFiles

    return PointFiles.of(0.05, 2, out)


def files(out):
    return [out, out.with_suffix(".pt"), out.with_suffix(".log.csv")]


def test_a_record_of_another_training_is_not_used(tmp_path):
    """A finished point recorded with another identity (the data or an option changed
    since) is retrained: the record is deleted, the files are not restored from it."""
    point = chunks_point(tmp_path / "p.nc")
    for p in files(point.out):
        p.write_text(p.suffix)
    data = tmp_path / "data.npz"
    data.write_text("x")
    ident = chunks.identity(point, data, {"training": {"max_updates": 10}})
    chunks.keep(point, ident)
    other = chunks.identity(point, data, {"training": {"max_updates": 20}})
    assert not chunks.restore(point, other)
    assert not chunks.record_path(point).exists()
    chunks.keep(point, ident)
    point.out.unlink()
    assert chunks.restore(point, ident) and point.out.read_text() == ".nc"


def test_a_record_survives_a_rewrite_of_the_same_data_but_not_a_changed_byte(tmp_path):
    """Snakemake reruns ``prepare`` when an input's modification time is newer (a dataset
    folder copied again), and ``prepare`` rewrites a byte-identical file: the finished
    points must be kept (this once threw away 24 trained WorldClim MLP points). One
    changed byte is another dataset: the record is not used."""
    point = chunks_point(tmp_path / "p.nc")
    for p in files(point.out):
        p.write_text(p.suffix)
    data = tmp_path / "data.npz"
    data.write_bytes(b"abc")
    opts = {"training": {"max_updates": 10}}
    chunks.keep(point, chunks.identity(point, data, opts))
    data.unlink()
    data.write_bytes(b"abc")  # a new file (new inode and time), the same bytes
    os.utime(data, ns=(1, 1))
    point.out.unlink()
    assert chunks.restore(point, chunks.identity(point, data, opts))
    assert point.out.read_text() == ".nc"
    data.write_bytes(b"abd")
    assert not chunks.restore(point, chunks.identity(point, data, opts))
    assert not chunks.record_path(point).exists()


def test_points_are_dealt_round_robin():
    points = list(range(10))
    assert chunks.scan_chunks(points, 4) == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    assert chunks.scan_chunks(points, 1) == [[p] for p in points]
    assert chunks.scan_chunks(points, 100) == [points]


def test_auto_cuts_blocks_cold_to_warm_about_four_jobs_per_core():
    """points_per_job auto: ceil(N / (4 cores)) points per job, 1 where the cores are
    unknown (a cluster executor); the blocks hold consecutive temperatures, coldest first
    (labels compared as numbers), the seeds of a temperature together."""
    assert chunks.auto_points_per_job(37, 2) == 5  # 8 jobs: the paper scan on 2 cores
    assert chunks.auto_points_per_job(37, 16) == 1
    assert chunks.auto_points_per_job(37, None) == 1
    points = [(t, s) for t in ("0.1", "1e-05", "0.003") for s in (0, 1)]
    assert chunks.scan_blocks(points, 4) == [
        [("1e-05", 0), ("1e-05", 1), ("0.003", 0), ("0.003", 1)],
        [("0.1", 0), ("0.1", 1)],
    ]


@pytest.mark.slow
def test_auto_plans_blocks_from_the_cores_given(tmp_path):
    """A dry run of 20 temperatures with points_per_job auto: 3 points per job (7 jobs)
    on 2 cores, the first job the 3 coldest; one job per point on 8 cores."""
    temperatures = [float(f"{0.001 * 1.3**i:.4g}") for i in range(20)]  # as labelled
    config = tiny_config(temperatures)
    config["runs"]["tiny"]["scan"]["points_per_job"] = "auto"
    wd = workdir(tmp_path, config)
    plan = snakemake(wd, "-n", "-p").stdout
    assert plan.count("rule train_chunk_tiny_") == 7 and "rule train_point:" not in plan
    coldest = " ".join(
        f"--point {t!r} 0 results/tiny/scan/T={t!r}/seed=0.nc" for t in temperatures[:3]
    )
    assert coldest in plan
    wide = subprocess.run(
        [*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(wd), "--cores", "8", "-n"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "train_chunk" not in wide and wide.count("rule train_point:") == 20


@pytest.mark.parametrize("value", [0, -1, 1.5, "two", "1.5", "Auto"])
def test_a_bad_points_per_job_names_the_key(value):
    config = tiny_config([0.1])
    config["runs"]["tiny"]["scan"]["points_per_job"] = value
    with pytest.raises(InputError, match=r"runs\.tiny\.scan\.points_per_job"):
        check_config(config)


def test_points_per_job_as_text_is_read_as_the_integer_it_spells():
    """Snakemake hands nested --config values over as text: '2' is 2 (workflow_config.
    coerce_text_scalars); text that spells no integer stays an error (above)."""
    config = tiny_config([0.1])
    config["runs"]["tiny"]["scan"]["points_per_job"] = "2"
    check_config(config)
    assert config["runs"]["tiny"]["scan"]["points_per_job"] == 2


def snakemake(wd, *args, check=True):
    cmd = [*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(wd), "--cores", "2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, check=check)


@pytest.mark.slow
def test_the_workflow_runs_chunks(tmp_path):
    """A scan of 3 points in jobs of 2: two chunk jobs, every point's files, each equal to
    the point trained by a job of its own; changing points_per_job afterwards reruns
    nothing (the same command, inputs and code for every grouping)."""
    temperatures = [0.02, 0.08, 0.3]
    config = tiny_config(temperatures)
    config["runs"]["tiny"]["scan"]["points_per_job"] = 2
    wd = workdir(tmp_path, config)
    proc = snakemake(wd)
    assert proc.stderr.count("rule train_chunk_tiny_") == 2, proc.stderr
    assert "rule train_point:" not in proc.stderr
    res = wd / "results" / "tiny"
    for t in temperatures:
        point = res / "scan" / f"T={t!r}" / "seed=0.nc"
        alone = tmp_path / "alone" / f"{t!r}.nc"
        run = ["--run-config", "results/tiny/config/train.json"]
        run += ["--data", "results/tiny/data/prepared.npz"]  # as the job names it
        cmd = [*TRAIN_CLI, *run, "-T", str(t), "--out", str(alone)]
        subprocess.run(cmd, check=True, capture_output=True, cwd=wd)
        assert_same_point(alone, point)
        assert_clean(point.parent)
    assert (res / "figures" / "fig3_duality.png").is_file()

    config["runs"]["tiny"]["scan"]["points_per_job"] = 1
    (wd / "config" / "config.yaml").write_text(yaml.safe_dump(config))
    dry = snakemake(wd, "-n")
    assert "Nothing to be done" in dry.stdout + dry.stderr, dry.stdout
