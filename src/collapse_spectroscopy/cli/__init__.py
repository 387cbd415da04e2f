"""The ``collapse-spectroscopy`` command: one subcommand per workflow step.

Each Snakemake rule calls exactly one subcommand, so every step can be rerun and debugged
without Snakemake. One module per group of subcommands registers them
(``register_NAME(subparsers)``); :data:`COMMANDS` lists them in workflow order, which keeps
this file a table of contents:

``data``      ``prepare`` a run's dataset, ``fetch`` the WorldClim archive
``scan``      ``train`` one scan point, ``gather`` the scan
``spectra``   ``spectra`` of a gathered scan
``figures``   ``figures``: the paper's Figs 1-4
``maps``      ``maps``: latent maps and loadings of one scan point
``studies``   ``study``: the comparison of a study's runs
``beta``      ``beta``: T <-> beta
``runconfig`` ``--run-config``: the options a run's resolved configuration sets
``argtypes``  the argument types they share

The options a configuration key sets take their defaults from the schema
(:mod:`collapse_spectroscopy.settings`) and, with ``--run-config FILE`` (the workflow passes
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
4
    interrupted by SIGTERM/SIGUSR1 after writing a checkpoint: rerun to resume;
5
    a fault of the file system: the message names the path and the cause, e.g.
    ``cannot write 'results/demo/scan.nc': No space left on device (ENOSPC)`` (also
    read-only, EROFS; no permission, EACCES; missing, ENOENT). No output is left half
    written: each is written under a temporary name and renamed into place when complete.

Before a subcommand does any work, the outputs its options name (:data:`OUTPUT_OPTIONS`)
are checked for writing, so that a read-only or misplaced destination fails in a second,
not after the work.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .. import __version__
from ..errors import (
    EXIT_INPUT,
    EXIT_INTERRUPTED,
    EXIT_IO,
    EXIT_TRAINING,
    InputError,
    Interrupted,
    TrainingError,
    describe_os_error,
)
from ..io import check_writable
from .runconfig import with_run_config

# The options by which subcommands name what they write (argparse dest names): every
# subcommand uses these names for its outputs, and only for outputs.
OUTPUT_OPTIONS = ("out", "out_dir", "weights", "log", "summary", "dest")

# the subcommands, in workflow order: (name, module of this package, its register function)
COMMANDS = [
    ("prepare", "data", "register_prepare"),
    ("fetch", "data", "register_fetch"),
    ("train", "scan", "register_train"),
    ("gather", "scan", "register_gather"),
    ("spectra", "spectra", "register_spectra"),
    ("figures", "figures", "register_figures"),
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
        "linear beta-VAEs and measure its collapse, utility and PCA spectra.",
        epilog="Exit status: 0 success; 2 bad input; 3 training failed; 4 interrupted "
        "after a checkpoint (rerun to resume); 5 a file-system fault (read-only, disk full, "
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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    names = [name for name, _, _ in COMMANDS]
    # a command first: its parser alone (anything else, e.g. --help: every parser)
    parser = build_parser(argv[0] if argv and argv[0] in names else None)
    args = parser.parse_args(argv)
    outputs = output_paths(args)
    try:
        if getattr(args, "run_config", None) is not None:
            args = with_run_config(parser, argv, args)
        for path in outputs:
            check_writable(path)
        result = args.func(args)
    except InputError as exc:
        print(f"collapse-spectroscopy {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except TrainingError as exc:
        print(f"collapse-spectroscopy {args.command}: training failed: {exc}", file=sys.stderr)
        return EXIT_TRAINING
    except Interrupted as exc:
        print(f"collapse-spectroscopy {args.command}: interrupted: {exc}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as exc:
        message = describe_os_error(exc, outputs)
        print(f"collapse-spectroscopy {args.command}: {message}", file=sys.stderr)
        return EXIT_IO
    return int(result or 0)
