# The scan: one training job per (run, T, seed) (docs/science.md §5). Each job trains the linear
# beta-VAE at temperature T to equilibrium and measures its observables on the test split.
# The trainer is exec'd, so a signal from SLURM (time limit, preemption) reaches it and not
# only the shell around it. It reads the run's model and training sections (stage_config in
# common.smk).


rule train_point:
    input:
        data="results/{run}/data/prepared.npz",
        run_config=stage_config("train"),
    output:
        point="results/{run}/scan/T={T}/seed={seed}.nc",
        weights="results/{run}/scan/T={T}/seed={seed}.pt",
        log_csv="results/{run}/scan/T={T}/seed={seed}.log.csv",
    log:
        "results/{run}/logs/train/T={T}_seed={seed}.log",
    conda:
        "../../envs/collapse-spectroscopy.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=train_runtime_min,
        gpu=lambda wc: int(run_config(wc.run)["training"]["gpu"]),
    shell:
        "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} OPENBLAS_NUM_THREADS={threads} "
        "exec collapse-spectroscopy train --run-config {input.run_config} --data {input.data} "
        "-T {wildcards.T} --seed {wildcards.seed} --out {output.point} "
        "--weights {output.weights} --log {output.log_csv} --threads {threads} > {log} 2>&1"
