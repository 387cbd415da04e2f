# Adaptive refinement of the scan (scan.refine; docs/science.md §4.9). Round i is a
# checkpoint: it reads every point trained before it (the grid and rounds 1 .. i-1, all
# seeds) and records in results/{run}/scan/refine_round_{i}.json the temperatures it adds
# for the ranks whose crossing threshold lies inside the scan. Once it has run, Snakemake
# reads the record (added_temperatures in common.smk) and plans the added points' training
# jobs, the next round, and the gather of every point. Nothing here for a run with
# rounds 0: its DAG and files are those of a run without refinement.


checkpoint refine:
    input:
        points=lambda wc: refined_points(wc.run, int(wc.round) - 1),
        run_config=stage_config("refine"),
    output:
        "results/{run}/scan/refine_round_{round}.json",
    log:
        "results/{run}/logs/refine_round_{round}.log",
    wildcard_constraints:
        run=any_of([r for r in config["runs"] if refine_rounds(r)]),
        round=r"[1-9][0-9]*",
    conda:
        "../../envs/collapse-spectroscopy.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "collapse-spectroscopy refine {input.points} --round {wildcards.round} "
        "--run-config {input.run_config} --out {output} > {log} 2>&1"


# The added points of a run whose grid is trained one point per job are train_point's
# (scan.smk), as any other point; those of a run with chunks or chains: one job each, by
# the run's rule below (an added point is known only after its round, and a rule's outputs
# cannot be computed then), with continuation starts from the nearest point before it on
# its chain's side.
for _run in config["runs"]:
    if not refine_rounds(_run) or _run in POINT_RUNS:
        continue

    rule:
        name:
            f"train_added_{re.sub('[^A-Za-z0-9_]', '_', _run)}"
        input:
            data=f"results/{_run}/data/prepared.npz",
            run_config=f"results/{_run}/config/train.json",
            start=added_start(_run),
        output:
            point=f"results/{_run}/scan/T={{T}}/seed={{seed}}.nc",
            weights=f"results/{_run}/scan/T={{T}}/seed={{seed}}.pt",
            log_csv=f"results/{_run}/scan/T={{T}}/seed={{seed}}.log.csv",
        log:
            f"results/{_run}/logs/train/T={{T}}_seed={{seed}}.log",
        wildcard_constraints:
            T=not_grid_label(_run),
        conda:
            "../../envs/collapse-spectroscopy.yaml"
        threads: 1
        resources:
            mem_mb=2000,
            runtime=chunk_runtime_min(_run, 1),
            gpu=int(run_config(_run)["training"]["gpu"]),
            slurm_extra=TRAIN_SLURM_EXTRA,
        params:
            points=lambda wc, output: point_args([(wc.T, wc.seed)], [output.point]),
            start=added_start_args(_run),
        shell:
            TRAIN_SHELL
