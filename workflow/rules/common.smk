# Configuration: validation against the schema (which also fills in the defaults), the
# temperature grid of each run, the configuration each job reads, and the targets of a run.
import math
import shlex
import sys

from snakemake.utils import validate

from collapse_spectroscopy import settings
from collapse_spectroscopy.errors import InputError
from collapse_spectroscopy.figures import REGISTRY as FIGURE_REGISTRY
from collapse_spectroscopy.workflow_config import (
    check_config,
    export_project_root,
    scan_point_label,
    scan_temperatures,
)

# First the project's check, which names the offending config key (and checks what a
# schema cannot: finite numbers, default_runs exist, fractions sum to 1, distinct scan
# points, ...): a bad config stops here, before any job, with exit status 2 and one line
# per problem (no traceback); then Snakemake's validate, which fills in the defaults
# (settings.resolve_run fills in the same ones, for the CLI and the tests). Both read the
# schema inside the package (src/collapse_spectroscopy/config.schema.yaml), the one home of
# every default.
try:
    check_config(config)
except InputError as exc:
    print(f"collapse-spectroscopy workflow: {exc}", file=sys.stderr)
    sys.exit(2)
validate(config, schema=str(settings.SCHEMA_PATH))

# envs/collapse-spectroscopy.yaml installs the project from this checkout (conda route).
export_project_root(workflow.basedir)


def run_config(run):
    return config["runs"][run]


# Each job reads its settings from one file, results/{run}/config/{stage}.json: the
# sections of the run's resolved configuration that its command reads (settings.STAGES:
# prepare reads dataset and split, train model and training, spectra and figures the
# spectra section), written by the local rule `run_config` (rules/run_config.smk) with
# those sections as its params, keys in the schema's order. So a changed key reruns the
# jobs it reran as a flag on their command lines, and no others: the stage files holding
# it (their params changed), then the jobs reading them and everything downstream.
# Why one file per stage and not one run.json for all: Snakemake reruns every job
# downstream of a job that reruns, so rewriting a single file for spectra.rho_min would
# rerun every training job; and a single file as an ancient() input, with each job's
# sections as its params, is not checked at all: Snakemake skips a job below a rerunning
# one with only ancient inputs from it without looking at its params (9.27, dag.py).
# A dry run writes nothing (the files are job outputs); each file is written under a
# temporary name and renamed into place (settings.write_run_config).
def stage_config(stage):
    """The run configuration a job of command `stage` reads (its input `run_config`)."""
    return f"results/{{run}}/config/{stage}.json"


def scan_points(run):
    """The scan-point files of a run: one per T (as check_config saw the grid) and seed."""
    grid = run_config(run)["scan"]["temperatures"]
    return expand(
        "results/{run}/scan/T={T}/seed={seed}.nc",
        run=run,
        T=[scan_point_label(t) for t in scan_temperatures(grid)],
        seed=run_config(run)["scan"]["seeds"],
    )


# the figure names, from the one registry the `figures` command draws from
FIGURES = list(FIGURE_REGISTRY)


def figure_output(name, ext):
    """A figure of the run; the PNG goes into the report with its caption."""
    path = f"results/{{run}}/figures/{name}.{ext}"
    if ext != "png":
        return path
    return report(
        path, caption=f"../report/{name}.rst", category="{run}", subcategory="Figures"
    )


def run_targets(runs):
    out = []
    for run in runs:
        out += [
            f"results/{run}/spectra.csv",
            f"results/{run}/summary.json",
            f"results/{run}/data/split_summary.json",
        ]
        out += expand(
            "results/{run}/figures/{fig}.{ext}",
            run=run,
            fig=FIGURES,
            ext=["png", "pdf"],
        )
        out += [f"results/{run}/figures/split_map.png"]
    return out


def worldclim_archive(wildcards):
    """A worldclim run without dataset.path reads the archive the fetch rule downloads."""
    ds = run_config(wildcards.run)["dataset"]
    if ds["source"] == "worldclim" and not ds.get("path"):
        return f"resources/worldclim/wc2.1_{ds['resolution']}_bio.zip"
    return []


def fetch_args(wildcards):
    """--url and --sha256 of the worldclim runs that download this resolution (one shared
    archive: check_config made sure those runs agree)."""
    downloads = [
        run["dataset"]
        for run in config["runs"].values()
        if run["dataset"]["source"] == "worldclim"
        and not run["dataset"].get("path")
        and run["dataset"]["resolution"] == wildcards.resolution
    ]
    args = []
    for key in ("url", "sha256"):
        values = sorted({ds[key] for ds in downloads if ds.get(key)})
        args += [f"--{key} {shlex.quote(values[0])}"] if values else []
    return " ".join(args)


def archive_path(wildcards, input):
    """--path of a worldclim run that reads the downloaded archive (it overrides the
    run's dataset.path, which is empty then)."""
    return f"--path {shlex.quote(input.archive)}" if input.get("archive") else ""


def train_runtime_min(wildcards, attempt):
    """Minutes a scan job may need: the update budget at a conservative 500 updates/s.

    The fast CPU engine runs ~1000+ updates/s on one thread. A job that hit its time limit
    is resubmitted (restart-times) and resumes from its checkpoint: each attempt gets a
    longer limit, so a slow node cannot make it fail the same way every time.
    """
    budget = run_config(wildcards.run)["training"]["max_updates"]
    return (10 + math.ceil(budget / 500 / 60)) * attempt


wildcard_constraints:
    run="[A-Za-z0-9][A-Za-z0-9_-]*",
    stage="|".join(settings.STAGES),
    T=r"[0-9][0-9.e+-]*",
    seed=r"\d+",
