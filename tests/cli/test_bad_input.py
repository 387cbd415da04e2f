"""Bad input and faults, probed (issue 20, item 8): each probe ends in one line naming the
key, file or value, loses nothing, and reruns cleanly. Each test's docstring says what
the probe guards against.
"""

from __future__ import annotations

import os
import signal
import sys

import numpy as np
import pytest

from collapse_spectroscopy.cli import main
from collapse_spectroscopy.config import checks
from collapse_spectroscopy.datasets.table import read_table
from collapse_spectroscopy.errors import InputError
from collapse_spectroscopy.jobs import train_job


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


# --- a CSV written by a spreadsheet in a decimal-comma locale -------------------------------

# three features in a European spreadsheet's export: ';' between fields, ',' in numbers
SEMICOLON_CSV = "temp;rain;wind\n4,9;120,5;3,25\n5,1;80;-2,5\n-0,75;1,5e+2;0\n"
SEMICOLON_VALUES = [[4.9, 120.5, 3.25], [5.1, 80.0, -2.5], [-0.75, 150.0, 0.0]]


def test_semicolon_csv_with_decimal_commas_is_read_as_written(tmp_path):
    """A ';'-separated table with decimal commas is read as its three features, not as
    one feature ``temp;rain;wind`` of absurd values that a run would train on silently."""
    path = tmp_path / "stations.csv"
    path.write_text(SEMICOLON_CSV)
    samples = read_table(path)
    assert samples.feature_names == ["temp", "rain", "wind"]
    # the oracle is the text itself; float32 is what the samples are kept in
    np.testing.assert_array_equal(samples.x, np.float32(SEMICOLON_VALUES))


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("a,b,c\n1,2,3,\n4,5,6,\n", "line 2 has 4 fields but the header has 3"),
        ("a;b;c\n1;2;3\n4;5\n", "line 3 has 2 fields but the header has 3"),
    ],
    ids=["trailing-comma", "short-row"],
)
def test_a_row_of_another_width_than_the_header_is_refused(tmp_path, capsys, text, where):
    """A row whose width differs from the header's is refused, naming the line: a
    trailing comma must not shift the columns into a misleading ``no row has finite
    values`` error, and a short row must not be filled with NaN and dropped silently."""
    path = tmp_path / "t.csv"
    path.write_text(text)
    out = tmp_path / "out"
    assert main(["prepare", "--source", "table", "--path", str(path), "--out", str(out)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith(f"collapse-spectroscopy prepare: error: table {str(path)!r}: {where}")
    assert line.endswith("expected as many fields in every row as in the header")
    assert not out.exists()


def test_a_tab_separated_gzip_is_read_with_decimal_points(tmp_path):
    """A tab-delimited compressed file with decimal points: the points stay points."""
    import gzip

    path = tmp_path / "t.csv.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("x\ty\n1.5\t2\n-3.25\t4e-1\n")
    samples = read_table(path)
    assert samples.feature_names == ["x", "y"]
    np.testing.assert_array_equal(samples.x, np.float32([[1.5, 2.0], [-3.25, 0.4]]))


def test_an_empty_csv_is_named(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("\n")
    with pytest.raises(InputError, match="is empty: expected a header and rows"):
        read_table(path)


# --- a layer edited in place reruns the workflow from prepare ---------------------------------


def _write_layers(folder, n_layers=3, seed=0):
    """``n_layers`` random single-band GeoTIFFs on a global 4-degree grid."""
    import rasterio
    from rasterio.transform import from_origin

    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n_layers):
        band = rng.normal(size=(45, 90)).astype(np.float32)
        profile = dict(driver="GTiff", height=45, width=90, count=1, dtype="float32")
        profile |= dict(crs="EPSG:4326", transform=from_origin(-180, 90, 4, 4))
        with rasterio.open(folder / f"layer_{i}.tif", "w", **profile) as ds:
            ds.write(band, 1)


def _edit_in_place(path):
    """Rewrite one value of a GeoTIFF inside the same file (the same inode)."""
    import rasterio

    inode = path.stat().st_ino
    with rasterio.open(path, "r+") as ds:
        band = ds.read(1)
        band[0, 0] += 1
        ds.write(band, 1)
    assert path.stat().st_ino == inode


DATA_CHANGES = {
    # dataset section, the file edited in place (from the working directory)
    "rasters folder": ({"source": "rasters", "path": "layers/"}, "layers/layer_1.tif"),
    "rasters files": (
        {"source": "rasters", "path": ["layers/layer_0.tif", "layers/layer_1.tif"]},
        "layers/layer_1.tif",
    ),
    "table": ({"source": "table", "path": "samples.csv"}, "samples.csv"),
}


def _data_change_workdir(tmp_path, dataset):
    import subprocess

    from workflow_helpers import tiny_config, workdir

    config = tiny_config([0.1])
    config["runs"]["tiny"]["dataset"] = dataset
    wd = workdir(tmp_path / "wd", config)
    _write_layers(wd / "layers")
    rows = np.random.default_rng(1).normal(size=(300, 3))
    (wd / "samples.csv").write_text(
        "a,b,c\n" + "".join(",".join(f"{v:.6f}" for v in row) + "\n" for row in rows)
    )

    def snakemake(*args):
        from workflow_helpers import ROOT, SNAKEMAKE

        cmd = [*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(wd), "--cores", "1"]
        return subprocess.run([*cmd, *args], capture_output=True, text=True)

    return wd, snakemake


@pytest.mark.parametrize(
    ("case", "triggers"),
    [(case, []) for case in DATA_CHANGES] + [("rasters folder", ["--rerun-triggers", "mtime"])],
    ids=[*DATA_CHANGES, "rasters folder, mtime"],
)
@pytest.mark.slow
def test_a_data_file_edited_in_place_reruns_prepare(tmp_path, case, triggers):
    """The files of dataset.path are inputs of `prepare`: after one is edited in place,
    Snakemake reruns it rather than saying "Nothing to be done", also with
    ``--rerun-triggers mtime``."""
    dataset, edited = DATA_CHANGES[case]
    wd, snakemake = _data_change_workdir(tmp_path, dataset)
    target = "results/tiny/data/prepared.npz"
    proc = snakemake(target)
    assert proc.returncode == 0, proc.stderr
    proc = snakemake("-n", target, *triggers)
    assert proc.returncode == 0 and "Nothing to be done" in proc.stdout + proc.stderr
    if edited.endswith(".tif"):
        _edit_in_place(wd / edited)
    else:  # a table: one value changed, the file rewritten where it is
        path = wd / edited
        path.write_text(path.read_text().replace(",", ",1", 1))
    # the edit comes after prepare wrote its outputs (the file system's clock): no sleep
    proc = snakemake("-n", target, *triggers)
    assert proc.returncode == 0, proc.stderr
    assert "rule prepare:" in proc.stdout, proc.stdout
    assert "updated input files" in proc.stdout.lower(), proc.stdout


@pytest.mark.slow
def test_a_data_file_touched_without_a_change_reruns_nothing(tmp_path):
    """A data file copied or re-extracted with a new modification time but the same bytes:
    Snakemake compares checksums only below ``max-checksum-file-size`` (its default 1 MB,
    less than one WorldClim layer), so without the workflow profile's larger limit it would
    rerun `prepare`, and every training job after it. The table here is above 1 MB: with
    the profile nothing is to be done; with the limit set back to 1 MB (negative control)
    `prepare` is planned again."""
    wd, snakemake = _data_change_workdir(tmp_path, {"source": "table", "path": "samples.csv"})
    rows = np.random.default_rng(2).normal(size=(40_000, 3))
    body = "".join(f"{a:.6f},{b:.6f},{c:.6f}\n" for a, b, c in rows)
    (wd / "samples.csv").write_text("a,b,c\n" + body)
    assert (wd / "samples.csv").stat().st_size > 1_000_000
    target = "results/tiny/data/prepared.npz"
    proc = snakemake(target)
    assert proc.returncode == 0, proc.stderr
    later = (wd / "samples.csv").stat().st_mtime + 60  # a copy made a minute later
    os.utime(wd / "samples.csv", (later, later))
    proc = snakemake("-n", target)
    assert proc.returncode == 0 and "Nothing to be done" in proc.stdout + proc.stderr, proc.stdout
    proc = snakemake("-n", target, "--max-checksum-file-size", "1MB")
    assert proc.returncode == 0, proc.stderr
    assert "rule prepare:" in proc.stdout, proc.stdout


# --- configuration probes, refused before any job ----------------------------------------------


def _run(**sections) -> dict:
    """A run of one scan point on the synthetic source, with ``sections`` replaced."""
    return {"dataset": {"source": "synthetic"}, "scan": {"temperatures": [0.1]}, **sections}


def _config_errors(run: dict, **other_runs) -> str:
    """check_config's message for a config with run ``r`` (and ``other_runs``)."""
    from collapse_spectroscopy.config.checks import check_config

    runs = {"r": _run(**run), **{name: _run(**other) for name, other in other_runs.items()}}
    with pytest.raises(InputError) as info:
        check_config({"default_runs": ["r"], "runs": runs})
    return str(info.value)


def test_absurd_latents_are_refused_before_any_job(monkeypatch):
    """``model.latents: 100000`` is refused by the config check, before any job, rather
    than running out of memory minutes into training (one (100000, 100000) float64 array
    is 74.5 GiB). The bound is 40 bytes per pair of latents (measured:
    checks.BYTES_PER_LATENT_PAIR)."""

    monkeypatch.setattr(checks, "machine_memory_bytes", lambda: 64 * 2**30)
    message = _config_errors({"dataset": {"source": "synthetic"}, "model": {"latents": 100000}})
    assert "config key runs.r.model.latents = 100000: a training job would need at least " in (
        message
    )
    # 40 x 1e10 bytes = 373 GiB; the largest K with 40 K^2 <= 64 GiB is 41448
    assert "373 GiB" in message and "this machine's 64 GiB: expected at most 41448" in message
    checks.check_config({"runs": {"r": _run(model={"latents": 41448})}})


@pytest.mark.parametrize(
    ("model", "key"),
    [({"hidden": [64]}, "hidden"), ({"activation": "gelu"}, "activation")],
)
def test_a_linear_run_refuses_mlp_keys(model, key):
    """A linear run refuses ``hidden`` and ``activation`` rather than ignoring them."""
    message = _config_errors({"model": model})
    assert f"config key runs.r.model.{key} = " in message and "applies to model.kind mlp" in message


def test_an_average_longer_than_the_training_is_refused():
    """An average_horizon above max_updates is refused: the average would take in the
    initial weights and silently worsen the trained model."""
    training = {"max_updates": 1000, "average": "ema", "average_horizon": 5000}
    message = _config_errors({"training": training})
    assert "config key runs.r.training.average_horizon = 5000: an average over 5000 " in message
    assert "longer than training.max_updates = 1000" in message
    from collapse_spectroscopy.config.checks import check_config

    for fine in ({**training, "average_horizon": 1000}, {**training, "average": "none"}):
        check_config({"runs": {"r": _run(training=fine)}})


def test_dataset_paths_are_checked_before_any_job(tmp_path, monkeypatch):
    """dataset.path is checked before any job: a missing or wrong-kind path is named by
    its key, a study varying dataset.source is checked with the base run's path, and a
    trailing ``/`` does not make a null_run another dataset."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "layers").mkdir()
    (tmp_path / "t.csv").write_text("a,b\n1,2\n")
    message = _config_errors({"dataset": {"source": "rasters", "path": "no/such/folder"}})
    assert "config key runs.r.dataset.path = 'no/such/folder': no such file or folder" in message
    message = _config_errors({"dataset": {"source": "rasters", "path": ["layers", "gone.tif"]}})
    assert "config key runs.r.dataset.path[1] = 'gone.tif': no such file or folder" in message
    message = _config_errors({"dataset": {"source": "table", "path": "layers"}})
    assert "config key runs.r.dataset.path = 'layers': not a table for source 'table'" in message
    message = _config_errors({"dataset": {"source": "rasters", "path": "t.csv"}})
    assert "config key runs.r.dataset.path = 't.csv': not a layer file" in message
    message = _config_errors({"dataset": {"source": "synthetic", "path": "layers"}})
    assert "config key runs.r.dataset.path = 'layers' is not used by source 'synthetic'" in message
    # a study varying the source keeps the base run's path: its derived run is checked
    from collapse_spectroscopy.config.checks import check_config

    base = _run(dataset={"source": "rasters", "path": "layers"})
    study = {"s": {"run": "r", "vary": "dataset.source", "values": ["rasters", "table"]}}
    with pytest.raises(InputError, match="not a table for source 'table'"):
        check_config({"runs": {"r": base}, "studies": study})
    # the same folder written two ways is the same dataset for a null run
    mlp = {**base, "model": {"kind": "mlp"}, "null_run": "lin"}
    lin = _run(dataset={"source": "rasters", "path": "./layers/"})
    check_config({"runs": {"r": mlp, "lin": lin}})


def test_too_few_training_samples_name_the_subsample(tmp_path, capsys):
    """Too few training samples after subsampling are refused naming the subsample,
    rather than blamed on "constant features" or passed on to meaningless thresholds.
    The minimum is d + 1 (a full-rank covariance)."""
    path = tmp_path / "t.csv"
    rows = np.random.default_rng(0).normal(size=(100, 3))
    path.write_text("a,b,c\n" + "".join(f"{x:.6f},{y:.6f},{z:.6f}\n" for x, y, z in rows))
    argv = ["prepare", "--source", "table", "--path", str(path)]
    out = tmp_path / "out"
    assert main([*argv, "--train-subsample", "0.05", "--out", str(out)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("collapse-spectroscopy prepare: error: split.train_subsample = 0.05 ")
    # 5 % of the training split (60 of 100 samples, +- a few) rounds to 3 samples
    assert "keeps 3 of the " in line and "expected at least 4 (the 3 features + 1" in line
    assert not out.exists()
    assert main([*argv, "--train-subsample", "0.5", "--out", str(out)]) == 0


# --- Ctrl-C (SIGINT) ------------------------------------------------------------------------

CLI = [sys.executable, "-m", "collapse_spectroscopy.cli"]
PAUSE_AT = 500  # the test-only pause: between the checkpoints at 250 and 750


def _failure_lines(err: str) -> list[str]:
    """The command's own lines on stderr (progress lines aside): a failure is one."""
    assert "Traceback" not in err, err
    return [line for line in err.splitlines() if line.startswith("collapse-spectroscopy")]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    from synthetic_gaussian import gaussian_prepared

    path = tmp_path_factory.mktemp("sigint") / "prepared.npz"
    gaussian_prepared([0.6, 0.3, 0.1, 0.0], sizes=(1000, 300, 300), seed=2).save(path)
    return path


def _train(prepared, out):
    return [
        *CLI, "train", "--data", str(prepared), "-T", "0.1", "--out", str(out),
        "--latents", "4", "--max-updates", "1000", "--patience", "5000",
        "--eval-every", "250", "--checkpoint-every", "250", "--engine", "numba", "--no-progress",
    ]  # fmt: skip


@pytest.mark.slow
def test_sigint_during_training_checkpoints_and_exits_4(prepared, tmp_path):
    """SIGINT (Ctrl-C) is SIGTERM's twin: a checkpoint at the update it came, one line
    (no traceback), exit 4, and the rerun resumes there, not at the last periodic one."""
    import subprocess

    import torch

    from collapse_spectroscopy.training.checkpoint import PAUSE_ENV
    from pause_helpers import wait_paused

    out = tmp_path / "p.nc"
    env = {**os.environ, PAUSE_ENV: str(PAUSE_AT)}
    proc = subprocess.Popen(
        _train(prepared, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    assert wait_paused(proc, out.with_suffix(".ckpt"), PAUSE_AT) == f"{PAUSE_AT}\n"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 4, err
    (line,) = _failure_lines(err)
    assert line.startswith(f"collapse-spectroscopy train: interrupted: SIGINT at update {PAUSE_AT}")
    assert not out.exists()
    assert torch.load(out.with_suffix(".ckpt"), weights_only=False)["update"] == PAUSE_AT
    rerun = subprocess.run(_train(prepared, out), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert f"resumed from a checkpoint at update {PAUSE_AT}" in rerun.stdout
    assert out.exists() and not out.with_suffix(".ckpt").exists()


# A Ctrl-C at a known point, with no timer: the command's first atomic write sends SIGINT to
# its own process half-way through the file; Python raises KeyboardInterrupt right after.
SIGINT_MID_WRITE = """
import os, signal, sys
# Python leaves SIGINT ignored when it starts ignored (a job launched in the background by
# a non-interactive shell, as `cmd &`): restore Ctrl-C's handler so the test acts the same
# wherever the suite runs
signal.signal(signal.SIGINT, signal.default_int_handler)
from collapse_spectroscopy.store import atomic

real = atomic.atomic_path

def interrupted(path):
    cm = real(path)
    tmp = cm.__enter__()
    try:
        tmp.write_bytes(b"half a file")
        os.kill(os.getpid(), signal.SIGINT)
        raise AssertionError("no KeyboardInterrupt after SIGINT")
    except BaseException:
        if not cm.__exit__(*sys.exc_info()):
            raise

atomic.atomic_path = interrupted
from collapse_spectroscopy.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def scan_inputs(prepared, tmp_path_factory):
    import subprocess

    root = tmp_path_factory.mktemp("scan")
    points = []
    for T in (0.05, 0.3):
        point = root / f"T{T}.nc"
        cmd = _train(prepared, point)
        cmd[cmd.index("-T") + 1] = str(T)
        subprocess.run(cmd, check=True, capture_output=True)
        points.append(point)
    scan = root / "scan.nc"
    subprocess.run([*CLI, "gather", *map(str, points), "--out", str(scan)], check=True)
    return points, scan


@pytest.mark.parametrize("command", ["gather", "spectra", "prepare"])
@pytest.mark.slow
def test_sigint_in_any_command_is_one_line_and_exit_4(scan_inputs, tmp_path, command):
    """Ctrl-C in any command: one line (no traceback), exit 4, nothing half written."""
    import subprocess

    points, scan = scan_inputs
    out = tmp_path / "out"
    out.mkdir()
    argv = {
        "gather": [*map(str, points), "--out", str(out / "scan.nc")],
        "spectra": [str(scan), "--out", str(out / "s.csv"), "--summary", str(out / "s.json")],
        "prepare": ["--out", str(out / "data")],
    }[command]
    proc = subprocess.run(
        [sys.executable, "-c", SIGINT_MID_WRITE, command, *argv], capture_output=True, text=True
    )
    assert proc.returncode == 4, proc.stderr
    assert _failure_lines(proc.stderr) == [
        f"collapse-spectroscopy {command}: interrupted: SIGINT (Ctrl-C) before the command "
        "finished; no output is left half written: rerun it to finish"
    ]
    assert sorted(p.name for p in out.iterdir()) == []  # nothing, not even a temporary
    rerun = subprocess.run([*CLI, command, *argv], capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr


# --- out of memory ----------------------------------------------------------------------------

# A real failed allocation, the same on every machine: 2^45 float64 (256 TiB) is more than a
# 64-bit process can address, whatever the memory and the kernel's overcommit policy.
HUGE = 2**45


@pytest.mark.parametrize(
    ("allocate", "words"),
    [
        (lambda: np.ones(HUGE), "Unable to allocate 256. TiB for an array with shape"),
        (
            lambda: __import__("torch").empty(HUGE),
            "DefaultCPUAllocator: can't allocate memory: you tried to allocate",
        ),
    ],
    ids=["numpy", "torch"],
)
def test_out_of_memory_in_training_is_one_line(
    prepared, tmp_path, capsys, monkeypatch, allocate, words
):
    """A failed allocation in training, numpy's MemoryError or torch's RuntimeError, ends
    in one line naming what to shrink, not a traceback, and leaves no output."""

    def train_scan_point(*args, **kwargs):
        allocate()

    monkeypatch.setattr(train_job, "train_scan_point", train_scan_point)
    out = tmp_path / "p.nc"
    assert main(_train(prepared, out)[3:]) == 2
    (line,) = _failure_lines(capsys.readouterr().err)
    assert line.startswith("collapse-spectroscopy train: error: out of memory (")
    assert words in line and "expected a smaller problem (model.latents" in line
    assert list(tmp_path.iterdir()) == []
