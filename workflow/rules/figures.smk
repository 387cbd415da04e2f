# The paper's Figs 1-4 (docs/science.md §6) and the utility concentration, Fig 5 (§9), and
# the split map beside them. Fig 5 draws the run's null run and its autoencoder baseline
# (rules/baselines.smk) when it has them.


rule figures:
    input:
        unpack(null_run_input),
        unpack(autoencoder_input),
        unpack(refine_records),
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
        autoencoder=autoencoder_args,
        refined=refine_args,
    shell:
        "MPLBACKEND=Agg collapse-spectroscopy figures {input.scan} {input.table} "
        "--run-config {input.run_config} --out-dir results/{wildcards.run}/figures "
        "{params.null} {params.autoencoder} {params.refined} > {log} 2>&1"


# a copy: never worth a cluster job
localrules:
    split_map_figure,


# copy_file (common.smk) writes under a temporary name renamed into place when complete,
# so a full disk never leaves a truncated PNG under the output's name.
rule split_map_figure:
    input:
        "results/{run}/data/split_map.png",
    output:
        "results/{run}/figures/split_map.png",
    log:
        "results/{run}/logs/split_map_figure.log",
    threads: 1
    run:
        copy_file(input[0], output[0], log[0])


# A sweep's hysteresis figure (docs/science.md §5.9): rho against T while warming and cooling.
rule hysteresis_figure:
    input:
        scan="results/{run}/scan.nc",
        cooling="results/{run}/scan_cooling.nc",
        table="results/{run}/spectra.csv",
        run_config=stage_config("hysteresis"),
    output:
        png=figure_output("hysteresis", "png"),
        pdf=figure_output("hysteresis", "pdf"),
    log:
        "results/{run}/logs/hysteresis_figure.log",
    wildcard_constraints:
        run=any_of([r for r in config["runs"] if is_sweep(r)]),
    conda:
        "../../envs/collapse-spectroscopy.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "MPLBACKEND=Agg collapse-spectroscopy hysteresis {input.scan} {input.cooling} "
        "{input.table} --run-config {input.run_config} "
        "--out-dir results/{wildcards.run}/figures > {log} 2>&1"


# The rate-distortion plane (docs/science.md §9.1): every scan point against the Gaussian
# bound of the evaluation split, beside the null run's points.
rule rate_distortion_figure:
    input:
        unpack(null_summary_input),
        summary="results/{run}/summary.json",
    output:
        png=figure_output("rate_distortion", "png"),
        pdf=figure_output("rate_distortion", "pdf"),
    log:
        "results/{run}/logs/rate_distortion_figure.log",
    conda:
        "../../envs/collapse-spectroscopy.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        null=null_summary_args,
    shell:
        "MPLBACKEND=Agg collapse-spectroscopy rate-distortion {input.summary} "
        "--out-dir results/{wildcards.run}/figures {params.null} > {log} 2>&1"
