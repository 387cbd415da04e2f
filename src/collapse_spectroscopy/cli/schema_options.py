"""Command-line options generated from the configuration schema.

An option that sets a configuration key takes from the key's schema
(``config/schema.yaml``, :mod:`collapse_spectroscopy.config.settings`) everything a user
reads or argparse checks: its help (the key's description, then the key and its default:
``(training.max_updates; default: 500000)``), its default, its choices (an ``enum``), its
type (``integer`` -> int, ``number`` -> float, ``boolean`` -> true/false, ``string`` ->
text, ``object`` -> JSON) and its nargs (an ``array``, or a ``oneOf`` with one: ``+``). A
command adds only what is its own: the option's name, a metavar, a short ``suffix`` to the
help (what the command does with the value, how to type it) and, where the command checks a
value with a message of its own, a stricter type (``positive_float``) or none (``choices=None``: the
command names the valid values, and the help lists the enum).

The items of a list option stay text, as its default is given (``--hidden 64 64``): the
command converts and checks them, naming the key, and argparse would apply a type to the
typed values only, never to the default.
"""

from __future__ import annotations

import argparse
import copy

from collapse_spectroscopy.cli.argtypes import boolean, json_object
from collapse_spectroscopy.config import settings

# the argparse type of each schema type but array (None: text, argparse's own); an object
# (model.options) is typed as JSON
TYPES = {"integer": int, "number": float, "boolean": boolean, "string": None, "object": json_object}


def bounded(convert, prop: dict, key: str):
    """``convert`` (int) that also holds the schema's bounds of a key, so that
    ``--split-seed -1`` is one argparse line naming the option, not a failure deep inside
    the command; None when the schema sets no bound."""
    low, high = prop.get("minimum"), prop.get("maximum")
    above, below = prop.get("exclusiveMinimum"), prop.get("exclusiveMaximum")
    if low is None and high is None and above is None and below is None:
        return None

    def parse(text):
        value = convert(text)
        for bound, holds, word in (
            (low, lambda b: value >= b, ">="),
            (high, lambda b: value <= b, "<="),
            (above, lambda b: value > b, ">"),
            (below, lambda b: value < b, "<"),
        ):
            if bound is not None and not holds(bound):
                raise argparse.ArgumentTypeError(f"{text!r}: {key} must be {word} {bound:g}")
        return value

    parse.__name__ = convert.__name__  # argparse names the type in its other messages
    return parse


def schema_default(key: str):
    """The schema's default of ``key`` (``section.name``) as argparse wants it, or None."""
    value = copy.deepcopy(settings.key_schema(key).get("default"))
    # as text, so that argparse applies the option's type to it exactly as to a value
    # typed by hand or read from a run configuration (500 -> --block-km type float -> 500.0)
    if value is None or isinstance(value, bool):
        return value
    return [str(v) for v in value] if isinstance(value, list) else str(value)


def description(key: str) -> str:
    """The schema's description of ``key``, on one line."""
    return " ".join(settings.key_schema(key)["description"].split())


def _shown_default(default) -> str:
    if default is None or (isinstance(default, list | tuple) and not default):
        return ""
    if isinstance(default, list | tuple):  # as typed: --hidden 64 64
        return "; default: " + " ".join(map(str, default)).replace("%", "%%")
    return "; default: %(default)s"


def schema_kwargs(key: str, suffix: str = "", **overrides) -> dict:
    """The ``add_argument`` keywords of an option that sets ``key``: the schema's, then
    ``overrides`` (a metavar; a stricter type; ``choices=None``...), and the help: the
    key's description, ``suffix``, the key and the default."""
    if "help" in overrides:
        raise TypeError(f"{key}: the help is the schema's description (give suffix=)")
    prop = settings.key_schema(key)
    kwargs = {"default": schema_default(key)}
    if "enum" in prop:
        kwargs["choices"] = list(prop["enum"])
    kind = prop.get("type")
    if kind == "array" or any(alt.get("type") == "array" for alt in prop.get("oneOf", ())):
        kwargs["nargs"] = "+"  # a list (dataset.path: one text or a list of them)
    elif TYPES.get(kind) is not None:
        kwargs["type"] = TYPES[kind]
        if kind == "integer":  # a number key's command checks its range itself, by name
            kwargs["type"] = bounded(int, prop, key) or int
        if kind == "boolean":
            kwargs["metavar"] = "{true,false}"
    kwargs.update(overrides)
    about = description(key)
    if "enum" in prop and not kwargs.get("choices"):  # the command checks the value itself
        about += "; one of " + ", ".join(map(str, prop["enum"]))
    about = f"{about}{suffix}".replace("%", "%%")
    kwargs["help"] = f"{about} ({key}{_shown_default(kwargs.get('default'))})"
    return kwargs


def schema_argument(
    parser: argparse.ArgumentParser, key: str, *flags: str, suffix: str = "", **overrides
) -> argparse.Action:
    """Add the option ``flags`` that sets configuration key ``key`` to ``parser``, as
    :func:`schema_kwargs` says; the action records the key (``schema_key``) and which
    keywords the command overrode (``schema_overrides``)."""
    action = parser.add_argument(*flags, **schema_kwargs(key, suffix, **overrides))
    action.schema_key = key
    action.schema_overrides = frozenset(overrides)
    return action
