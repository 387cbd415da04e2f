"""Options a run configuration sets: ``--run-config results/RUN/config/STAGE.json``.

For each run and command (stage), the workflow writes the sections of the run's resolved
configuration (every key of the schema, defaults filled in) that the command reads,
:data:`collapse_spectroscopy.config.settings.STAGES`, to ``results/RUN/config/STAGE.json``, and
hands its path to the command's jobs: a key reruns exactly the jobs whose stage reads it.
A command reads only its stage's sections of the file it is given (a whole resolved run
works too).

Each option that a configuration key can set is declared once, with
:func:`config_option`: its help, default, choices, type and nargs are the schema's
(:mod:`.schema_options`), and its help names the key. ``--run-config`` turns the file's
values into those options, placed *before* the command line's own arguments, so an
explicit option still wins and argparse converts and checks a value from the file exactly
as one typed by hand.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from collapse_spectroscopy.cli.schema_options import schema_argument
from collapse_spectroscopy.config import settings
from collapse_spectroscopy.config.validate import nonfinite_errors, schema_errors
from collapse_spectroscopy.errors import InputError


@dataclass(frozen=True)
class ConfigOption:
    """A command-line option that the configuration key ``key`` (``section.name``) sets."""

    key: str
    flag: str
    to_argv: Callable[[str, object], list[str]]

    def argv(self, run: dict) -> list[str]:
        value = run
        for name in self.key.split("."):  # section.name, or deeper (baselines.autoencoder.seed)
            value = value.get(name) if isinstance(value, dict) else None
        return [] if value is None else self.to_argv(self.flag, value)


def scalar_argv(flag: str, value) -> list[str]:
    # '=': a negative number after a space would read as an option
    return [f"{flag}={value}"]


def json_argv(flag: str, value) -> list[str]:
    """An object key (``model.options``) as one JSON argument."""
    return [f"{flag}={json.dumps(value, sort_keys=True)}"]


def list_argv(flag: str, value) -> list[str]:
    values = [value] if isinstance(value, str) else list(value)
    return [flag, *map(str, values)] if values else []


def config_option(
    parser: argparse.ArgumentParser,
    key: str,
    flag: str,
    *aliases: str,
    suffix: str = "",
    to_argv: Callable[[str, object], list[str]] | None = None,
    **overrides,
) -> None:
    """Add ``flag`` to ``parser``: an option that configuration key ``key`` sets, whose
    help, default, choices, type and nargs are the schema's
    (:func:`.schema_options.schema_argument`; ``overrides`` and ``suffix`` are the
    command's own), and which ``--run-config`` sets from the key."""
    command = parser.prog.split()[-1]
    if not any(key == e or key.startswith(f"{e}.") for e in settings.STAGES[command]):
        # a programming error: the workflow would not rerun this command when key changes
        raise ValueError(f"{command} reads {key}, outside its stage {settings.STAGES[command]}")
    action = schema_argument(parser, key, flag, *aliases, suffix=suffix, **overrides)
    if to_argv is None and settings.key_schema(key).get("type") == "object":
        to_argv = json_argv  # model.options: one JSON argument
    if to_argv is None:
        to_argv = list_argv if action.nargs in ("*", "+") else scalar_argv
    options = parser.get_default("config_options") or ()
    parser.set_defaults(config_options=(*options, ConfigOption(key, flag, to_argv)))


def add_run_config_argument(parser: argparse.ArgumentParser) -> None:
    """The ``--run-config`` option of a command with configuration options."""
    command = parser.prog.split()[-1]
    sections = ", ".join(settings.STAGES[command])
    parser.add_argument(
        "--run-config",
        type=Path,
        metavar="JSON",
        help=f"a run configuration (JSON, or YAML if not .json; the workflow writes "
        f"results/RUN/config/{command}.json): its sections {sections} set every option "
        "marked with a key; an option given on the command line wins",
    )


def read_run_config(path: Path, command: str) -> dict:
    """The sections of ``command``'s stage in the run configuration at ``path``, checked
    against the schema (InputError naming the file and the key)."""
    if not path.is_file():
        raise InputError(
            f"--run-config {str(path)!r} does not exist: expected a run configuration "
            f"(the workflow writes results/RUN/config/{command}.json)"
        )
    text = path.read_text()
    try:
        run = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise InputError(f"--run-config {str(path)!r} is not valid JSON or YAML: {exc}") from None
    if not isinstance(run, dict):
        raise InputError(
            f"--run-config {str(path)!r}: expected a mapping of sections "
            f"({', '.join(settings.SECTIONS)}), got {type(run).__name__}"
        )
    sections = settings.stage_sections(run, command)
    errors = nonfinite_errors(sections) + schema_errors(sections, settings.stage_schema(command))
    if errors:
        raise InputError(f"--run-config {str(path)!r}: " + "; ".join(errors))
    return sections


def with_run_config(parser: argparse.ArgumentParser, argv: list[str], args) -> argparse.Namespace:
    """``args`` parsed again with the run configuration's options before the command
    line's own (which therefore win)."""
    run = read_run_config(args.run_config, args.command)
    flags = [a for option in args.config_options for a in option.argv(run)]
    at = argv.index(args.command) + 1
    return parser.parse_args([*argv[:at], *flags, *argv[at:]])
