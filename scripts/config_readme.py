"""The key reference of config/README.md, generated from the schema.

The reference (between the two ``config-reference`` markers of config/README.md) is made
from ``src/collapse_spectroscopy/config/schema.yaml``, the one home of every key and
default, so the two cannot drift (tests/config/test_config_docs.py checks it is current).

    python scripts/config_readme.py           # print the reference
    python scripts/config_readme.py --check   # exit 1 if config/README.md's is not current
    python scripts/config_readme.py --write   # rewrite config/README.md's reference

The rest of config/README.md is written by hand, so the reference is replaced in place
(``--write``) rather than the whole file printed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from collapse_spectroscopy.config import settings

README = Path(__file__).resolve().parents[1] / "config" / "README.md"
BEGIN = "<!-- config-reference: generated from the schema by scripts/config_readme.py -->"
END = "<!-- /config-reference -->"
BEGIN_PREFIX = "<!-- config-reference"  # what finds the block, whatever its marker names


def _number(v) -> str:
    return repr(v) if isinstance(v, float) else str(v)


def kind(prop: dict) -> str:
    """What a key holds, in words: its type and bounds (``number > 0``, ``one of ...``)."""
    if "enum" in prop:
        return "one of " + ", ".join(f"`{v}`" for v in prop["enum"])
    if "const" in prop:
        return f"`{prop['const']}`"
    if "oneOf" in prop:
        return " or ".join(kind(alt) for alt in prop["oneOf"])
    t = prop.get("type")
    if t == "array":
        items = kind(prop.get("items", {}))
        items = f"({items})" if " " in items else items
        n = prop.get("minItems"), prop.get("maxItems")
        count = f"{n[0]} " if n[0] is not None and n[0] == n[1] else ""
        extra = ", distinct" if prop.get("uniqueItems") else ""
        return f"list of {count}{items}{extra}"
    if t == "object":
        return "{" + ", ".join(prop.get("properties", {})) + "}"
    lo = ("≥", prop.get("minimum")), (">", prop.get("exclusiveMinimum"))
    hi = ("≤", prop.get("maximum")), ("<", prop.get("exclusiveMaximum"))
    bounds = [f"{op} {_number(v)}" for op, v in (*lo, *hi) if v is not None]
    text = {"boolean": "true/false", "string": "text"}.get(t, t)
    if "pattern" in prop:
        text += f" matching `{prop['pattern']}`"
    return " ".join([text, ", ".join(bounds)]).strip()


def default(prop: dict, required: bool) -> str:
    if required:
        return "required"
    if "default" not in prop:
        return "none"
    value = prop["default"]
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, list):
        return "`[" + ", ".join(map(_number, value)) + "]`"
    return f"`{_number(value)}`"


def rows(schema: dict, prefix: str = ""):
    required = set(schema.get("required", ()))
    for key, prop in schema.get("properties", {}).items():
        about = " ".join(prop.get("description", "").split())
        yield f"| `{prefix}{key}` | {kind(prop)} | {default(prop, key in required)} | {about} |"
        for alt in prop.get("oneOf", ()):
            if alt.get("type") == "object":
                yield from rows(alt, f"{prefix}{key}.")
        if prop.get("type") == "object":  # a nested object's keys (baselines.autoencoder.*)
            yield from rows(prop, f"{prefix}{key}.")


def body(schema: dict | None = None) -> str:
    """The reference's tables (what lies between the markers), from ``schema`` (default:
    the package's)."""
    schema = settings.load_schema() if schema is None else schema
    head = "| key | value | default | meaning |\n|---|---|---|---|"
    out = ["", "### Top level", "", head]
    out += [r for r in rows(schema) if not r.startswith(("| `runs` ", "| `studies` "))]
    out.append(
        "| `runs` | {RUN: run} | required | " + schema["properties"]["runs"]["description"] + " |"
    )
    studies = " ".join(schema["properties"]["studies"]["description"].split())
    out.append(f"| `studies` | {{STUDY: study}} | `{{}}` | {studies} |")
    out += ["", "### `studies.STUDY`", "", "Keys of a study (docs/science.md §11).", ""]
    out += [head, *rows(schema["$defs"]["study"])]
    run = schema["$defs"]["run"]
    # keys of a run that are not sections (null_run): one table before the sections'
    keys = {k: p for k, p in run["properties"].items() if k not in settings.SECTIONS}
    if keys:
        out += ["", "### `runs.RUN`", "", "Keys of a run beside its sections.", ""]
        out += [head, *rows({"properties": keys})]
    for section in settings.SECTIONS:
        prop = run["properties"][section]
        req = " (required)" if section in run.get("required", ()) else ""
        about = " ".join(prop["description"].split())
        out += ["", f"### `runs.RUN.{section}`{req}", "", about[0].upper() + about[1:] + ".", ""]
        out += [head, *rows(prop)]
    return "\n".join([*out, ""])


def reference(schema: dict | None = None) -> str:
    """The key reference with its markers, as config/README.md holds it."""
    return f"{BEGIN}\n{body(schema)}\n{END}"


def _span(text: str) -> tuple[int, int]:
    """Where the reference (markers included) lies in ``text``."""
    start = text.index(BEGIN_PREFIX)
    return start, text.index(END, start) + len(END)


def current_body(text: str) -> str:
    """What lies between the markers of ``text`` (a config/README.md)."""
    start, stop = _span(text)
    return text[text.index("\n", start) + 1 : stop - len(END) - 1]


def rewritten(text: str, schema: dict | None = None) -> str:
    """``text`` (a config/README.md) with its reference regenerated."""
    start, stop = _span(text)
    return text[:start] + reference(schema) + text[stop:]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 if the README is stale")
    mode.add_argument("--write", action="store_true", help="rewrite the README's reference")
    args = parser.parse_args(argv)
    if args.check:
        if current_body(README.read_text()) != body():
            print(
                "config/README.md differs from the schema: "
                "run `python scripts/config_readme.py --write`",
                file=sys.stderr,
            )
            return 1
        return 0
    if args.write:
        README.write_text(rewritten(README.read_text()))
        return 0
    print(reference())
    return 0


if __name__ == "__main__":
    sys.exit(main())
