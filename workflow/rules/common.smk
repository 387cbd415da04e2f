# Configuration: validation against the schema (which also fills in the defaults), the
# temperature grid of each run, and the targets of a run.
import math
import shlex
from pathlib import Path

import numpy as np
from snakemake.utils import validate

from collapse_spectroscopy.workflow_config import check_config

# First the project's check, which names the offending config key (and checks what a
# schema cannot: default_runs exist, fractions sum to 1, ...); then Snakemake's validate,
# which fills in the schema's defaults.
check_config(config, Path(workflow.basedir) / "workflow/schemas/config.schema.yaml")
validate(config, schema="../schemas/config.schema.yaml")


def run_config(run):
    return config["runs"][run]


def temperatures(run):
    """The scan's temperatures as floats (a list, or {min, max, num} log-spaced)."""
    grid = run_config(run)["scan"]["temperatures"]
    if isinstance(grid, dict):
        return [float(t) for t in np.geomspace(grid["min"], grid["max"], grid["num"])]
    return [float(t) for t in grid]


def t_label(t):
    """T in a file name: Python's shortest repr, which float() reads back exactly."""
    return repr(float(t))


def scan_points(run):
    return expand(
        "results/{run}/scan/T={T}/seed={seed}.nc",
        run=run,
        T=[t_label(t) for t in temperatures(run)],
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
    if ds.get("split_column"):
        args.append(f"--split-column {shlex.quote(ds['split_column'])}")
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
