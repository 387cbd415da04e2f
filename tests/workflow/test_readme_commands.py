"""Every shell command of the README works as written (issue 20, item 3).

The commands are read from the README itself, so a command edited there is the command
tested: each line of a ```bash block, and each inline `snakemake ...` command of the prose.
What would take minutes to hours (training) or needs what CI has not (a download, a SLURM
cluster) runs as Snakemake's dry run (``-n``): the config is checked, every input is
resolved and the jobs are planned, which is where a command fails when its keys, files or
targets are wrong. Placeholders a reader replaces are replaced the same way: ``N`` cores by
2, the example data folders by real ones (small GeoTIFFs written here; the WorldClim
layers where this machine has them, else that command is skipped, saying why).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dataset_helpers import small_stack
from workflow_helpers import ROOT

# every command runs Snakemake or the CLI in a subprocess (~1.5 s each, ~40 s in all)
pytestmark = pytest.mark.slow

README = (ROOT / "README.md").read_text()
WORLDCLIM = Path(
    os.environ.get("COLLAPSE_WORLDCLIM_DIR", ROOT.parent / "shared" / "data" / "worldclim-2.1-10m")
)
BIN = Path(sys.executable).parent
DIGITS = "resources/digits/digits.npz"  # examples/digits/make_digits.py writes it


def fenced(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", README, flags=re.S)


def shell_commands() -> list[str]:
    """Each command line of the README's bash blocks and its inline snakemake commands."""
    lines = [line.strip() for block in fenced("bash") for line in block.splitlines()]
    inline = re.findall(r"`(snakemake [^`]+)`", README.replace("\n", " "))
    out = []
    for cmd in lines + inline:
        cmd = re.sub(r"\s{2,}# .*$", "", cmd).strip()  # a trailing comment, as bash drops it
        if cmd and not cmd.startswith("#") and cmd not in out:
            shlex.split(cmd)  # well-formed shell words (quotes closed)
            out.append(cmd)
    return out


def yaml_files() -> dict[str, str]:
    """The config files the README writes out: a yaml block headed ``# NAME.yaml``, and
    ``seeds.yaml`` from the prose that spells its content."""
    files = {}
    for block in fenced("yaml"):
        head = re.match(r"# (\S+\.yaml)\n", block)
        if head:
            files[head.group(1)] = block
    seeds = re.search(r"`seeds\.yaml` holding `([^`]+)` and\s+`([^`]+)`", README)
    if seeds:
        files["seeds.yaml"] = seeds.group(1) + "\n" + seeds.group(2) + "\n"
    return files


COMMANDS = shell_commands()


def test_the_readme_has_the_commands_this_test_knows():
    """The first screen's two commands, the paper run, seeds, beta, your own data, SLURM."""
    assert COMMANDS[1] == "python -m pytest"
    assert COMMANDS[0].startswith("python3 -m venv .venv && . .venv/bin/activate && pip install")
    for needle in ("paper_figures", "'runs={", "beta -T", "my_runs.yaml", "profiles/slurm"):
        assert any(needle in c for c in COMMANDS), needle
    assert {"local_worldclim.yaml", "my_runs.yaml", "seeds.yaml"} <= set(yaml_files())


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A copy of the workflow with the README's config files, as a reader's checkout."""
    wd = tmp_path_factory.mktemp("readme")
    names = ("Snakefile", "workflow", "config", "profiles", "envs", "pyproject.toml", ".test")
    for name in (*names, "examples"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, wd / name)
    layers = wd / "alps_layers"
    small_stack(layers)
    for name, text in yaml_files().items():
        text = text.replace("/data/alps_layers/", str(layers) + "/")
        text = text.replace("/data/worldclim-2.1-10m", str(WORLDCLIM))
        (wd / name).write_text(text)
    return wd


def run(wd: Path, command: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(
        ["bash", "-c", command], cwd=wd, env=env, capture_output=True, text=True, timeout=600
    )


def planned(command: str) -> str | None:
    """The command as this test runs it, or None for the ones it does not run."""
    if command == "python -m pytest" or command.startswith(("python -m pytest", "COLLAPSE_")):
        return None  # this suite itself
    if command.startswith("pip install"):
        return None  # the extra's pins are checked in test_env_pins; no network here
    if command.startswith("python3 -m venv"):
        # the install steps are what .ci/run does on every submission; its last step is
        # the demo, planned here
        return command.rsplit("&& ", 1)[-1] + " -n"
    if command == "snakemake --lint":
        return command  # cheap: run as it is
    if command.startswith("snakemake"):
        return re.sub(r"--cores N\b", "--cores 2", command) + " -n"
    return command


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command(project, command):
    todo = planned(command)
    if todo is None:
        pytest.skip("not run from inside the suite (the suite itself, or a network install)")
    if "conda" in command and shutil.which("conda") is None:
        pytest.skip("needs conda (this machine reaches no conda channel; envs pins are tested)")
    if "--report" in command:
        pytest.skip("needs a finished run: tests/workflow/test_workflow.py builds the report")
    if "local_worldclim.yaml" in command and not WORLDCLIM.is_dir():
        pytest.skip(f"needs the WorldClim layers in {WORLDCLIM} (COLLAPSE_WORLDCLIM_DIR)")
    if "results/demo/data/prepared.npz" in todo or todo.startswith("tar -czf demo"):
        prepared = project / "results" / "demo" / "data"
        if not (prepared / "prepared.npz").is_file():
            assert run(project, f"collapse-spectroscopy prepare --out {prepared}").returncode == 0
    if "examples/digits/config.yaml" in todo and not (project / DIGITS).is_file():
        # the example's data, as its README line before this one writes it
        assert run(project, "python examples/digits/make_digits.py").returncode == 0
    proc = run(project, todo)
    assert proc.returncode == 0, f"{todo}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    if todo.endswith(" -n"):
        assert "error" not in proc.stderr.lower() or "Nothing to be done" in proc.stderr
    if "beta -T 0.01 -V 19" in todo:
        assert "0.19" in proc.stdout
