"""The ``collapse-spectroscopy`` command: one subcommand per workflow step.

Each Snakemake rule calls exactly one subcommand, so every step can be rerun and debugged
without Snakemake. One module per group of subcommands registers them
(``register_NAME(subparsers)``); :data:`COMMANDS` lists them in workflow order, which keeps
this file a table of contents:

``data``      ``prepare`` a run's dataset, ``fetch`` the WorldClim archive
``scan``      ``train`` one scan point, ``gather`` the scan
``refine``    ``refine``: the temperatures a refinement round adds
``baselines`` ``autoencoder``: the autoencoder baseline of an MLP run
``spectra``   ``spectra`` of a gathered scan
``figures``   ``figures``: the paper's Figs 1-4
``maps``      ``maps``: latent maps and loadings of one scan point
``studies``   ``study``: the comparison of a study's runs
``beta``      ``beta``: T <-> beta
``runconfig`` ``--run-config``: the options a run's resolved configuration sets
``schema_options`` an option that sets a configuration key, generated from its schema
``argtypes``  the argument types they share

The options a configuration key sets take their help, default, choices, type and nargs
from the schema (:mod:`collapse_spectroscopy.config.settings`, through
:mod:`.schema_options`) and, with ``--run-config FILE`` (the workflow passes
``results/RUN/config/COMMAND.json``), their values from the run's configuration; an option
given explicitly wins.

Every failure is one line on stderr, ``collapse-spectroscopy COMMAND: ...``, never a
traceback, and an exit status that says which kind it was:

0
    success;
2
    bad input: the message names the file, key or value and what was expected (also
    argparse's status for a bad option);
3
    training failed (a non-finite loss): the message names T, seed and update;
2 also: out of memory (a ``MemoryError``, or torch's failed allocation): the problem is
    too large for the machine, the message says what to shrink;
4
    interrupted: by SIGTERM, SIGUSR1 or SIGINT (Ctrl-C) during training, after writing a
    checkpoint; by SIGINT anywhere else, with no output half written: rerun to resume;
5
    a fault of the file system: the message names the path and the cause, e.g.
    ``cannot write 'results/demo/scan.nc': No space left on device (ENOSPC)`` (also
    read-only, EROFS; no permission, EACCES; missing, ENOENT). No output is left half
    written: each is written under a temporary name and renamed into place when complete.

Where the log is the terminal's only copy of that line (a workflow job writes its stderr to
its log, which a full disk cannot take), the line also goes to the file descriptor named
by :data:`ERROR_FD_ENV`: the workflow's shell prefix points it at Snakemake's own stderr.

Before a subcommand does any work, the outputs its options name (:data:`OUTPUT_OPTIONS`)
are checked for writing, so that a read-only or misplaced destination fails in a second,
not after the work.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys

from collapse_spectroscopy import __version__
from collapse_spectroscopy.cli.runconfig import with_run_config
from collapse_spectroscopy.errors import (
    EXIT_INPUT,
    EXIT_INTERRUPTED,
    EXIT_IO,
    EXIT_TRAINING,
    InputError,
    Interrupted,
    TrainingError,
    describe_os_error,
)
from collapse_spectroscopy.store.atomic import check_writable

# The options by which subcommands name what they write (argparse dest names): every
# subcommand uses these names for its outputs, and only for outputs.
OUTPUT_OPTIONS = ("out", "out_dir", "weights", "log", "summary", "dest")

# The file descriptor (a number) to which the one error line also goes, when it is not
# stderr's own file (workflow/rules/common.smk sets it for every job: the job's stderr is
# its log file, on the results disk, where a full disk loses the line).
ERROR_FD_ENV = "COLLAPSE_SPECTROSCOPY_ERROR_FD"

# the subcommands, in workflow order: (name, module of this package, its register function)
COMMANDS = [
    ("prepare", "data", "register_prepare"),
    ("fetch", "data", "register_fetch"),
    ("train", "scan", "register_train"),
    ("gather", "scan", "register_gather"),
    ("refine", "refine", "register_refine"),
    ("measure", "scan", "register_measure"),
    ("autoencoder", "baselines", "register_autoencoder"),
    ("spectra", "spectra", "register_spectra"),
    ("figures", "figures", "register_figures"),
    ("hysteresis", "figures", "register_hysteresis"),
    ("rate-distortion", "figures", "register_rate_distortion"),
    ("maps", "maps", "register_maps"),
    ("study", "studies", "register_study"),
    ("beta", "beta", "register_beta"),
]


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every subcommand; with ``command`` (a name of :data:`COMMANDS`), of
    that one only, so that a job imports what its command uses and no more (``train``
    never loads the datasets package, whose module ``data`` builds its help from)."""
    parser = argparse.ArgumentParser(
        prog="collapse-spectroscopy",
        description="Posterior collapse as spectral pruning: train a temperature scan of "
        "beta-VAEs (linear, or MLP for nonlinear runs) and measure its collapse, utility "
        "and PCA spectra. The usual entry point is the Snakemake workflow (`snakemake "
        "--cores N` in the project folder, README), which runs these commands, one per "
        "rule, with each run's settings; use them directly to rerun or inspect one step.",
        epilog="Exit status: 0 success; 2 bad input; 3 training failed; 4 interrupted "
        "(SIGTERM, SIGUSR1, Ctrl-C; training writes a checkpoint first: rerun to resume); "
        "5 a file-system fault (read-only, disk full, "
        "no permission, missing file). Each failure is one line naming the file, key or "
        "value.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module, register in COMMANDS:
        if command in (None, name):
            getattr(importlib.import_module(f".{module}", __name__), register)(sub)
            if name not in sub.choices:
                raise RuntimeError(f"{module}.{register} did not register {name!r}")
    return parser


def output_paths(args: argparse.Namespace) -> list[str]:
    """The paths the parsed subcommand will write, from its output options."""
    return [os.fspath(v) for name in OUTPUT_OPTIONS if (v := getattr(args, name, None))]


def report(line: str) -> None:
    """Write the one error line to stderr and to :data:`ERROR_FD_ENV`'s descriptor; a
    stream that cannot take it (a full or read-only disk) is skipped, never a traceback."""
    with contextlib.suppress(OSError, ValueError):
        print(line, file=sys.stderr, flush=True)
    fd = os.environ.get(ERROR_FD_ENV, "")
    if not fd.isdigit():
        return
    with contextlib.suppress(OSError, ValueError):
        mine, theirs = os.fstat(int(fd)), os.fstat(sys.stderr.fileno())
        if (mine.st_dev, mine.st_ino) != (theirs.st_dev, theirs.st_ino):
            os.write(int(fd), f"{line}\n".encode())


def out_of_memory(exc: BaseException) -> str | None:
    """What an allocation that failed asked for, in one line (numpy's ``MemoryError``,
    torch's ``RuntimeError`` from its CPU allocator, CUDA's ``OutOfMemoryError``); None
    for any other exception."""
    text = " ".join(str(exc).split())
    if isinstance(exc, MemoryError):
        return text or "an allocation failed"
    memory_words = ("not enough memory", "can't allocate memory", "out of memory")
    if isinstance(exc, RuntimeError) and (
        type(exc).__name__ == "OutOfMemoryError" or any(w in text for w in memory_words)
    ):
        return text.split("] ")[-1]  # torch prefixes "[enforce fail at alloc_cpu.cpp:N] "
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    names = [name for name, _, _ in COMMANDS]
    command = argv[0] if argv and argv[0] in names else None
    try:
        return _main(argv, command)
    except KeyboardInterrupt:
        # SIGINT (Ctrl-C) outside a training (which checkpoints on it, then exits 4):
        # every output is written under a temporary name, removed on the way out
        report(
            f"collapse-spectroscopy{f' {command}' if command else ''}: interrupted: SIGINT "
            "(Ctrl-C) before the command finished; no output is left half written: rerun "
            "it to finish"
        )
        return EXIT_INTERRUPTED


def _main(argv: list[str], command: str | None) -> int:
    # a command first: its parser alone (anything else, e.g. --help: every parser)
    parser = build_parser(command)
    args = parser.parse_args(argv)
    outputs = output_paths(args)
    try:
        if getattr(args, "run_config", None) is not None:
            args = with_run_config(parser, argv, args)
        for path in outputs:
            check_writable(path)
        result = args.func(args)
    except InputError as exc:
        report(f"collapse-spectroscopy {args.command}: error: {exc}")
        return EXIT_INPUT
    except TrainingError as exc:
        report(f"collapse-spectroscopy {args.command}: training failed: {exc}")
        return EXIT_TRAINING
    except Interrupted as exc:
        report(f"collapse-spectroscopy {args.command}: interrupted: {exc}")
        return EXIT_INTERRUPTED
    except OSError as exc:
        report(f"collapse-spectroscopy {args.command}: {describe_os_error(exc, outputs)}")
        return EXIT_IO
    except (MemoryError, RuntimeError) as exc:
        if (what := out_of_memory(exc)) is None:
            raise
        report(
            f"collapse-spectroscopy {args.command}: error: out of memory ({what}): expected "
            "a smaller problem (model.latents, model.hidden, the dataset's size) or a "
            "machine with more memory"
        )
        return EXIT_INPUT
    return int(result or 0)
