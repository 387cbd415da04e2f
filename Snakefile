# collapse-spectroscopy: posterior collapse as automatic spectral pruning in beta-VAEs.
#
# The paper's protocol as a workflow (docs/science.md, README):
#   dataset -> prepared splits -> one training job per (T, seed) -> gather -> spectra -> Figs 1-4
# Every rule runs one `collapse-spectroscopy` command, which reads its settings from the
# run's resolved configuration (results/{run}/config/COMMAND.json); outputs live under
# results/{run}/.


import sys
import time

from snakemake.utils import min_version

from collapse_spectroscopy.cli.run_summary import built_runs, summary_lines
from collapse_spectroscopy.store.atomic import why_not_writable

# when this invocation started: the runs whose summary.json is newer were built by it
STARTED = time.time()

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/run_config.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/scan.smk"
include: "workflow/rules/refine.smk"
include: "workflow/rules/spectra.smk"
include: "workflow/rules/baselines.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/maps.smk"
include: "workflow/rules/studies.smk"


# A read-only or unwritable working directory stops the workflow with one line before
# anything is written, not with Snakemake's traceback from inside a job's preparation
# (Snakemake prints a sys.exit message as it is, an exception with file and line).
# .snakemake/ now: Snakemake writes its records there before any `onstart`.
if workflow.is_main_process and (cause := why_not_writable(".snakemake")):
    sys.exit(
        f"collapse-spectroscopy workflow: cannot write '.snakemake' (Snakemake's records): {cause}"
    )


# results/ only when jobs are about to run: a dry run writes nothing there.
onstart:
    if cause := why_not_writable("results"):
        sys.exit(
            f"collapse-spectroscopy workflow: cannot write 'results' (every run's outputs): {cause}"
        )


# After the last job, a few lines per run built (results folder, the figure to open first,
# thresholds and utilities against PCA, under-equilibrated points), so that the end of
# Snakemake's output says what happened.
onsuccess:
    for name in built_runs("results", config["runs"], STARTED):
        print("\n".join(summary_lines(f"results/{name}", name)))


rule all:
    default_target: True
    input:
        run_targets(config["default_runs"]),


rule paper_figures:
    input:
        run_targets(["worldclim"]),
