# The paper's Figs 1-4 (docs/science.md §6) and the utility concentration, Fig 5 (§9), and
# the split map beside them.


rule figures:
    input:
        unpack(null_run_input),
        scan="results/{run}/scan.nc",
        table="results/{run}/spectra.csv",
        run_config=stage_config("figures"),
    output:
        **{
            f"{name}_{ext}": figure_output(name, ext)
            for name in FIGURES
            for ext in ("png", "pdf")
        },
    log:
        "results/{run}/logs/figures.log",
    conda:
        "../../envs/collapse-spectroscopy.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        null=null_run_args,
    shell:
        "MPLBACKEND=Agg collapse-spectroscopy figures {input.scan} {input.table} "
        "--run-config {input.run_config} --out-dir results/{wildcards.run}/figures "
        "{params.null} > {log} 2>&1"


# a copy: never worth a cluster job
localrules:
    split_map_figure,


# The copy goes to a temporary name and is renamed into place only when complete, so a
# full disk never leaves a truncated PNG under the output's name; the trap removes the
# temporary file whatever happens. mktemp makes its file 0600: the copy takes its source's
# mode (written under the user's umask), so that others can read it as every other output.
rule split_map_figure:
    input:
        "results/{run}/data/split_map.png",
    output:
        "results/{run}/figures/split_map.png",
    log:
        "results/{run}/logs/split_map_figure.log",
    conda:
        "../../envs/collapse-spectroscopy.yaml"
    threads: 1
    shell:
        "(tmp=$(mktemp {output}.tmp-XXXXXX) && trap 'rm -f $tmp' EXIT && "
        "cp {input} $tmp && chmod --reference={input} $tmp && mv $tmp {output}) 2> {log}"
