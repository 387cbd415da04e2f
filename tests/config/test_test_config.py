"""The workflow's CI test case, .test/config/config.yaml, run end to end (on a copy), and
what a changed key reruns.

Each command reads its settings from results/RUN/config/COMMAND.json, the sections of the
run it reads (settings.STAGES); a changed key must rerun exactly the jobs that read it and
what depends on them, as when every key was a flag on the job's command line, and a dry run
must write nothing. Dry runs (``-n``) decide the reruns: Snakemake plans from the config
and the recorded metadata of the finished run, so no job is rerun to check it.
"""

import json
import shutil
import subprocess

import pytest
import yaml

from collapse_spectroscopy.config import settings
from collapse_spectroscopy.figures import REGISTRY
from workflow_helpers import ROOT, SNAKEMAKE, planned_jobs

TEST_DIR = ROOT / ".test"


def snakemake(wd, *args):
    cmd = [*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(wd), "--cores", "2", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, f"snakemake {' '.join(args)}:\n{proc.stderr[-4000:]}"
    return proc.stdout + proc.stderr


def edit_run(wd, section, key, value):
    config_file = wd / "config" / "config.yaml"
    config = yaml.safe_load(config_file.read_text())
    config["runs"]["ci"].setdefault(section, {})[key] = value
    config_file.write_text(yaml.safe_dump(config))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A copy of .test/ after the workflow built everything in it."""
    wd = tmp_path_factory.mktemp("ci") / "test"
    shutil.copytree(TEST_DIR / "config", wd / "config")
    snakemake(wd)
    return wd


@pytest.fixture
def copy(finished, tmp_path):
    """A copy of the finished run, Snakemake's records included, for one test to edit."""
    wd = tmp_path / "test"
    shutil.copytree(finished, wd, symlinks=True)
    return wd


@pytest.mark.slow
def test_the_test_config_builds_every_output(finished):
    res = finished / "results" / "ci"
    for name in REGISTRY:  # the figures the workflow lists are the registry's
        for ext in ("png", "pdf"):
            assert (res / "figures" / f"{name}.{ext}").stat().st_size > 1000
    assert len(list((res / "figures").glob("fig*.png"))) == len(REGISTRY)
    assert (res / "spectra.csv").is_file() and (res / "summary.json").is_file()
    # each command's file holds the sections it reads, resolved with the schema's defaults
    raw = yaml.safe_load((TEST_DIR / "config" / "config.yaml").read_text())["runs"]["ci"]
    resolved = settings.resolve_run(raw)
    for stage, sections in settings.STAGES.items():
        if stage in settings.SWEEP_STAGES + settings.BASELINE_STAGES + settings.REFINE_STAGES:
            continue  # the ci run is no sweep, has no baseline and is not refined
        written = json.loads((res / "config" / f"{stage}.json").read_text())
        assert list(written) == list(dict.fromkeys(s.split(".")[0] for s in sections))
        assert written == settings.stage_config(resolved, stage)
    assert json.loads((res / "config" / "train.json").read_text())["training"]["max_updates"] == 300
    assert planned_jobs(finished) == {}


@pytest.mark.slow
def test_the_same_settings_in_another_order_rerun_nothing(copy):
    config_file = copy / "config" / "config.yaml"
    config = yaml.safe_load(config_file.read_text())
    run = config["runs"]["ci"]
    run["training"] = dict(reversed(run["training"].items()))
    run["training"]["batch_size"] = settings.section_defaults("training")["batch_size"]
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    assert planned_jobs(copy) == {}


@pytest.mark.slow
def test_max_updates_reruns_the_training_and_what_follows(copy):
    edit_run(copy, "training", "max_updates", 400)
    assert planned_jobs(copy) == {
        "run_config": 1,  # config/train.json
        "train_point": 2,  # every scan point
        "gather": 1,
        "spectra": 1,
        "figures": 1,
        "rate_distortion_figure": 1,  # it reads summary.json, which spectra rewrites
        "maps_grid": 1,  # the mapped scan point retrained
        "all": 1,
    }


@pytest.mark.slow
def test_rho_min_reruns_only_the_spectra_and_figures(copy):
    edit_run(copy, "spectra", "rho_min", 0.1)
    assert planned_jobs(copy) == {
        "run_config": 3,  # config/spectra.json, figures.json and maps.json
        "spectra": 1,
        "figures": 1,
        "rate_distortion_figure": 1,  # it reads summary.json, which spectra rewrites
        "maps_grid": 1,  # which latents are active
        "all": 1,
    }


@pytest.mark.slow
def test_a_new_temperature_trains_only_itself(copy):
    edit_run(copy, "scan", "temperatures", [0.05, 0.3, 0.6])
    assert planned_jobs(copy) == {
        "train_point": 1,
        "gather": 1,
        "spectra": 1,
        "figures": 1,
        "rate_distortion_figure": 1,  # it reads summary.json, which spectra rewrites
        "all": 1,
    }


def test_a_dry_run_writes_nothing(tmp_path):
    wd = tmp_path / "test"
    shutil.copytree(TEST_DIR / "config", wd / "config")
    jobs = planned_jobs(wd)
    # every stage's configuration but those only a sweep, a baseline or refinement has
    only = settings.SWEEP_STAGES + settings.BASELINE_STAGES + settings.REFINE_STAGES
    stages = len(settings.STAGES) - len(only)
    assert jobs["run_config"] == stages and jobs["train_point"] == 2
    assert sorted(p.name for p in wd.iterdir()) == [".snakemake", "config"]
    assert not (wd / ".snakemake" / "metadata").exists() or not any(
        (wd / ".snakemake" / "metadata").iterdir()
    )
    # the Snakemake workflow catalog draws the rule graph from the test case
    assert "run_config" in snakemake(wd, "--forceall", "--rulegraph")
