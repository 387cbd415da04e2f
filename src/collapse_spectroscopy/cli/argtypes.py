"""Argument types shared by the subcommands: each rejects a bad value with one line."""

from __future__ import annotations

import argparse
import json
import math
import zipfile
from pathlib import Path

from collapse_spectroscopy.errors import InputError


def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a finite number")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a finite number > 0")
    return value


def json_object(text: str) -> dict:
    """A JSON object (``model.options``: ``--model-options '{"channels": 16}'``)."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a JSON object {{...}}")
    return value


def boolean(text: str) -> bool:
    """true/false (also yes/no, 1/0, any case): a boolean configuration key."""
    words = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
    try:
        return words[text.strip().lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected true or false") from None


def patience(text: str) -> float:
    """An update count >= 1 (as an int) or a fraction of max_updates in (0, 1)."""
    value = positive_float(text)
    return int(value) if value >= 1 else value


def check_prepared_file(path: Path) -> None:
    """InputError unless ``path`` could be a prepared dataset (an .npz is a zip archive):
    a CSV or any other file is named as such, before numpy can say something obscure."""
    if path.is_file() and not zipfile.is_zipfile(path):
        raise InputError(
            f"--data {str(path)!r} is not a prepared dataset: expected the .npz written by "
            "`collapse-spectroscopy prepare` (run prepare on a table or rasters first)"
        )
