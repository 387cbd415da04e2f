"""config/README.md describes every configuration key as the schema declares it.

The key reference in config/README.md (between the two ``config-reference`` markers) is
generated from ``src/collapse_spectroscopy/config/schema.yaml``, the one home of every
default, so the two cannot drift: the test fails on any difference and names the command
that rewrites it (``python tests/test_config_docs.py``).
"""

import sys
from pathlib import Path

from collapse_spectroscopy.config import settings

README = Path(__file__).resolve().parents[1] / "config" / "README.md"
BEGIN = "<!-- config-reference: generated from the schema by tests/test_config_docs.py -->"
END = "<!-- /config-reference -->"


def _number(v) -> str:
    return repr(v) if isinstance(v, float) else str(v)


def kind(prop: dict) -> str:
    """What a key holds, in words: its type and bounds (``number > 0``, ``one of ...``)."""
    if "enum" in prop:
        return "one of " + ", ".join(f"`{v}`" for v in prop["enum"])
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
    bounds = []
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


def reference() -> str:
    """The key reference of config/README.md, generated from the schema."""
    schema = settings.load_schema()
    head = "| key | value | default | meaning |\n|---|---|---|---|"
    out = [BEGIN, "", "### Top level", "", head]
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
    return "\n".join([*out, "", END])


def current() -> str:
    text = README.read_text()
    start, stop = text.index(BEGIN), text.index(END) + len(END)
    return text[start:stop]


def test_readme_describes_every_key_as_the_schema_does():
    assert current() == reference(), (
        "config/README.md differs from the schema: run `python tests/test_config_docs.py`"
    )


def test_every_key_has_a_description():
    """The catalog's parameter table and the README show each key's description."""

    def missing(schema, path):
        for key, prop in schema.get("properties", {}).items():
            if not prop.get("description"):
                yield ".".join([*path, key])
            yield from missing(prop, [*path, key])
            for alt in prop.get("oneOf", ()):
                yield from missing(alt, [*path, key])

    schema = settings.load_schema()
    assert [
        *missing(schema, []),
        *missing(schema["$defs"]["run"], ["runs", "RUN"]),
        *missing(schema["$defs"]["study"], ["studies", "STUDY"]),
    ] == []


if __name__ == "__main__":  # rewrite the reference in config/README.md
    text = README.read_text()
    README.write_text(text.replace(current(), reference()))
    sys.exit(0)
