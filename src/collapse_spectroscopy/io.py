"""Atomic file output: no reader ever sees half a file.

Each writer writes to a temporary name in the destination folder and renames it into
place with :func:`os.replace`, which is atomic on POSIX within one filesystem. A job
killed mid-write leaves at most a ``.tmp-*`` file behind, never a file that looks complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it onto ``path`` if the block succeeds.

    The temporary name keeps the destination's suffix, so libraries that pick a format
    from the extension (matplotlib, xarray) still do the right thing. On any exception the
    temporary file is removed and ``path`` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.stem}-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600; give the result the permissions a plain open() would
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


@contextlib.contextmanager
def atomic_directory(folder: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``folder``; it replaces ``folder`` if the block succeeds.

    The folder is thus either complete or absent (an existing one is replaced); on any
    exception the temporary folder is removed.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{folder.name}-", dir=folder.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; its contents are ordinary outputs
        yield tmp
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


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
