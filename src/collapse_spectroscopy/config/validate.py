"""Schema checks of the configuration that name the offending config key.

Snakemake's ``validate`` fills in the schema's defaults but reports an error by its
*schema* path; :func:`schema_errors` reports the *config* key instead
(``runs.demo.scan.temperatures[1]: -0.2 is less than or equal to the minimum of 0``), and
adds what JSON Schema cannot say:

* no number is NaN or infinite (YAML's ``.nan`` and ``.inf`` pass every JSON Schema bound),
  :func:`nonfinite_errors`;
* text that spells a number is read as one (:func:`coerce_text_scalars`: YAML 1.1 reads
  ``1e-3`` as a string, and ``--config`` hands Snakemake nested values as text), and a
  string that does not gets a hint how to write it;
* an integer key holds an integer, not ``1.0e+5`` (JSON Schema would accept an integral
  float, which the command line then rejects inside a job).
"""

from __future__ import annotations

import math

import jsonschema
import yaml


def _key(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _strict_integer(checker, instance) -> bool:
    # JSON Schema counts 100000.0 as an integer; the CLI's int() does not
    return isinstance(instance, int) and not isinstance(instance, bool)


_Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _strict_integer),
)


def _yaml_spelling(text: str, value: float, integer: bool) -> str | None:
    """How to write ``value`` (given as ``text``) so that YAML 1.1 reads it as a number."""
    if not math.isfinite(value):
        return None
    if integer:
        return str(int(value)) if value.is_integer() else None
    for spelled in (text.strip().lower(), repr(value)):
        mantissa, e, exponent = spelled.partition("e")
        if e:  # YAML 1.1 wants a dot in the mantissa and a sign in the exponent
            mantissa = mantissa if "." in mantissa else mantissa + ".0"
            exponent = exponent if exponent[:1] in ("+", "-") else "+" + exponent
            spelled = f"{mantissa}e{exponent}"
        try:
            if yaml.safe_load(spelled) == value:
                return spelled
        except yaml.YAMLError:
            continue
    return None


def _number_hint(error) -> str:
    """A hint for a number YAML read as text (``1e-3``) or an integral float (``1.0e+5``)."""
    if error.validator != "type":
        return ""
    wanted = error.validator_value
    wanted = [wanted] if isinstance(wanted, str) else list(wanted)
    integer = "integer" in wanted and "number" not in wanted
    if not (integer or "number" in wanted):
        return ""
    instance = error.instance
    if isinstance(instance, str):
        try:
            value = float(instance)
        except ValueError:
            return ""
        spelled = _yaml_spelling(instance, value, integer)
        if spelled is None:
            return ""
        if spelled == instance.strip():  # a number in quotes
            return f" (a number in quotes is text: write {spelled} without quotes)"
        return f" (YAML 1.1 reads {instance} as text, not a number: write {spelled})"
    if integer and isinstance(instance, float) and instance.is_integer():
        return f" (expected an integer: write {int(instance)})"
    return ""


def _message(error) -> str:
    where = list(error.absolute_path)  # from the config's root, also inside oneOf
    if error.validator == "required":
        missing = [p for p in error.validator_value if p not in error.instance]
        out = []
        for prop in missing:
            about = error.schema.get("properties", {}).get(prop, {}).get("description")
            out.append(
                f"config key {_key([*where, prop])} is required"
                + (f": {about.strip()}" if about else "")
            )
        return "\n  ".join(out)
    # a conditional rule (if/then) says in its description which other key imposes it
    why = f" ({error.schema['description']})" if "then" in error.absolute_schema_path else ""
    return f"config key {_key(where)}: {error.message}{why}{_number_hint(error)}"


def _all_errors(errors):
    """Every error and, recursively, the sub-errors of its oneOf/anyOf alternatives."""
    for error in errors:
        yield error
        yield from _all_errors(error.context or [])


def _scalar_from_text(text: str, wanted: list[str]):
    """The number or boolean that ``text`` spells, if the schema wants one; else None."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    if isinstance(value, str) and "number" in wanted:  # YAML 1.1 reads 1e-3 as text
        try:
            value = float(value)
        except ValueError:
            return None
    if isinstance(value, bool):
        return value if "boolean" in wanted else None
    if isinstance(value, int) and ("integer" in wanted or "number" in wanted):
        return value
    if isinstance(value, float) and "number" in wanted and math.isfinite(value):
        return value
    return None


def coerce_text_scalars(config: dict, schema: dict) -> list[str]:
    """Read as YAML, in place, each text value where the schema expects a number, an
    integer or a boolean and the text spells one; returns the keys converted.

    Snakemake hands the values inside a nested ``--config 'runs={...}'`` over as text
    (``'12'`` for ``12``), so without this the README's own one-line commands were
    refused; a config file's ``latents: "12"`` is read the same way. Text that spells no
    such value is left for the schema check to report."""
    validator = _Validator(schema)
    converted = []
    for _ in range(64):  # a converted value can reveal another inside a oneOf
        fixes = []
        for error in _all_errors(validator.iter_errors(config)):
            if error.validator != "type" or not isinstance(error.instance, str):
                continue
            wanted = error.validator_value
            wanted = [wanted] if isinstance(wanted, str) else list(wanted)
            value = _scalar_from_text(error.instance, wanted)
            if value is not None and error.absolute_path:
                fixes.append((list(error.absolute_path), value))
        if not fixes:
            break
        for path, value in fixes:
            node = config
            for part in path[:-1]:
                node = node[part]
            if isinstance(node[path[-1]], str):
                node[path[-1]] = value
                converted.append(_key(path))
    return converted


def schema_errors(config: dict, schema: dict) -> list[str]:
    """Every schema violation as ``"config key <path>: <what is wrong>"``."""
    validator = _Validator(schema)
    messages = []
    for error in validator.iter_errors(config):
        # for oneOf/anyOf, the deepest sub-error that is not a mere type mismatch says
        # what is wrong (the alternative the user meant), not "matches none of"
        best = error
        if error.context:
            best = max(error.context, key=lambda e: (e.validator != "type", len(e.absolute_path)))
        messages.append(_message(best))
    return messages


def nonfinite_errors(node, path=()) -> list[str]:
    """Every NaN or infinite number in the config, by key (no key takes one)."""
    if isinstance(node, float) and not math.isfinite(node):
        spelled = ("-" if node < 0 else "") + (".nan" if math.isnan(node) else ".inf")
        return [
            f"config key {_key(path)}: {spelled} is not a finite number: expected a finite value"
        ]
    if isinstance(node, dict):
        return [m for k, v in node.items() for m in nonfinite_errors(v, (*path, k))]
    if isinstance(node, list):
        return [m for i, v in enumerate(node) for m in nonfinite_errors(v, (*path, i))]
    return []
