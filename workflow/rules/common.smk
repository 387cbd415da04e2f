# Configuration: validation against the schema (which also fills in the defaults), the
# temperature grid of each run, the configuration each job reads, and the targets of a run.
import json
import math
import re
import shlex
import shutil
import sys
from pathlib import Path

from snakemake.utils import validate
from snakemake.exceptions import WorkflowError

from collapse_spectroscopy.cli import ERROR_FD_ENV
from collapse_spectroscopy.config import settings
from collapse_spectroscopy.config.checks import check_config, export_project_root
from collapse_spectroscopy.config.dataset_paths import GRIDLESS_SOURCES, dataset_files
from collapse_spectroscopy.config.grid import (
    map_points,
    scan_point_label,
    scan_temperatures,
)
from collapse_spectroscopy.config.studies import study_runs
from collapse_spectroscopy.errors import InputError
from collapse_spectroscopy.figures import REGISTRY as FIGURE_REGISTRY
from collapse_spectroscopy.jobs.chunks import (
    auto_points_per_job,
    scan_blocks,
    scan_chains,
    scan_chunks,
)
from collapse_spectroscopy.store.atomic import atomic_path

# First the project's check, which names the offending config key (and checks what a
# schema cannot: finite numbers, default_runs exist, fractions sum to 1, distinct scan
# points, ...): a bad config stops here, before any job, with exit status 2 and one line
# per problem (no traceback); then Snakemake's validate, which fills in the defaults
# (settings.resolve_run fills in the same ones, for the CLI and the tests). Both read the
# schema inside the package (src/collapse_spectroscopy/config/schema.yaml), the one home of
# every default.
try:
    check_config(config)
except InputError as exc:
    print(f"collapse-spectroscopy workflow: {exc}", file=sys.stderr)
    sys.exit(2)
# a custom model built once on its arrays file's shape (jobs/preflight.py): its wrong
# shapes or non-finite values stop the workflow here too, not in a training job
if any((r.get("model") or {}).get("kind") == "custom" for r in config["runs"].values()):
    from collapse_spectroscopy.jobs.preflight import custom_model_errors

    if problems := custom_model_errors(config["runs"]):
        for problem in problems:
            print(f"collapse-spectroscopy workflow: {problem}", file=sys.stderr)
        sys.exit(2)
# the runs each study derives from its base run (checked above), then runs like any other
config["runs"].update(study_runs(config))
validate(config, schema=str(settings.SCHEMA_PATH))

# envs/collapse-spectroscopy.yaml installs the project from this checkout (conda route).
export_project_root(workflow.basedir)

# Each job writes its stderr to its log (`> {log} 2>&1`), on the results disk, where a full
# disk loses the command's one error line. fd 3 keeps Snakemake's own stderr, and the
# command writes that line there too (cli.ERROR_FD_ENV), so it reaches the terminal.
shell.prefix(f"set -euo pipefail; exec 3>&2; export {ERROR_FD_ENV}=3; ")


def run_config(run):
    return config["runs"][run]


# a regex that matches nothing: the wildcard constraint of a rule no run or study uses
MATCH_NOTHING = "(?!)"


def any_of(names):
    """A wildcard constraint matching exactly ``names``, or MATCH_NOTHING when there are
    none, so that the rule then matches no name at all."""
    return "|".join(re.escape(name) for name in names) or MATCH_NOTHING


# Each job reads its settings from results/{run}/config/{stage}.json, only the sections
# its command reads (settings.STAGES), written by rule run_config (rules/run_config.smk).
# One file per stage, not one per run: Snakemake reruns everything downstream of a
# rewritten file, so one run file would rerun every training job for a changed
# spectra.rho_min; this way a changed key reruns only the jobs that read it.
def stage_config(stage):
    """The run configuration a job of command `stage` reads (its input `run_config`)."""
    return f"results/{{run}}/config/{stage}.json"


def scan_point_ids(run):
    """(T label, seed) of each scan point of a run: one per T (as check_config saw the grid)
    and seed, temperature-major."""
    grid = run_config(run)["scan"]["temperatures"]
    seeds = run_config(run)["scan"]["seeds"]
    return [
        (scan_point_label(t), seed) for t in scan_temperatures(grid) for seed in seeds
    ]


# where the scan points of a run live; with scan.start sweep, the cooling chains' too
SCAN, COOLING = "scan", "scan/cooling"


def scan_point_file(run, point, suffix=".nc", folder=SCAN):
    T, seed = point
    return f"results/{run}/{folder}/T={T}/seed={seed}{suffix}"


def scan_points(run, folder=SCAN):
    """The scan-point files of a run (``folder`` COOLING: of its cooling chains)."""
    return [scan_point_file(run, point, folder=folder) for point in scan_point_ids(run)]


def refine_rounds(run):
    """The refinement rounds of a run (scan.refine.rounds; docs/science.md §4.9)."""
    return run_config(run)["scan"]["refine"]["rounds"] if run in config["runs"] else 0


def refine_record(run, i):
    """The record of refinement round ``i`` of a run: the temperatures it added, and why."""
    return f"results/{run}/scan/refine_round_{i}.json"


def added_temperatures(run, rounds):
    """The temperatures refinement rounds 1 .. ``rounds`` added, per round: read from each
    round's record once its checkpoint (rule refine) has run. Until then Snakemake stops
    here (checkpoints.refine.get raises) and comes back after the round."""
    added = []
    for i in range(1, rounds + 1):
        record = checkpoints.refine.get(run=run, round=str(i)).output[0]
        added.append([a["T"] for a in json.loads(Path(record).read_text())["added"]])
    return added


def refined_points(run, rounds=None):
    """The scan-point files of a run: its grid, then those refinement rounds 1 ..
    ``rounds`` (default: all of the run's) added, every seed."""
    rounds = refine_rounds(run) if rounds is None else rounds
    seeds = run_config(run)["scan"]["seeds"]
    added = [t for temps in added_temperatures(run, rounds) for t in temps]
    ids = [(scan_point_label(t), seed) for t in added for seed in seeds]
    return scan_points(run) + [scan_point_file(run, point) for point in ids]


def gathered_points(wildcards):
    """The scan points gathered into scan.nc: a refined run's added points too."""
    return refined_points(wildcards.run)


def refine_records(wildcards):
    """The round records of a refined run (spectra's summary and Fig 1 read them)."""
    n = refine_rounds(wildcards.run)
    return (
        {"refined": [refine_record(wildcards.run, i) for i in range(1, n + 1)]}
        if n
        else {}
    )


def refine_args(wildcards, input):
    """--refined with the round records of a refined run; nothing for any other run."""
    records = input.get("refined") or []
    return f"--refined {' '.join(map(shlex.quote, records))}" if records else ""


def added_point_start(run, T, seed):
    """With continuation starts, the (T label, seed) an added point starts from: the
    nearest point of the chain's side (colder when warming, hotter when cooling) among
    those trained before its round (docs/science.md §4.9)."""
    rounds = added_temperatures(run, refine_rounds(run))
    temps = scan_temperatures(run_config(run)["scan"]["temperatures"])
    for added in rounds:
        if float(T) in added:
            break
        temps += added
    cooling = run_config(run)["scan"]["direction"] == "cooling"
    side = [t for t in temps if (t > float(T) if cooling else t < float(T))]
    start = min(side) if cooling else max(side)
    return scan_point_label(start), int(seed)


def is_sweep(run):
    return run in config["runs"] and run_config(run)["scan"]["start"] == "sweep"


def scan_jobs(run):
    """The training jobs of a run but those of one independent point each (rule
    train_point makes those), as (folder, points, start, chain): the (T label, seed) of
    the job's points in training order, and with continuation starts (``chain``) the
    chain's point before them, in another job, or None (docs/science.md §5.8).

    Independent starts with scan.points_per_job > 1: chunks.scan_chunks (round-robin, so
    each job spans the temperature range). Continuation: chunks.scan_chains, one chain per
    seed in scan.direction; sweep: the warming chains into scan/, the cooling ones into
    scan/cooling/."""
    scan = run_config(run)["scan"]
    per_job, start, ids = scan["points_per_job"], scan["start"], scan_point_ids(run)
    if start == "independent":
        if per_job == "auto":  # blocks cold to warm, the coldest first (job_priority)
            per_job = auto_points_per_job(len(ids), scan_cores())
            chunks = scan_blocks(ids, per_job) if per_job > 1 else []
        else:
            chunks = scan_chunks(ids, per_job) if per_job > 1 else []
        return [(SCAN, points, None, False) for points in chunks]
    per_job = len(ids) if per_job == "auto" else per_job  # a chain in one job
    cooling = start == "continuation" and scan["direction"] == "cooling"
    jobs = [
        (SCAN, j.points, j.start, True)
        for j in scan_chains(ids, per_job, cooling=cooling)
    ]
    if start == "sweep":
        chains = scan_chains(ids, per_job, cooling=True)
        jobs += [(COOLING, j.points, j.start, True) for j in chains]
    return jobs


def cooling_input(wildcards):
    """A sweep's cooling scan: spectra adds the hysteresis columns from it."""
    return (
        {"cooling": f"results/{wildcards.run}/scan_cooling.nc"}
        if is_sweep(wildcards.run)
        else {}
    )


def cooling_args(wildcards, input):
    return (
        f"--cooling-scan {shlex.quote(input.cooling)}"
        if is_sweep(wildcards.run)
        else ""
    )


def scan_cores():
    """The cores the jobs share (--cores) when Snakemake runs them on this machine; None
    under a cluster executor (or with no --cores). None also in a cluster job's own
    Snakemake (remote execution), which must plan the very rules its main process did
    (there, under a cluster executor: one point per job)."""
    if not workflow.local_exec or workflow.remote_exec:
        return None
    try:
        return int(workflow.cores)
    except (WorkflowError, TypeError, ValueError):
        return None


def point_runs():
    """The runs whose scan is one independent point per job (rule train_point)."""
    return [
        r
        for r in config["runs"]
        if run_config(r)["scan"]["start"] == "independent" and not scan_jobs(r)
    ]


def not_grid_label(run):
    """A constraint for wildcard T matching any temperature label but the run's grid's:
    the added points of a run whose grid points are trained by chunk rules."""
    labels = "|".join(re.escape(label) for label, _ in scan_point_ids(run))
    return rf"(?!(?:{labels})(?:/|$))[0-9][0-9.e+-]*"


def added_start(run):
    """The .pt an added point of a continuation run starts from (none: a random start)."""
    if run_config(run)["scan"]["start"] != "continuation":
        return lambda wc: []
    return lambda wc: [
        scan_point_file(run, added_point_start(run, wc.T, wc.seed), ".pt")
    ]


def added_start_args(run):
    if run_config(run)["scan"]["start"] != "continuation":
        return ""
    return lambda wc: chain_args(run, SCAN, added_point_start(run, wc.T, wc.seed), True)


# above every training job's priority (at most the number of temperatures or jobs): the
# maps, and the run configurations (local, seconds each)
MAP_PRIORITY = 1_000_000


def point_priority(wildcards):
    """Rule train_point's priority: the colder the point, the higher (cold points train
    longest: started first, they leave the short warm ones to fill the cores at the end).
    """
    temps = sorted(scan_temperatures(run_config(wildcards.run)["scan"]["temperatures"]))
    labels = [scan_point_label(t) for t in temps]
    return len(labels) - labels.index(wildcards.T) if wildcards.T in labels else 0


def chain_args(run, folder, start, chain):
    """--chain, and --start-from with the .pt of the chain's point before the job's."""
    if not chain:
        return ""
    if not start:
        return "--chain"
    return f"--chain --start-from {shlex.quote(scan_point_file(run, start, '.pt', folder))}"


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


def copy_file(src, dst, log):
    """Copy ``src`` to ``dst``, content and mode (as cp and chmod --reference), atomically:
    under a temporary name renamed into place when complete. ``log`` gets one line."""
    with atomic_path(dst) as tmp:
        shutil.copy(src, tmp)
    with atomic_path(log) as tmp:
        tmp.write_text(f"copied {src} to {dst}\n")


def null_run_input(wildcards):
    """The spectra table of the run's null_run (a linear run on the same dataset, checked
    by check_config), when it names one: Fig 5 draws its Dn*_k."""
    null = run_config(wildcards.run).get("null_run")
    return {"null_table": f"results/{null}/spectra.csv"} if null else {}


def null_run_args(wildcards, input):
    """--null-spectra and --null-name of the run's null_run. Not in the figures stage file:
    the null run is a relation between runs, and its table is an input of the job, so
    naming another null run (or none) reruns the figures through the changed input."""
    null = run_config(wildcards.run).get("null_run")
    if not null:
        return ""
    return f"--null-spectra {shlex.quote(input.null_table)} --null-name {shlex.quote(null)}"


def null_summary_input(wildcards):
    """The summary of the run's null_run: the rate-distortion figure draws its points."""
    null = run_config(wildcards.run).get("null_run")
    return {"null_summary": f"results/{null}/summary.json"} if null else {}


def null_summary_args(wildcards, input):
    null = run_config(wildcards.run).get("null_run")
    if not null:
        return ""
    return f"--null-summary {shlex.quote(input.null_summary)} --null-name {shlex.quote(null)}"


def autoencoder_runs():
    """The runs with an autoencoder baseline (baselines.autoencoder; MLP runs only, checked
    by check_config)."""
    return [
        r for r in config["runs"] if "autoencoder" in run_config(r).get("baselines", {})
    ]


def autoencoder_table(run):
    return f"results/{run}/baselines/autoencoder.csv"


def autoencoder_input(wildcards):
    """The run's autoencoder baseline, when it has one: Fig 5 draws its distortion."""
    run = wildcards.run
    return {"autoencoder": autoencoder_table(run)} if run in autoencoder_runs() else {}


def autoencoder_args(wildcards, input):
    """--autoencoder of the figures job. Not in the figures stage file: the table is an
    input of the job, so a changed baseline (or none) reruns the figures through it."""
    if not input.get("autoencoder"):
        return ""
    return f"--autoencoder {shlex.quote(input.autoencoder)}"


def autoencoder_runtime_min(wildcards, attempt):
    """Minutes the autoencoder job may need: max_latents trainings, each up to the run's
    budget, as a chunk of that many scan points (scan_runtime_min)."""
    k = run_config(wildcards.run)["baselines"]["autoencoder"]["max_latents"]
    return scan_runtime_min(wildcards.run, k, attempt)


def map_targets(run):
    """The maps of a run (rules/maps.smk); none for a run the config does not define
    (rule paper_figures names the worldclim run whatever the config)."""
    if run not in config["runs"]:
        return []
    temps, _ = map_points(run_config(run))
    table = run_config(run)["dataset"]["source"] in GRIDLESS_SOURCES
    names = ["loadings.csv", "loadings.png"]
    names += ["latent_means.csv"] if table else ["latent_means.tif", "latent_means.png"]
    return [
        f"results/{run}/maps/T={scan_point_label(t)}/{name}"
        for t in temps
        for name in names
    ]


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
        out += expand(
            f"results/{run}/figures/rate_distortion.{{ext}}", ext=["png", "pdf"]
        )
        if is_sweep(run):
            out += expand(
                f"results/{run}/figures/hysteresis.{{ext}}", ext=["png", "pdf"]
            )
        out += map_targets(run)
        if run in autoencoder_runs():
            out.append(autoencoder_table(run))
    return out


def worldclim_archive(wildcards):
    """A worldclim run without dataset.path reads the archive the fetch rule downloads."""
    ds = run_config(wildcards.run)["dataset"]
    if ds["source"] == "worldclim" and not ds.get("path"):
        return f"resources/worldclim/wc2.1_{ds['resolution']}_bio.zip"
    return []


def dataset_inputs(wildcards):
    """The files of the run's dataset.path, each file and each layer or zip in a folder
    (workflow_config.dataset_files): a layer replaced or edited in place reruns prepare.
    """
    return dataset_files(run_config(wildcards.run)["dataset"])


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


def point_args(points, outputs):
    """--point T SEED OUT for each (T label, seed) of a job and its .nc output."""
    return " ".join(
        f"--point {T} {seed} {shlex.quote(out)}"
        for (T, seed), out in zip(points, outputs)
    )


def scan_runtime_min(run, points, attempt):
    """Minutes a scan job of ``points`` scan points may need: each point's update budget at
    a conservative 500 updates/s.

    The fast CPU engine runs ~1000+ updates/s on one thread. A job that hit its time limit
    is resubmitted (restart-times) and resumes (finished points kept, the interrupted one
    from its checkpoint): each attempt gets a longer limit, so a slow node cannot make it
    fail the same way every time.
    """
    budget = run_config(run)["training"]["max_updates"]
    return (10 + math.ceil(points * budget / 500 / 60)) * attempt


def train_runtime_min(wildcards, attempt):
    """scan_runtime_min of a job of one scan point (rule train_point)."""
    return scan_runtime_min(wildcards.run, 1, attempt)


def chunk_runtime_min(run, points):
    """scan_runtime_min of a job of ``points`` scan points of ``run`` (a chunk rule)."""
    return lambda wildcards, attempt: scan_runtime_min(run, points, attempt)


wildcard_constraints:
    run="[A-Za-z0-9][A-Za-z0-9_-]*",
    stage=any_of(settings.STAGES),
    T=r"[0-9][0-9.e+-]*",
    seed=r"\d+",
