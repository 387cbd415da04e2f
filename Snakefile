# collapse-spectroscopy: posterior collapse as automatic spectral pruning in beta-VAEs.
#
# The paper's protocol as a workflow (../shared/SPEC.md, README):
#   dataset -> prepared splits -> one training job per (T, seed) -> gather -> spectra -> Figs 1-4
# Every rule runs one `collapse-spectroscopy` command; outputs live under results/{run}/.


from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/scan.smk"
include: "workflow/rules/spectra.smk"
include: "workflow/rules/figures.smk"


rule all:
    default_target: True
    input:
        run_targets(config["default_runs"]),


rule paper_figures:
    input:
        run_targets(["worldclim"]),
