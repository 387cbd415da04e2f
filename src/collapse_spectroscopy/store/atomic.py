"""Atomic file output: no reader ever sees half a file, and a fault names the output.

Each writer writes to a temporary name in the destination folder and renames it into
place with :func:`os.replace`, which is atomic on POSIX within one filesystem. A job
killed mid-write leaves at most a ``.tmp-*`` file behind, never a file that looks complete.

A write that fails for a reason of the file system (read-only, full, no permission)
raises :class:`~collapse_spectroscopy.errors.WriteError` naming the output the user asked
for and the cause, whatever library was writing: matplotlib, for one, ends a full disk in
a ``zlib.error`` raised while handling the ``OSError``, and GDAL in an ``OSError``
without an error number. Libraries that hide the ``OSError`` (torch raises a bare
``RuntimeError``) or mishandle it (HDF5 crashes the process at exit after a failed
write) build the file in memory instead, and :func:`write_bytes` writes the bytes.
:func:`check_writable` lets a command find a read-only or misplaced output folder before
any expensive work.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from collapse_spectroscopy.errors import WriteError, os_error_cause

# A library that fails a write without saying why (GDAL's "Write failed") is taken to have
# hit a full disk when less than this is free at that moment: a write refused for want of
# space leaves less free than its own size, for GDAL a strip or tile far below 1 MiB.
NEARLY_FULL_BYTES = 1 << 20


def _exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was raised from or while handling, newest first."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _free_bytes(folder: Path) -> int | None:
    try:
        st = os.statvfs(folder)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def _is_within(inner, outer) -> bool:
    """Whether path ``inner`` is ``outer`` or lies under it (lexically, no file access)."""
    inner, outer = os.path.abspath(inner), os.path.abspath(outer)
    return inner == outer or inner.startswith(outer.rstrip(os.sep) + os.sep)


def _names_this_output(name, path: Path, scratch: Path | None) -> bool:
    """Whether an ``OSError``'s file name is about writing ``path``: no name, the output,
    a folder on the way to it or in it, or the temporary file or folder ``scratch``."""
    if name is None:
        return True
    if not isinstance(name, str | bytes | os.PathLike):
        return False  # a file descriptor: nothing to go by
    name = os.fsdecode(name)
    return (
        _is_within(path, name)
        or _is_within(name, path)
        or (scratch is not None and _is_within(name, scratch))
    )


def _write_fault(exc: BaseException, path: Path, scratch: Path | None) -> WriteError | None:
    """The :class:`WriteError` that ``exc``, raised while writing ``path``, amounts to.

    ``scratch`` is the temporary file or folder being written. ``None`` means ``exc`` is
    no fault of the file system (bad data, an interrupt, a bug), or one that names another
    file (an input read inside the block): it is then raised as it is.
    """
    if isinstance(exc, WriteError) or not isinstance(exc, Exception):
        return None  # already named, or an interrupt (KeyboardInterrupt, SystemExit)
    chain = list(_exception_chain(exc))
    for e in chain:
        if isinstance(e, OSError) and isinstance(e.errno, int):
            if not all(_names_this_output(n, path, scratch) for n in (e.filename, e.filename2)):
                return None
            return WriteError(e.errno, e.strerror or os.strerror(e.errno), os.fspath(path))
    if any(isinstance(e, OSError) for e in chain):  # a library's OSError without an errno
        free = _free_bytes(path.parent)
        if free is not None and free < NEARLY_FULL_BYTES:
            return WriteError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(path))
        return WriteError(errno.EIO, f"{type(exc).__name__}: {exc}", os.fspath(path))
    return None


def _make_parent(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise WriteError(exc.errno, exc.strerror, os.fspath(path)) from exc


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it onto ``path`` if the block succeeds.

    The temporary name keeps the destination's suffix, so libraries that pick a format
    from the extension (matplotlib, xarray) still do the right thing. On any exception the
    temporary file is removed and ``path`` is left untouched; a fault of the file system
    is raised as :class:`WriteError` naming ``path``.
    """
    path = Path(path)
    _make_parent(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.stem}-", suffix=path.suffix, dir=path.parent)
    except OSError as exc:
        raise WriteError(exc.errno, exc.strerror, os.fspath(path)) from exc
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600; give the result the permissions a plain open() would
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException as exc:
        fault = _write_fault(exc, path, tmp_path)  # before the clean-up frees the space
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        if fault is not None:
            raise fault from exc
        raise


@contextlib.contextmanager
def atomic_directory(folder: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``folder``; it replaces ``folder`` if the block succeeds.

    The folder is thus either complete or absent (an existing one is replaced); on any
    exception the temporary folder is removed, and a fault of the file system is raised
    as :class:`WriteError` naming ``folder``.
    """
    folder = Path(folder)
    _make_parent(folder)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{folder.name}-", dir=folder.parent))
    except OSError as exc:
        raise WriteError(exc.errno, exc.strerror, os.fspath(folder)) from exc
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; its contents are ordinary outputs
        yield tmp
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException as exc:
        fault = _write_fault(exc, folder, tmp)
        shutil.rmtree(tmp, ignore_errors=True)
        if fault is not None:
            raise fault from exc
        raise


@contextlib.contextmanager
def all_or_none() -> Iterator[list[Path]]:
    """Outputs written one after another that stand or fall together.

    Append each path to the yielded list once it is written; if a later write fails, the
    earlier ones are removed, so no subset of a job's outputs is left looking complete.
    """
    written: list[Path] = []
    try:
        yield written
    except BaseException:
        for path in written:
            Path(path).unlink(missing_ok=True)
        raise


def write_bytes(path: str | os.PathLike, data) -> None:
    """Write ``data`` (bytes, or a buffer such as a memoryview) to ``path``, atomically.

    For files a library builds in memory: plain file I/O reports a full disk as an
    ``OSError`` (here a :class:`WriteError` naming ``path``) where HDF5 crashes and torch
    raises a bare ``RuntimeError``.
    """
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)


def save_torch(path: str | os.PathLike, obj) -> None:
    """``torch.save(obj)`` to ``path``, atomically, with a full disk a :class:`WriteError`.

    torch's own file writer turns a failed write into ``RuntimeError('... unexpected
    pos ...')``, which names neither the file nor the cause: serialize in memory instead.
    """
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_bytes(path, buffer.getbuffer())


def check_writable(path: str | os.PathLike) -> None:
    """Raise :class:`WriteError` unless ``path`` (a file or folder to write) can be written.

    Cheap, so a command calls it before any expensive work: it creates and removes a probe
    file in ``path`` if that is a folder, else in the nearest existing folder on the way to
    ``path`` (where the writer will create what is missing), which catches a read-only
    file system, a missing permission and a file standing where a folder should be. It
    creates no folders. A full disk shows only when the bytes are written.
    """
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise WriteError(errno.ENOTDIR, f"{str(folder)!r} is not a folder", os.fspath(path))
    try:
        fd, probe = tempfile.mkstemp(prefix=".tmp-write-check-", dir=folder)
    except OSError as exc:
        raise WriteError(exc.errno, exc.strerror, os.fspath(path)) from exc
    os.close(fd)
    os.unlink(probe)


def why_not_writable(path: str | os.PathLike) -> str | None:
    """``None`` if :func:`check_writable` passes for ``path``, else the cause in words,
    e.g. ``Read-only file system (EROFS)`` (for the workflow, which words its own line)."""
    try:
        check_writable(path)
    except OSError as exc:
        return os_error_cause(exc)
    return None


def remove_stale_temporaries(path: str | os.PathLike) -> None:
    """Delete temporary files :func:`atomic_path` left beside ``path`` when a job was killed.

    A SIGKILL (or a node lost) gives no chance to clean up; the rerun of the same job
    removes its own leftovers before writing again.
    """
    path = Path(path)
    if path.parent.is_dir():
        for stale in path.parent.glob(f".tmp-{path.stem}-*{path.suffix}"):
            with contextlib.suppress(FileNotFoundError):
                stale.unlink()


def write_json(path: str | os.PathLike, obj) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=json_default) + "\n")


def json_default(o):
    """JSON fallback for numpy scalars/arrays and paths."""
    # numpy scalars and arrays appear in summaries; JSON knows only Python types.
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serializable: {type(o).__name__}")
