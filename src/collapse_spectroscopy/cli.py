"""The ``collapse-spectroscopy`` command: one subcommand per workflow step.

Each Snakemake rule calls exactly one subcommand, so every step can be rerun and debugged
without Snakemake. Subcommands are registered by the module that implements them
(``register(subparsers)``), which keeps this file a table of contents.

Exit status: 0 success; 2 bad input (the message names the file, key or value);
3 training failed (non-finite loss; the message names T, seed and update);
4 interrupted by SIGTERM/SIGUSR1 after writing a checkpoint (rerun to resume).
"""

from __future__ import annotations

import argparse
import sys

from . import __version__
from .checkpoint import Interrupted
from .errors import InputError, TrainingError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="collapse-spectroscopy",
        description="Posterior collapse as spectral pruning: train a temperature scan of "
        "linear beta-VAEs and measure its collapse, utility and PCA spectra.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from . import commands

    for register in commands.REGISTRY:
        register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except InputError as exc:
        print(f"collapse-spectroscopy {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except TrainingError as exc:
        print(f"collapse-spectroscopy {args.command}: training failed: {exc}", file=sys.stderr)
        return 3
    except Interrupted as exc:
        print(f"collapse-spectroscopy {args.command}: interrupted: {exc}", file=sys.stderr)
        return 4
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
