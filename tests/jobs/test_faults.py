"""Faults of the file system (issue 9, item 5): a read-only output, a full disk, no
permission, a missing file. Each gives one line naming the path and the cause, exit status
5, and leaves nothing half written; a read-only destination fails before the work.

Read-only outputs are real read-only bind mounts and full disks real small tmpfs mounts
where the test runs as root (as in the project's containers); elsewhere the read-only
tests inject ``EROFS`` where files and folders are created, and the tests that need a real
full disk or a second process (HDF5's crash, GDAL, Snakemake) skip, saying why. The
injected tests at the end run everywhere and cover each errno at write time.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import re
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from collapse_spectroscopy.cli import main
from collapse_spectroscopy.errors import WriteError, describe_os_error
from collapse_spectroscopy.jobs import train_job
from collapse_spectroscopy.store import atomic as csio
from synthetic_gaussian import gaussian_prepared
from workflow_helpers import ROOT, SNAKEMAKE, tiny_config, workdir

CLI = [sys.executable, "-m", "collapse_spectroscopy.cli"]
PAGE = 4096  # tmpfs allocates whole pages: sizes below are counted in them


# --- real mounts --------------------------------------------------------------------------


def _run(*cmd):
    return subprocess.run(cmd, capture_output=True, text=True)


@functools.cache
def mounts_allowed() -> bool:
    """Whether this process may mount a tmpfs (root, and a kernel that lets it)."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    probe = Path(os.environ.get("TMPDIR", "/tmp")) / f"collapse-mount-probe-{os.getpid()}"
    probe.mkdir(exist_ok=True)
    try:
        if _run("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)).returncode:
            return False
        _run("umount", str(probe))
        return True
    finally:
        probe.rmdir()


NO_MOUNTS = "needs root to mount a read-only bind mount or a small tmpfs"


def _umount(folder: Path) -> None:
    if _run("umount", str(folder)).returncode:
        _run("umount", "-l", str(folder))  # busy: detach it now, the kernel frees it later


@contextlib.contextmanager
def read_only_mount(folder: Path):
    """``folder`` (created empty) as a real read-only bind mount of another empty folder."""
    source = folder.with_name(folder.name + "-source")
    source.mkdir()
    folder.mkdir()
    assert not _run("mount", "--bind", str(source), str(folder)).returncode
    try:
        result = _run("mount", "-o", "remount,ro,bind", str(folder))
        assert not result.returncode, result.stderr
        yield folder
    finally:
        _umount(folder)


@contextlib.contextmanager
def full_disk(folder: Path, free_bytes: int = 0, size: str = "4m"):
    """``folder`` as a small tmpfs filled by a file ``filler`` until ``free_bytes`` are left."""
    folder.mkdir(exist_ok=True)
    result = _run("mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder))
    assert not result.returncode, result.stderr
    try:
        st = os.statvfs(folder)
        fill = st.f_bavail * st.f_frsize - free_bytes
        with open(folder / "filler", "wb") as fh:
            fh.write(b"\0" * fill)
        yield folder
    finally:
        _umount(folder)


def _inject_read_only(monkeypatch, folder: Path) -> None:
    """EROFS for every file or folder created under ``folder``: tempfile (so atomic_path
    and check_writable) creates files with os.open, Path.mkdir uses os.mkdir."""
    real_open, real_mkdir = os.open, os.mkdir

    def under(path) -> bool:
        return Path(os.path.abspath(os.fsdecode(path))).is_relative_to(folder)

    def fake_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and under(path):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))
        return real_open(path, flags, *args, **kwargs)

    def fake_mkdir(path, *args, **kwargs):
        if under(path):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fsdecode(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", fake_open)
    monkeypatch.setattr(os, "mkdir", fake_mkdir)


@pytest.fixture
def read_only(tmp_path, monkeypatch):
    """A read-only folder: a real read-only mount as root, else EROFS injected."""
    folder = tmp_path / "ro"
    if mounts_allowed():
        with read_only_mount(folder):
            yield folder
    else:
        folder.mkdir()
        _inject_read_only(monkeypatch, folder)
        yield folder


# --- inputs for every command -------------------------------------------------------------


def _train_args(data, out, T, *extra):
    return [
        "train",
        "--data",
        str(data),
        "-T",
        str(T),
        "--out",
        str(out),
        "--latents",
        "4",
        "--max-updates",
        "200",
        "--eval-every",
        "100",
        "--checkpoint-every",
        "100000",  # no checkpoint: these tests are about the job's own outputs
        "--engine",
        "fast",
        "--no-progress",
        *extra,
    ]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A prepared dataset, two scan points, their scan.nc and spectra.csv."""
    root = tmp_path_factory.mktemp("inputs")
    data = root / "prepared.npz"
    gaussian_prepared([0.6, 0.3, 0.1, 0.0], sizes=(1000, 300, 300), seed=1).save(data)
    points = [root / f"T{T}.nc" for T in (0.05, 0.3)]
    for T, point in zip((0.05, 0.3), points, strict=True):
        assert main(_train_args(data, point, T)) == 0
    scan, table = root / "scan.nc", root / "spectra.csv"
    assert main(["gather", *map(str, points), "--out", str(scan)]) == 0
    assert main(["spectra", str(scan), "--out", str(table)]) == 0
    return {"data": data, "points": points, "scan": scan, "table": table}


#: What a training job logs on stderr besides a failure: the numba kernels made ready and
#: its progress lines (trainer.Progress). Never a traceback.
_LOG_LINE = re.compile(
    r"(compiling the training kernels .*|training kernels .* in [0-9.]+ s"
    r"|T=\S+ \(beta=\S+\), seed=\d+: update .* updates/s)"
)


def _one_line(err: str) -> str:
    """The one failure line of ``err``, once a training's own log lines are set aside."""
    lines = [line for line in err.strip().splitlines() if not _LOG_LINE.fullmatch(line)]
    assert len(lines) == 1, err
    return lines[0]


# --- a read-only output ---------------------------------------------------------------------


COMMANDS = {
    # command: (argv after the command, the output the message names)
    "prepare": (lambda i, ro: ["--out", str(ro / "data")], "data"),
    "train": (lambda i, ro: _train_args(i["data"], ro / "p.nc", 0.1)[1:], "p.nc"),
    "gather": (lambda i, ro: [*map(str, i["points"]), "--out", str(ro / "scan.nc")], "scan.nc"),
    "spectra": (
        lambda i, ro: [str(i["scan"]), "--out", str(ro / "s.csv"), "--summary", str(ro / "s.json")],
        "s.csv",
    ),
    "figures": (
        lambda i, ro: [str(i["scan"]), str(i["table"]), "--out-dir", str(ro / "figs")],
        "figs",
    ),
}


@pytest.mark.parametrize("command", COMMANDS)
def test_read_only_output_fails_before_any_work(command, inputs, read_only, capsys, monkeypatch):
    """Each command refuses a read-only output before any work, in one line with exit 5:
    `train` must not train to the end only to fail at the write, and no command may end in
    an ``OSError`` traceback."""

    def no_training(*args, **kwargs):
        raise AssertionError("training started although the output cannot be written")

    monkeypatch.setattr(train_job, "train_scan_point", no_training)
    argv, output = COMMANDS[command]
    assert main([command, *argv(inputs, read_only)]) == 5
    line = _one_line(capsys.readouterr().err)
    assert line == (
        f"collapse-spectroscopy {command}: cannot write {str(read_only / output)!r}: "
        "Read-only file system (EROFS)"
    )
    assert list(read_only.iterdir()) == []


def test_train_point_checks_its_outputs_before_training(inputs, read_only, monkeypatch):
    """The library call, not only the CLI, refuses before training (the weights' folder)."""
    monkeypatch.setattr(train_job, "train_scan_point", lambda *a, **k: pytest.fail("trained"))
    out = read_only.parent / "w" / "p.nc"
    with pytest.raises(WriteError) as info:
        train_job.train_point(
            data=inputs["data"],
            temperature=0.1,
            seed=0,
            out=out,
            weights=read_only / "p.pt",
            latents=4,
            sigma2=1.0,
            eval_split="test",
        )
    assert info.value.errno == errno.EROFS and info.value.filename == str(read_only / "p.pt")
    assert not out.parent.exists()  # the check creates no folders


# --- a full disk (real tmpfs) -------------------------------------------------------------


@pytest.mark.skipif(not mounts_allowed(), reason=NO_MOUNTS)
def test_full_disk_gather_fails_cleanly(inputs, tmp_path):
    """A disk that fills during gather: one line and exit 5, never a crash at exit.

    Two pages are left free, so that HDF5 creates the file and fails part-way through, the
    case that can crash the process (on a disk with no room at all it fails cleanly when
    creating)."""
    with full_disk(tmp_path / "full", free_bytes=2 * PAGE) as full:
        out = full / "scan.nc"
        proc = subprocess.run(
            [*CLI, "gather", *map(str, inputs["points"]), "--out", str(out)],
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 5, proc.stderr
        assert _one_line(proc.stderr) == (
            f"collapse-spectroscopy gather: cannot write {str(out)!r}: "
            "No space left on device (ENOSPC)"
        )
        assert os.listdir(full) == ["filler"]


@pytest.mark.skipif(not mounts_allowed(), reason=NO_MOUNTS)
def test_full_disk_train_leaves_none_of_its_outputs(inputs, tmp_path, capsys):
    """Room for the weights and the log (a page each) but not the scan point (two pages):
    the job fails naming the scan point, and removes the weights and log it had written."""
    with full_disk(tmp_path / "full", free_bytes=2 * PAGE) as full:
        out = full / "p.nc"
        assert main(_train_args(inputs["data"], out, 0.1)) == 5
        line = _one_line(capsys.readouterr().err)
        assert line == (
            f"collapse-spectroscopy train: cannot write {str(out)!r}: "
            "No space left on device (ENOSPC)"
        )
        assert os.listdir(full) == ["filler"]


@pytest.fixture(scope="module")
def prepare_sizes(tmp_path_factory):
    """Pages each output of `prepare` (synthetic source) takes, in the order written."""
    out = tmp_path_factory.mktemp("ref") / "data"
    subprocess.run([*CLI, "prepare", "--out", str(out)], check=True, capture_output=True)

    def pages(path: Path) -> int:
        files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
        return sum(-(-p.stat().st_size // PAGE) for p in files)

    order = ["synthetic_layers", "standardization.json", "split_summary.json"]
    order += ["split_blocks.csv", "split_map.png", "split_map.pdf", "prepared.npz"]
    return {name: pages(out / name) for name in order}


@pytest.mark.slow
@pytest.mark.skipif(not mounts_allowed(), reason=NO_MOUNTS)
@pytest.mark.parametrize(
    "victim",
    ["synthetic_layers", "split_blocks.csv", "split_map.png", "split_map.pdf", "prepared.npz"],
)
def test_full_disk_prepare_fails_cleanly_in_each_writer(victim, prepare_sizes, tmp_path):
    """The disk fills halfway through one output: GDAL, pandas, matplotlib's PNG and PDF
    writers (the PDF one's ``zlib.error`` included), numpy's zip each end in the one line."""
    names = list(prepare_sizes)
    before = sum(prepare_sizes[n] for n in names[: names.index(victim)])
    free = (before + prepare_sizes[victim] // 2) * PAGE  # halfway, in whole pages
    with full_disk(tmp_path / "full", free_bytes=free) as full:
        proc = subprocess.run(
            [*CLI, "prepare", "--out", str(full / "data")], capture_output=True, text=True
        )
        assert proc.returncode == 5, proc.stderr
        assert _one_line(proc.stderr) == (
            f"collapse-spectroscopy prepare: cannot write {str(full / 'data' / victim)!r}: "
            "No space left on device (ENOSPC)"
        )
        assert os.listdir(full) == ["filler"]  # nothing half written, not even the folder


# --- the workflow ---------------------------------------------------------------------------


def snakemake(wd, *args):
    cmd = [*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(wd), "--cores", "1", *args]
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env)


@pytest.mark.skipif(not mounts_allowed(), reason=NO_MOUNTS)
def test_workflow_with_read_only_results_says_so_in_one_line(tmp_path):
    """A read-only ``results`` folder is named in one line before any job, not in a
    traceback from inside the first job's preparation; a dry run still works."""
    wd = workdir(tmp_path / "wd", tiny_config([0.1]))
    with read_only_mount(wd / "results"):
        proc = snakemake(wd)
        assert proc.returncode != 0
        assert "Traceback" not in proc.stderr
        assert proc.stderr.strip().splitlines()[-1] == (
            "collapse-spectroscopy workflow: cannot write 'results' (every run's outputs): "
            "Read-only file system (EROFS)"
        )
        assert snakemake(wd, "-n").returncode == 0  # a dry run writes nothing there


@pytest.mark.skipif(not mounts_allowed(), reason=NO_MOUNTS)
def test_workflow_with_read_only_records_says_so_in_one_line(tmp_path):
    """A read-only ``.snakemake`` (Snakemake's records) is named in one line, not in a
    traceback from Snakemake's persistence."""
    wd = workdir(tmp_path / "wd", tiny_config([0.1]))
    with read_only_mount(wd / ".snakemake"):
        proc = snakemake(wd)
        assert proc.returncode != 0
        assert "Traceback" not in proc.stderr
        assert proc.stderr.strip().splitlines()[-1] == (
            "collapse-spectroscopy workflow: cannot write '.snakemake' (Snakemake's records): "
            "Read-only file system (EROFS)"
        )


@pytest.mark.skipif(not mounts_allowed(), reason=NO_MOUNTS)
@pytest.mark.slow
def test_a_full_results_disk_tells_the_terminal_why(tmp_path):
    """The job's one line must reach the terminal, not only its log, which is lost on the
    same full disk: it also goes to Snakemake's stderr (cli.ERROR_FD_ENV, set by the
    workflow's shell prefix), with exit status 5; with room again, the rerun finishes."""
    wd = workdir(tmp_path / "wd", tiny_config([0.1]))
    with full_disk(wd / "results", free_bytes=256 * 1024) as results:
        stage = "results/tiny/config/prepare.json"
        assert snakemake(wd, stage).returncode == 0  # the job's settings, before the disk fills
        st = os.statvfs(results)
        with open(results / "filler2", "wb") as fh:
            fh.write(b"\0" * (st.f_bavail * st.f_frsize))
        proc = snakemake(wd, "results/tiny/data/prepared.npz")
        assert proc.returncode != 0
        line = next(x for x in proc.stderr.splitlines() if x.startswith("collapse-spectroscopy"))
        assert line.startswith("collapse-spectroscopy prepare: cannot write 'results/tiny/data/")
        assert line.endswith("No space left on device (ENOSPC)")
        assert "exit status 5" in proc.stderr
        assert (results / "tiny" / "logs" / "prepare.log").read_bytes() == b""  # lost there
        assert not (results / "tiny" / "data" / "prepared.npz").exists()
        (results / "filler").unlink()
        (results / "filler2").unlink()
        proc = snakemake(wd, "results/tiny/data/prepared.npz")
        assert proc.returncode == 0, proc.stderr


@pytest.mark.skipif(not mounts_allowed(), reason=NO_MOUNTS)
@pytest.mark.slow
def test_split_map_copy_never_leaves_a_truncated_png(tmp_path):
    """The whole working directory on a disk that fills during the copy: no truncated PNG
    may be left under the output's name, since Snakemake, failing to record metadata on
    the same full disk, would not remove it."""
    target = "results/tiny/figures/split_map.png"
    png = os.urandom(80_000)  # incompressible, larger than the room left below
    with full_disk(tmp_path / "wd", free_bytes=2 * 1024 * 1024, size="3m") as wd:
        (wd / "filler").unlink()
        workdir(wd, tiny_config([0.1]))
        data = wd / "results" / "tiny" / "data"
        data.mkdir(parents=True)
        # the prepare step's outputs stand in place, so only the copy runs
        for name in ("prepared.npz", "split_summary.json", "standardization.json"):
            (data / name).write_bytes(b"")
        (data / "split_map.pdf").write_bytes(b"")
        (data / "split_map.png").write_bytes(png)
        assert snakemake(wd, "-n", target).returncode == 0  # Snakemake's records exist
        st = os.statvfs(wd)
        with open(wd / "filler", "wb") as fh:  # leave 32 KiB
            fh.write(b"\0" * (st.f_bavail * st.f_frsize - 32 * 1024))
        proc = snakemake(wd, target, "--allowed-rules", "split_map_figure")
        assert proc.returncode != 0
        assert "Error in rule split_map_figure" in proc.stderr
        figures = wd / "results" / "tiny" / "figures"
        assert not figures.exists() or os.listdir(figures) == []
        (wd / "filler").unlink()
        proc = snakemake(wd, target, "--allowed-rules", "split_map_figure")
        assert proc.returncode == 0, proc.stderr
        assert (wd / target).read_bytes() == png


# --- injected faults: every errno, everywhere -------------------------------------------------


def _inject_at_write(monkeypatch, code: int) -> None:
    """The fault ``code`` where io.write_bytes (gather's writer) writes its file: a full
    disk when writing (an OSError without a file name, as write(2) gives), the others
    when opening the temporary file (naming it, as open(2) gives)."""

    class Full:
        def __init__(self, fh):
            self.fh = fh

        def write(self, data):
            self.fh.write(bytes(data)[:1000])  # half written, then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

    def fake_open(path, mode="r", *args, **kwargs):
        if code != errno.ENOSPC:
            raise OSError(code, os.strerror(code), os.fspath(path))
        return Full(open(path, mode, *args, **kwargs))

    monkeypatch.setattr(csio, "open", fake_open, raising=False)


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EACCES, errno.ENOENT])
def test_injected_write_faults_name_the_output(code, inputs, tmp_path, capsys, monkeypatch):
    _inject_at_write(monkeypatch, code)
    out = tmp_path / "scan.nc"
    assert main(["gather", *map(str, inputs["points"]), "--out", str(out)]) == 5
    assert _one_line(capsys.readouterr().err) == (
        f"collapse-spectroscopy gather: cannot write {str(out)!r}: "
        f"{os.strerror(code)} ({errno.errorcode[code]})"
    )
    assert list(tmp_path.iterdir()) == []  # neither scan.nc nor its temporary file


def test_a_zlib_error_raised_while_handling_a_full_disk_still_names_it(tmp_path):
    """matplotlib's PDF writer, on a full disk, ends in zlib's error from its clean-up."""
    out = tmp_path / "fig.pdf"
    with pytest.raises(WriteError) as info, csio.atomic_path(out):
        try:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError:
            stream = zlib.compressobj()
            stream.flush()
            stream.flush()  # zlib.error: Error -2 while flushing: inconsistent stream state
    assert (info.value.errno, info.value.filename) == (errno.ENOSPC, str(out))
    assert list(tmp_path.iterdir()) == []


def test_an_error_about_another_file_is_not_blamed_on_the_output(tmp_path):
    """An input read while writing keeps its own name (and errno): ENOENT on the input."""
    missing = tmp_path / "missing.csv"
    with pytest.raises(FileNotFoundError) as info, csio.atomic_path(tmp_path / "out.csv"):
        missing.read_text()
    assert not isinstance(info.value, WriteError) and info.value.filename == str(missing)
    assert describe_os_error(info.value) == (
        f"cannot access {str(missing)!r}: No such file or directory (ENOENT)"
    )
    assert list(tmp_path.iterdir()) == []


def test_a_library_write_error_without_errno_names_the_output(tmp_path):
    """GDAL's 'Write failed' is an OSError without an errno: on a disk with room it is
    reported as an I/O error naming the output, with the library's words."""
    from rasterio.errors import RasterioIOError

    folder = tmp_path / "layers"
    with pytest.raises(WriteError) as info, csio.atomic_directory(folder):
        raise RasterioIOError("Write failed. See previous exception for details.")
    assert (info.value.errno, info.value.filename) == (errno.EIO, str(folder))
    assert "Write failed" in info.value.strerror
    assert list(tmp_path.iterdir()) == []


def test_an_os_error_without_a_path_names_the_commands_outputs():
    exc = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert describe_os_error(exc, ["resources/worldclim"]) == (
        "No space left on device (ENOSPC) while writing 'resources/worldclim'"
    )


def test_a_file_where_a_folder_belongs(inputs, tmp_path, capsys):
    blocker = tmp_path / "results"
    blocker.write_text("a file, not a folder")
    out = blocker / "scan.nc"
    assert main(["gather", *map(str, inputs["points"]), "--out", str(out)]) == 5
    assert _one_line(capsys.readouterr().err) == (
        f"collapse-spectroscopy gather: cannot write {str(out)!r}: "
        f"{str(blocker)!r} is not a folder (ENOTDIR)"
    )
