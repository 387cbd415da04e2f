# Baselines of a nonlinear run (docs/science.md §9, "Autoencoder baseline"): deterministic
# autoencoders of the run's MLP architecture with k = 1 .. baselines.autoencoder.max_latents
# latents, trained by the run's protocol on its prepared data in one job, which reads the
# run's model, training and baselines sections (stage_config in common.smk). Its table is
# a target of the run and an input of its figures job (Fig 5a). Exec'd, as a training job,
# so that SLURM's signal reaches the trainer: it checkpoints and exits 4, and the rerun
# keeps the finished k and resumes the interrupted one.


rule autoencoder_baseline:
    input:
        data="results/{run}/data/prepared.npz",
        run_config=stage_config("autoencoder"),
    output:
        "results/{run}/baselines/autoencoder.csv",
    log:
        "results/{run}/logs/autoencoder.log",
    wildcard_constraints:
        run=any_of(autoencoder_runs()),
    conda:
        "../../envs/collapse-spectroscopy.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=autoencoder_runtime_min,
        gpu=lambda wc: int(run_config(wc.run)["training"]["gpu"]),
        slurm_extra=TRAIN_SLURM_EXTRA,
    shell:
        "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} OPENBLAS_NUM_THREADS={threads} "
        "exec collapse-spectroscopy autoencoder --run-config {input.run_config} "
        "--data {input.data} --out {output} --threads {threads} > {log} 2>&1"
