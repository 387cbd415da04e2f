"""The exceptions the CLI turns into one clear line and a documented exit status.

Every check of user input (a file, a config key, a value) raises :class:`InputError`
with a message that names the file, key or value and says what was expected (exit 2).
A fault of the file system (read-only, full, no permission, missing) is an
:class:`OSError`; the writers raise :class:`WriteError`, which names the output the user
asked for (never a temporary name) and the cause, and :func:`describe_os_error` words
any ``OSError`` as one line (exit 5).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable

# Exit statuses of `collapse-spectroscopy` (documented in cli.py and the README).
EXIT_OK = 0
EXIT_INPUT = 2
EXIT_TRAINING = 3
EXIT_INTERRUPTED = 4
EXIT_IO = 5


class InputError(ValueError):
    """Bad input from the user: the message names what is wrong and what was expected."""


class TrainingError(RuntimeError):
    """Training cannot go on (a non-finite loss): the message names T, seed and update."""


class Interrupted(RuntimeError):
    """Training stopped on a signal after writing a checkpoint; rerun to resume (exit 4;
    raised by :mod:`.checkpoint`'s users, defined here so the CLI catches it without
    importing torch)."""


class WriteError(OSError):
    """An output could not be written: ``filename`` is the output, ``strerror`` the cause.

    Raised as ``WriteError(errno, strerror, path)``, like any ``OSError``.
    """


def describe_os_error(exc: OSError, outputs: Iterable[str | os.PathLike] = ()) -> str:
    """One line naming the path and the cause of ``exc``, e.g.

    ``cannot write 'results/demo/scan.nc': No space left on device (ENOSPC)``.

    An ``OSError`` without a file name (a library's write that failed deep inside) is
    described with the ``outputs`` of the command, so the line still says where.
    """
    cause = os_error_cause(exc)
    if exc.filename is None:
        where = ", ".join(repr(os.fspath(p)) for p in outputs)
        return f"{cause}" + (f" while writing {where}" if where else "")
    verb = "cannot write" if isinstance(exc, WriteError) else "cannot access"
    where = repr(os.fspath(exc.filename))
    if exc.filename2 is not None:
        where += f" -> {os.fspath(exc.filename2)!r}"
    return f"{verb} {where}: {cause}"


def os_error_cause(exc: OSError) -> str:
    """The cause of ``exc`` in words with its symbolic code: ``Read-only file system (EROFS)``."""
    code = errno.errorcode.get(exc.errno) if isinstance(exc.errno, int) else None
    cause = exc.strerror or str(exc) or type(exc).__name__
    return f"{cause} ({code})" if code else cause
