"""The pinned software environments say what the test suite really runs with.

``envs/constraints.txt`` (pip) and ``envs/collapse-spectroscopy.yaml`` (conda, the rules'
environment) pin versions. These tests compare every pin with the version installed in
the environment running the suite, so a pin cannot drift from what was tested: CI
installs with the constraints (.ci/run), and a failure here names each package whose
pin and installed version differ.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata

import pytest
import yaml

from workflow_helpers import ROOT

ENV_FILE = ROOT / "envs" / "collapse-spectroscopy.yaml"
CONSTRAINTS = ROOT / "envs" / "constraints.txt"

# conda-forge package -> the Python distribution it installs, where the names differ
CONDA_TO_DIST = {
    "pytorch": "torch",
    "matplotlib-base": "matplotlib",
    "geopandas-base": "geopandas",
}
# conda entries that are no Python distribution of ours: the interpreter (checked on its
# own) and pip, the installer of the `pip:` section
NOT_DISTRIBUTIONS = {"python", "pip"}
# pip expands ${NAME} (upper case, digits, underscores) in requirement lines
PIP_ENV_VARIABLE = re.compile(r"\$\{([A-Z0-9_]+)\}")
ROOT_VARIABLE = "COLLAPSE_SPECTROSCOPY_ROOT"  # set by the workflow to its own folder


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares them (``PyYAML`` == ``pyyaml``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_version(dist: str) -> str | None:
    """The installed version without a local label (``2.13.0+cpu`` -> ``2.13.0``)."""
    try:
        return metadata.version(dist).split("+")[0]
    except metadata.PackageNotFoundError:
        return None


def conda_matches(installed: str, pin: str, exact: bool) -> bool:
    """conda's rule: ``name=1.2`` takes 1.2 and 1.2.*; ``name==1.2`` only 1.2."""
    return installed == pin or (not exact and installed.startswith(pin + "."))


def env_spec() -> dict:
    return yaml.safe_load(ENV_FILE.read_text())


def conda_pins() -> dict[str, tuple[str, str | None, bool]]:
    """conda package -> (version, build string, exact?) of each string entry."""
    pins = {}
    for entry in env_spec()["dependencies"]:
        if not isinstance(entry, str):
            continue  # the pip: section
        m = re.fullmatch(r"([A-Za-z0-9_.-]+)(?:(==?)([^=\s]+)(?:=(\S+))?)?", entry.strip())
        assert m, f"{ENV_FILE.name}: cannot read the conda entry {entry!r}"
        name, op, version, build = m.groups()
        pins[name] = (version, build, op == "==")
    return pins


def pip_section() -> list[str]:
    sections = [e["pip"] for e in env_spec()["dependencies"] if isinstance(e, dict)]
    assert len(sections) == 1, f"{ENV_FILE.name}: expected one pip: section"
    return [str(line).strip() for line in sections[0]]


def exact_pins(lines) -> dict[str, str]:
    """``name==version`` lines -> {normalized name: version}; options and comments skipped."""
    pins = {}
    for line in lines:
        line = line.split("#")[0].strip()
        if not line or line.startswith("-"):
            continue
        name, sep, version = line.partition("==")
        assert sep and version, f"not an exact pin (name==version): {line!r}"
        pins[normalize(name)] = version.strip()
    return pins


def mismatches(pins: dict[str, str]) -> list[str]:
    """One line per distribution whose installed version differs from its pin."""
    out = []
    for dist, pin in sorted(pins.items()):
        have = installed_version(dist)
        if have != pin:
            out.append(f"{dist}: pinned {pin}, installed {have or 'nothing'}")
    return out


def test_every_conda_entry_is_pinned_to_the_installed_version():
    wrong = []
    for name, (version, _, exact) in conda_pins().items():
        if name == "pip":
            continue
        if version is None:
            wrong.append(f"{name}: no version pinned")
        elif name == "python":
            have = ".".join(map(str, sys.version_info[:3]))
            if not conda_matches(have, version, exact):
                wrong.append(f"python: pinned {version}, running {have}")
        else:
            dist = CONDA_TO_DIST.get(name, name)
            have = installed_version(dist)
            if have is None or not conda_matches(have, version, exact):
                wrong.append(f"{name} ({dist}): pinned {version}, installed {have or 'nothing'}")
    assert not wrong, f"{ENV_FILE.relative_to(ROOT)} differs from this environment:\n" + (
        "\n".join(wrong)
    )


def test_env_pip_section_pins_match_the_installed_versions():
    wrong = mismatches(exact_pins(pip_section()))
    assert not wrong, f"{ENV_FILE.relative_to(ROOT)} (pip:) differs from this environment:\n" + (
        "\n".join(wrong)
    )


def test_constraints_match_the_installed_versions():
    pins = exact_pins(CONSTRAINTS.read_text().splitlines())
    assert "torch" in pins and "snakemake" in pins  # the file was read, not an empty one
    wrong = mismatches(pins)
    assert not wrong, (
        f"{CONSTRAINTS.relative_to(ROOT)} differs from this environment (install with "
        f'`pip install -c envs/constraints.txt -e ".[test]"`, or update the pins):\n'
        + "\n".join(wrong)
    )


def test_conda_and_pip_pins_agree():
    """The two files pin each shared package at the same version."""
    constraints = exact_pins(CONSTRAINTS.read_text().splitlines())
    conda = {
        normalize(CONDA_TO_DIST.get(n, n)): v
        for n, (v, _, _) in conda_pins().items()
        if n not in NOT_DISTRIBUTIONS
    }
    conda |= exact_pins(pip_section())
    differ = [
        f"{d}: conda {v}, constraints {constraints.get(d)}"
        for d, v in sorted(conda.items())
        if constraints.get(d) != v
    ]
    assert not differ, "\n".join(differ)


def test_every_runtime_dependency_comes_pinned_from_the_env():
    """Each runtime dependency of the project (pyproject.toml, as installed) is pinned in
    the env file, so pip, which runs last, finds it installed and never pulls a build of
    its own (torch above all)."""
    declared = metadata.requires("collapse-spectroscopy") or []
    needed = {
        normalize(re.match(r"[A-Za-z0-9_.-]+", d)[0]) for d in declared if "extra ==" not in d
    }
    assert "torch" in needed  # the project's metadata was read
    pinned = {normalize(CONDA_TO_DIST.get(n, n)) for n in conda_pins()}
    pinned |= set(exact_pins(pip_section()))
    assert not needed - pinned, f"not pinned in {ENV_FILE.name}: {sorted(needed - pinned)}"


def test_pytorch_is_the_cpu_build():
    version, build, _ = conda_pins()["pytorch"]
    assert build == "cpu*", f"pytorch={version}={build}: expected the CPU build string cpu*"


@pytest.mark.parametrize(
    "option, target", [("-e", ROOT), ("-c", CONSTRAINTS)], ids=["project", "constraints"]
)
def test_pip_paths_survive_the_copy_into_snakemake_conda(option, target):
    """Snakemake creates the env from a copy in .snakemake/conda/, and pip resolves a
    relative path from that copy's folder: each path must start at the variable the
    workflow sets, and lead to this checkout's file once pip expands it."""
    lines = [ln for ln in pip_section() if ln.startswith(option + " ")]
    assert len(lines) == 1, f"expected one `{option} PATH` line in the pip: section"
    path = lines[0][len(option) :].strip()
    assert path.startswith("${COLLAPSE_SPECTROSCOPY_ROOT}"), f"{path!r}: not from the root"
    expanded = PIP_ENV_VARIABLE.sub(lambda m: str(ROOT) if m[1] == ROOT_VARIABLE else m[0], path)
    assert expanded == str(target)
