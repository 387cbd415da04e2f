# Studies (docs/science.md §11): a base run and the runs derived from it by one key
# (studies.py; their runs are added to config["runs"] in common.smk, so each is trained
# like any run), compared in results/studies/{study}/: the spectra in long form and a
# figure of T_k, u_k and the stability of the effective variables against the value.
include: "studies_common.smk"


rule study:
    input:
        study_inputs,
    output:
        table="results/studies/{study}/spectra.csv",
        figure=report(
            "results/studies/{study}/study.png",
            caption="../report/study.rst",
            category="Studies",
            subcategory="{study}",
        ),
    log:
        "results/studies/{study}/study.log",
    wildcard_constraints:
        study=study_names(),
    conda:
        "../../envs/collapse-spectroscopy.yaml"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        args=study_args,
    shell:
        "MPLBACKEND=Agg collapse-spectroscopy study {params.args} "
        "--out {output.table} --figure {output.figure} > {log} 2>&1"


# every configured study's table and figure (and, through them, its runs)
rule studies:
    input:
        study_targets(),
