# Gather the scan into one file, then the collapse, utility and PCA spectra (docs/science.md §4).
# A refined run (scan.refine, rules/refine.smk) gathers its grid and every added point, and
# the spectra's summary gets the rounds' records.


rule gather:
    input:
        gathered_points,
    output:
        "results/{run}/scan.nc",
    log:
        "results/{run}/logs/gather.log",
    conda:
        "../../envs/collapse-spectroscopy.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "collapse-spectroscopy gather {input} --out {output} > {log} 2>&1"


# A sweep (scan.start sweep) also gathers its cooling chains, from scan/cooling/.
rule gather_cooling:
    input:
        lambda wc: scan_points(wc.run, COOLING),
    output:
        "results/{run}/scan_cooling.nc",
    log:
        "results/{run}/logs/gather_cooling.log",
    wildcard_constraints:
        run=any_of([r for r in config["runs"] if is_sweep(r)]),
    conda:
        "../../envs/collapse-spectroscopy.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "collapse-spectroscopy gather {input} --out {output} > {log} 2>&1"


# spectra (and figures) read the run's spectra section, rho_min (stage_config in common.smk).
rule spectra:
    input:
        unpack(cooling_input),
        unpack(refine_records),
        scan="results/{run}/scan.nc",
        prepared="results/{run}/data/prepared.npz",
        run_config=stage_config("spectra"),
    output:
        table=report(
            "results/{run}/spectra.csv",
            caption="../report/spectra.rst",
            category="{run}",
            subcategory="Spectra",
        ),
        summary="results/{run}/summary.json",
    log:
        "results/{run}/logs/spectra.log",
    conda:
        "../../envs/collapse-spectroscopy.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        cooling=cooling_args,
        refined=refine_args,
    shell:
        "collapse-spectroscopy spectra {input.scan} --run-config {input.run_config} "
        "--prepared {input.prepared} --out {output.table} --summary {output.summary} "
        "{params.cooling} {params.refined} > {log} 2>&1"
