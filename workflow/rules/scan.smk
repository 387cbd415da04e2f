# The scan: training jobs over the (run, T, seed) points (docs/science.md §5). Each point is
# the linear beta-VAE trained at temperature T to equilibrium and measured on the test
# split. The trainer is exec'd, so a signal from SLURM (time limit, preemption) reaches it
# and not only the shell around it. It reads the run's model and training sections
# (stage_config in common.smk).
#
# One job per point (rule train_point), or, with scan.points_per_job > 1 or continuation
# starts (scan.start; each job a piece of a seed's chain over T, given --chain and the
# .pt of the chain's point before it as an input), one job per chunk of points (rules train_chunk_<run>_<i>, one per chunk: Snakemake sees each point's
# files as outputs of its chunk's job; a rule's outputs cannot be computed from a
# wildcard, so each chunk is a rule of its own). A chunk job trains its points one after
# another in one process (src/collapse_spectroscopy/jobs/chunks.py: a rerun keeps the points
# already written, resumes the interrupted one). Every job runs the same command
# (TRAIN_SHELL), its points given by --point arguments made from its outputs: a param
# derived from the outputs, which Snakemake's params trigger ignores, so changing
# points_per_job reruns no finished point.
import re

TRAIN_SHELL = (
    "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads} OPENBLAS_NUM_THREADS={threads} "
    "exec collapse-spectroscopy train --run-config {input.run_config} --data {input.data} "
    "{params.points} {params.start} --threads {threads} > {log} 2>&1"
)


# the runs whose scan runs one independent point per job
POINT_RUNS = point_runs()

# SLURM's warning before a training job's time limit (other executors ignore it): SIGTERM
# to every process of the job's steps 300 s before it (SLURM may send it up to a minute
# early); the trainer then writes a checkpoint and exits non-zero, and restart-times
# resumes it. TERM, not USR1: the job's own Snakemake exits at once on USR1, but on TERM
# waits for its running command. No "B:" prefix: that signals only the batch shell.
TRAIN_SLURM_EXTRA = "--signal=TERM@300"


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
    wildcard_constraints:
        run=any_of(POINT_RUNS),
    priority: point_priority
    conda:
        "../../envs/collapse-spectroscopy.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=train_runtime_min,
        gpu=lambda wc: int(run_config(wc.run)["training"]["gpu"]),
        slurm_extra=TRAIN_SLURM_EXTRA,
    params:
        points=lambda wc, output: point_args([(wc.T, wc.seed)], [output.point]),
        start="",
    shell:
        TRAIN_SHELL


CHUNK_RULES = set()
for _run in config["runs"]:
    _jobs = scan_jobs(_run)
    for _i, (_folder, _points, _start, _chain) in enumerate(_jobs):
        _name = f"train_chunk_{re.sub('[^A-Za-z0-9_]', '_', _run)}_{_i}"
        while _name in CHUNK_RULES:  # runs a-b and a_b: both would be train_chunk_a_b_0
            _name += "_"
        CHUNK_RULES.add(_name)

        rule:
            name:
                _name
            input:
                data=f"results/{_run}/data/prepared.npz",
                run_config=f"results/{_run}/config/train.json",
                start=[scan_point_file(_run, _start, ".pt", _folder)] if _start else [],
            output:
                point=[scan_point_file(_run, p, folder=_folder) for p in _points],
                weights=[scan_point_file(_run, p, ".pt", _folder) for p in _points],
                log_csv=[scan_point_file(_run, p, ".log.csv", _folder) for p in _points],
            log:
                f"results/{_run}/logs/train/chunk{_i}.log",
            priority: len(_jobs) - _i  # in scan_jobs' order: blocks coldest first
            conda:
                "../../envs/collapse-spectroscopy.yaml"
            threads: 1
            resources:
                mem_mb=2000,
                runtime=chunk_runtime_min(_run, len(_points)),
                gpu=int(run_config(_run)["training"]["gpu"]),
                slurm_extra=TRAIN_SLURM_EXTRA,
            params:
                points=lambda wc, output, points=_points: point_args(
                    points, output.point
                ),
                start=chain_args(_run, _folder, _start, _chain),
            shell:
                TRAIN_SHELL
