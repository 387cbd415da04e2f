# Configuration: validation against the schema (which also fills in the defaults), the
# temperature grid of each run, and the targets of a run.
import math
import shlex
import sys
from pathlib import Path

from snakemake.utils import validate

from collapse_spectroscopy.errors import InputError
from collapse_spectroscopy.workflow_config import (
    check_config,
    export_project_root,
    scan_point_label,
    scan_temperatures,
)

# First the project's check, which names the offending config key (and checks what a
# schema cannot: finite numbers, default_runs exist, fractions sum to 1, distinct scan
# points, ...): a bad config stops here, before any job, with exit status 2 and one line
# per problem (no traceback); then Snakemake's validate, which fills in the defaults.
try:
    check_config(config, Path(workflow.basedir) / "workflow/schemas/config.schema.yaml")
except InputError as exc:
    print(f"collapse-spectroscopy workflow: {exc}", file=sys.stderr)
    sys.exit(2)
validate(config, schema="../schemas/config.schema.yaml")

# envs/collapse-spectroscopy.yaml installs the project from this checkout (conda route).
export_project_root(workflow.basedir)


def run_config(run):
    return config["runs"][run]


def scan_points(run):
    """The scan-point files of a run: one per T (as check_config saw the grid) and seed."""
    grid = run_config(run)["scan"]["temperatures"]
    return expand(
        "results/{run}/scan/T={T}/seed={seed}.nc",
        run=run,
        T=[scan_point_label(t) for t in scan_temperatures(grid)],
        seed=run_config(run)["scan"]["seeds"],
    )


FIGURES = [
    "fig1_collapse_scan",
    "fig2_truncated_distortion",
    "fig3_duality",
    "fig4_latent_scale",
]


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


def dataset_args(wildcards, input):
    ds = run_config(wildcards.run)["dataset"]
    sp = run_config(wildcards.run)["split"]
    paths = ds.get("path") or []
    paths = [paths] if isinstance(paths, str) else list(paths)
    if input.get("archive"):
        paths = [input.archive]
    args = [f"--source {ds['source']}"]
    args += [f"--path {' '.join(map(shlex.quote, map(str, paths)))}"] if paths else []
    args += [
        f"--block-km {sp['block_km']}",
        f"--fractions {' '.join(map(str, sp['fractions']))}",
        f"--split-seed {sp['seed']}",
    ]
    if ds["source"] == "worldclim":
        args.append(f"--resolution {ds['resolution']}")
        if ds.get("sha256"):
            args.append(f"--sha256 {ds['sha256']}")
    if ds.get("split_column"):
        args.append(f"--split-column {shlex.quote(ds['split_column'])}")
    if ds.get("drop_columns"):
        args.append(f"--drop-columns {' '.join(map(shlex.quote, ds['drop_columns']))}")
    if ds.get("nodata") is not None:
        # '=': a negative value after a space would read as an option
        args.append(f"--nodata={ds['nodata']!r}")
    if ds["source"] == "synthetic":
        args.append(f"--synthetic-seed {ds['synthetic_seed']}")
    return " ".join(args)


def training_args(wildcards):
    run = run_config(wildcards.run)
    tr, model = run["training"], run["model"]
    return " ".join(
        [
            f"--latents {model['latents']}",
            f"--sigma2 {model['sigma2']}",
            f"--max-updates {tr['max_updates']}",
            f"--patience {tr['patience']}",
            f"--batch-size {tr['batch_size']}",
            f"--learning-rate {tr['learning_rate']}",
            f"--eval-every {tr['eval_every']}",
            f"--eval-split {tr['eval_split']}",
            f"--engine {tr['engine']}",
            f"--checkpoint-every {tr['checkpoint_every']}",
            f"--device {'cuda' if tr['gpu'] else 'cpu'}",
        ]
    )


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
    T=r"[0-9][0-9.e+-]*",
    seed=r"\d+",
