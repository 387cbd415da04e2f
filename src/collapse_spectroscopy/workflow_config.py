"""Checks of the workflow's configuration that name the offending key (issue 4).

Snakemake's ``validate`` fills in the schema's defaults but reports an error by its
*schema* path. :func:`check_config` runs first and reports the *config* key instead
(``runs.demo.scan.temperatures[1]: -0.2 is less than or equal to the minimum of 0``), then
the checks a schema cannot express: runs named in ``default_runs`` exist, split fractions
sum to 1, a log-spaced grid has ``min <= max``, non-generated sources name a path.
"""

from __future__ import annotations

import os

import jsonschema
import yaml

from .errors import InputError


def _key(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def load_schema(path: str | os.PathLike) -> dict:
    with open(path) as fh:
        return yaml.safe_load(fh)


def schema_errors(config: dict, schema: dict) -> list[str]:
    """Every schema violation as ``"config key <path>: <what is wrong>"``."""
    validator = jsonschema.Draft202012Validator(schema)
    messages = []
    for error in validator.iter_errors(config):
        # for oneOf/anyOf, the deepest sub-error that is not a mere type mismatch says
        # what is wrong (the alternative the user meant), not "matches none of"
        best = error
        if error.context:
            best = max(error.context, key=lambda e: (e.validator != "type", len(e.absolute_path)))
        where = list(best.absolute_path)  # from the config's root, also inside oneOf
        messages.append(f"config key {_key(where)}: {best.message}")
    return messages


def consistency_errors(config: dict) -> list[str]:
    runs = config.get("runs", {})
    errors = []
    unknown = [r for r in config.get("default_runs", []) if r not in runs]
    if unknown:
        errors.append(
            f"config key default_runs: unknown run(s) {', '.join(map(repr, unknown))}"
            f" (configured: {', '.join(sorted(runs))})"
        )
    for name, run in runs.items():
        fractions = run.get("split", {}).get("fractions")
        if fractions and abs(sum(fractions) - 1.0) > 1e-9:
            errors.append(
                f"config key runs.{name}.split.fractions = {fractions}: "
                "expected three shares that sum to 1"
            )
        grid = run.get("scan", {}).get("temperatures")
        if isinstance(grid, dict) and grid.get("min", 0) > grid.get("max", 0):
            errors.append(
                f"config key runs.{name}.scan.temperatures: min {grid['min']} > max {grid['max']}"
            )
        ds = run.get("dataset", {})
        if ds.get("source") in ("rasters", "table") and not ds.get("path"):
            errors.append(
                f"config key runs.{name}.dataset.path is required for source {ds['source']!r}"
            )
    return errors


def check_config(config: dict, schema_path: str | os.PathLike) -> None:
    """Raise :class:`InputError` listing every problem of ``config``, each by its key."""
    errors = schema_errors(config, load_schema(schema_path))
    if not errors:
        errors = consistency_errors(config)
    if errors:
        raise InputError("invalid configuration:\n  " + "\n  ".join(errors))
