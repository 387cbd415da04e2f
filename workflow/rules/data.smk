# Data: acquire the source and build the prepared dataset of a run (docs/science.md §5).


rule fetch_worldclim:
    output:
        "resources/worldclim/wc2.1_{resolution}_bio.zip",
    log:
        "resources/worldclim/fetch_{resolution}.log",
    conda:
        "../../envs/collapse-spectroscopy.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=120,
    params:
        args=fetch_args,
    shell:
        "collapse-spectroscopy fetch --dest resources/worldclim "
        "--resolution {wildcards.resolution} {params.args} > {log} 2>&1"


# prepare reads the run's dataset and split sections (stage_config in common.smk) and the
# files of its dataset.path (dataset_inputs in common.smk).
rule prepare:
    input:
        run_config=stage_config("prepare"),
        archive=worldclim_archive,
        data=dataset_inputs,
    output:
        prepared="results/{run}/data/prepared.npz",
        summary="results/{run}/data/split_summary.json",
        standardization="results/{run}/data/standardization.json",
        split_map=report(
            "results/{run}/data/split_map.png",
            caption="../report/split_map.rst",
            category="{run}",
            subcategory="Data",
        ),
        split_map_pdf="results/{run}/data/split_map.pdf",
    log:
        "results/{run}/logs/prepare.log",
    conda:
        "../../envs/collapse-spectroscopy.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        archive=archive_path,
    shell:
        "collapse-spectroscopy prepare --run-config {input.run_config} {params.archive} "
        "--out results/{wildcards.run}/data > {log} 2>&1"
