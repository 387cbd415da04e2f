"""config/README.md describes every configuration key as the schema declares it.

Its key reference is generated from ``src/collapse_spectroscopy/config/schema.yaml`` by
``scripts/config_readme.py``; the test fails on any difference and names the command that
rewrites it, so the README and the schema cannot drift.
"""

import copy
import importlib.util
import subprocess
import sys

from collapse_spectroscopy.config import settings
from workflow_helpers import ROOT

SCRIPT = ROOT / "scripts" / "config_readme.py"
_spec = importlib.util.spec_from_file_location("config_readme", SCRIPT)
config_readme = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(config_readme)


def test_readme_describes_every_key_as_the_schema_does():
    current = config_readme.current_body(config_readme.README.read_text())
    assert current == config_readme.body(), (
        "config/README.md differs from the schema: run `python scripts/config_readme.py --write`"
    )


def test_a_schema_change_shows_in_the_reference():
    """The generator reads the schema: a changed default or description is a changed
    line of the reference (so the check above fails until the README is rewritten)."""
    schema = copy.deepcopy(settings.load_schema())
    spectra = schema["$defs"]["run"]["properties"]["spectra"]["properties"]
    spectra["rho_min"]["default"] = 0.123
    spectra["rho_min"]["description"] = "A changed description."
    changed = set(config_readme.body(schema).splitlines()) - set(config_readme.body().splitlines())
    (line,) = changed
    assert line.startswith("| `rho_min` |")
    assert line.endswith("| `0.123` | A changed description. |")


def test_write_replaces_only_the_reference():
    text = config_readme.README.read_text()
    stale = text.replace("| `rho_min` |", "| `rho_min_old` |")
    assert stale != text
    fixed = config_readme.rewritten(stale)
    assert config_readme.current_body(fixed) == config_readme.body()
    start = stale.index(config_readme.BEGIN_PREFIX)
    assert fixed[:start] == stale[:start]  # the hand-written part before it is kept
    assert fixed.endswith(stale[stale.index(config_readme.END) :])  # and after it


def test_the_script_checks_the_readme():
    proc = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


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
