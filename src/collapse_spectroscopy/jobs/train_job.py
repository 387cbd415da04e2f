"""One training job: a chunk of scan points, each trained at its (T, seed), measured, written.

This is what ``collapse-spectroscopy train`` (and so each Snakemake scan job) runs, for one
scan point or for several (``scan.points_per_job``, :mod:`.chunks`). Every output folder
is checked for writing before the data is loaded, so a read-only or misspelt destination
fails at once, not after the training. The job then loads the prepared dataset and
computes what depends on the data alone (the PCA references) once, for all its points.
For each point the weights and the training log are written first and the scan-point
NetCDF file last, each atomically, and a failed write removes what was written for that
point before it: a point's outputs exist together or not at all.

Signals: SIGTERM/SIGUSR1 during a point's training write its checkpoint and stop the job
(:class:`.checkpoint.Interrupted`, exit 4); between points (loading, measuring, writing)
the job finishes the point at hand and then stops the same way before the next one. The
rerun skips the finished points and resumes the interrupted one (:mod:`.chunks`).

**A chunk with** ``training.engine: batched`` trains its points not yet written together,
as one batched model (:func:`collapse_spectroscopy.training.batched.train_scan_points_batched`,
either ``model.kind``; each point follows the trajectory that ``fast``, for the MLP VAE
``mlp_fast``, follows for it alone), with one checkpoint for the batch:
``<first point's out>.batch.ckpt``. A signal during that training writes it and stops the
job (exit 4); the rerun resumes the batch bit for bit. Once trained, every
point is measured and written in turn (:func:`measure_and_write`, as after a training of
its own) and kept (:mod:`.chunks`), and only then is the batch checkpoint deleted; a
signal meanwhile is heeded after the last point (the training is done: stopping would
throw it away). A job killed while writing leaves a checkpoint of more points than its
rerun has left to train: the rerun deletes it (and says so) and trains those afresh.
``auto`` never picks ``batched``: a point's result would then depend on the points it
shares a job with (float32 rounding of the batched products), and so on
``scan.points_per_job``, which only groups jobs (on a CPU numba is also ~3x faster).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from collapse_spectroscopy.config import settings
from collapse_spectroscopy.errors import InputError, TrainingError
from collapse_spectroscopy.jobs import chunks
from collapse_spectroscopy.jobs.measure_point import DataReferences, job_attrs, point_dataset
from collapse_spectroscopy.jobs.points import JobOptions, PointFiles, batch_checkpoint
from collapse_spectroscopy.models.families import Architecture, model_spec
from collapse_spectroscopy.store import scanfile
from collapse_spectroscopy.store.atomic import (
    all_or_none,
    atomic_path,
    check_writable,
    remove_stale_temporaries,
    save_torch,
)
from collapse_spectroscopy.store.digest import data_identity
from collapse_spectroscopy.store.prepared import load_prepared
from collapse_spectroscopy.store.weights import read_weights, state_digest
from collapse_spectroscopy.training.batched import train_scan_points_batched
from collapse_spectroscopy.training.checkpoint import Interrupted, SignalFlag
from collapse_spectroscopy.training.engines import resolve_engine
from collapse_spectroscopy.training.scan_point import TrainConfig, resolve_device, train_scan_point

_MODEL = settings.section_defaults("model")  # the one home of these defaults
BATCHED = "batched"  # the engine a chunk trains its points together with


def set_threads(threads: int) -> None:
    """Pin torch and the BLAS pools to ``threads`` so parallel jobs do not oversubscribe."""
    if int(threads) != threads or threads < 1:
        raise InputError(f"threads = {threads!r}: expected an integer >= 1")
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(int(threads))
    threadpool_limits(int(threads))


def write_outputs(weights: Path, state: dict, log: Path, log_table, out: Path, point) -> None:
    """Write the weights, the training log and the scan point (last), or none of them."""
    with all_or_none() as written:
        save_torch(weights, state)
        written.append(weights)
        with atomic_path(log) as tmp:
            log_table.to_csv(tmp, index=False)
        written.append(log)
        scanfile.write(point, out, engine=scanfile.POINT_ENGINE)


def train_point(
    *,
    data,
    temperature: float,
    seed: int,
    out,
    weights=None,
    log=None,
    **options,
):
    """Train and measure one scan point, write its files; return the training result.

    ``options``: those of :func:`train_points`.
    """
    point = PointFiles.of(temperature, seed, out, weights, log)
    return train_points([point], data=data, **options)[0]


def train_points(
    points: Sequence[PointFiles],
    *,
    data,
    latents: int,
    sigma2: float,
    training: dict | None = None,
    eval_split: str,
    threads: int = 1,
    arch: Architecture | None = None,
    report: Callable | None = None,
    chain: bool = False,
    start_from=None,
) -> list:
    """Train, measure and write each of ``points`` in turn, loading the data once; return
    one training result per point (``None`` for a point an earlier run of the same job
    finished, which is kept as it is: :mod:`.chunks`).

    ``arch``: the model (``model.*``, :class:`.families.Architecture`; default the linear
    VAE), handed the dataset's ``sample_shape`` if it records one. ``report(point,
    result)`` is called as each point is done (``result`` None for a kept one).

    ``chain`` (``scan.start: continuation`` or ``sweep``; :mod:`.training.start`): the
    points, in the order given, form a chain: each starts from the weights the previous
    one saved (its ``.pt``), the first from ``start_from`` (the ``.pt`` of its predecessor
    in another job) or, without it, from its seed's random initialization.
    """
    set_threads(threads)
    arch = arch or Architecture()
    arch.check()
    points = list(points)
    check_outputs(points)
    config = train_config(training)
    check_start(config, chain, start_from)
    options = chunk_options(config, latents, sigma2, eval_split, arch)
    if chain:  # what the chain's points start from (a kept point is kept under it)
        first = read_weights(start_from)["state_dict"] if start_from else None
        options["start"] = {"chain": True, "from": first and state_digest(first)}
    job = JobOptions(data, config, latents, sigma2, eval_split, arch)
    chunk = len(points) > 1  # a job of one point is done when its files are written
    digest = data_identity(data) if chunk else None  # once: hashing reads the whole file
    identities = [chunks.identity(p, digest, options) if chunk else None for p in points]
    results: list = [None] * len(points)
    todo = points_to_train(points, identities, report) if chunk else list(range(len(points)))

    def done(i: int, result) -> None:
        results[i] = result
        if chunk:
            chunks.keep(points[i], identities[i])
        points[i].checkpoint.unlink(missing_ok=True)  # done: nothing left to resume
        if report:
            report(points[i], result)

    if todo:
        with SignalFlag() as flag:  # a signal outside the training: stop after this point
            ds = load_prepared(data)
            job = replace(job, arch=arch.with_sample_shape(ds.metadata))
            refs = DataReferences.of(ds, eval_split)
            if chunk and config.engine == BATCHED:  # the points left, as one batch
                stop_if_signalled(flag, 0, len(todo))
                train_together(todo, points, ds, refs, job, done)
            else:
                for n_done, i in enumerate(todo):
                    stop_if_signalled(flag, n_done, len(todo))
                    start = start_weights(points, i, start_from) if chain else None
                    done(i, train_one(points[i], ds, refs, job, start))
    for point in points:
        chunks.discard(point)  # every point is written: the job is done
    if chunk:  # (one of an earlier run with engine batched, if this one trained alone)
        batch_checkpoint(points).unlink(missing_ok=True)
    return results


def check_outputs(points: Sequence[PointFiles]) -> None:
    """InputError for no points or two writing the same file; every output's folder
    checked for writing and cleared of stale temporaries."""
    if not points:
        raise InputError("no scan points to train")
    outputs = [p for point in points for p in (point.out, point.weights, point.log)]
    if len(set(map(os.path.abspath, outputs))) < len(outputs):
        raise InputError("two scan points of the job write the same file: expected distinct --out")
    for point in points:
        for path in (point.out, point.weights, point.log, point.checkpoint):
            check_writable(path)  # before hours of training, not after
            remove_stale_temporaries(path)
    if len(points) > 1:
        remove_stale_temporaries(batch_checkpoint(points))


def train_config(training: dict | None) -> TrainConfig:
    """The job's training options; InputError for one that does not exist."""
    try:
        return TrainConfig(**(training or {}))
    except TypeError as exc:
        raise InputError(f"unknown training option: {exc}") from exc


def chunk_options(config: TrainConfig, latents, sigma2, eval_split, arch: Architecture):
    """The options a chunk's finished point is kept under (:func:`.chunks.identity`): the
    model, the evaluation split and every training option but ``progress``."""
    model = {"latents": latents, "sigma2": sigma2, "kind": arch.kind, **arch.spec()}
    return {
        "model": model,
        "eval_split": eval_split,
        "training": {k: v for k, v in vars(config).items() if k != "progress"},
    }


def points_to_train(points: Sequence[PointFiles], identities, report) -> list[int]:
    """The indices of the chunk's points left to train: a point an earlier run of the job
    finished is restored (:func:`.chunks.restore`), its checkpoint deleted and reported."""
    todo = []
    for i, point in enumerate(points):
        if chunks.restore(point, identities[i]):
            point.checkpoint.unlink(missing_ok=True)
            if report:
                report(point, None)
        else:
            todo.append(i)
    return todo


def stop_if_signalled(flag: SignalFlag, done: int, total: int) -> None:
    """Interrupted (exit 4) if SIGTERM/SIGUSR1 came while no training was running."""
    if flag.raised:
        raise Interrupted(
            f"{flag.raised} after {done} of the {total} scan points this job had to train: "
            "their files are written; rerun the job to resume"
        )


def check_start(config: TrainConfig, chain: bool, start_from) -> None:
    """InputError for a start a job cannot make: start weights without a chain, or a chain
    trained as one batch (a chain's points train one after another)."""
    if start_from is not None and not chain:
        raise InputError("--start-from starts a chain: give it with --chain")
    if chain and config.engine == BATCHED:
        raise InputError(
            "training.engine = 'batched' trains a job's points together, but with "
            "scan.start continuation or sweep each starts from the previous one's weights: "
            "use another engine (or 'auto')"
        )


def start_weights(points: Sequence[PointFiles], i: int, start_from) -> dict | None:
    """What chained point ``points[i]`` starts from: the ``state_dict`` its predecessor
    saved (the previous point of the job, else ``start_from``), or None (a random start)."""
    source = points[i - 1].weights if i > 0 else start_from
    return None if source is None else read_weights(source)["state_dict"]


def train_one(point: PointFiles, ds, refs: DataReferences, job: JobOptions, start=None):
    """Train one scan point (from its checkpoint, if there is one; else from ``start``, a
    ``state_dict``, if given), measure it, write its files; return the training result."""
    result = train_scan_point(
        ds.x_train,
        ds.x_val,
        point.temperature,
        point.seed,
        latents=job.latents,
        sigma2=job.sigma2,
        config=job.config,
        checkpoint=point.checkpoint,
        arch=job.arch,
        start=start,
    )
    measure_and_write(point, ds, refs, job, result)
    return result


def train_together(
    todo: Sequence[int], points: Sequence[PointFiles], ds, refs: DataReferences, job, done
) -> None:
    """Train ``points[i]`` for every ``i`` in ``todo`` as one batched model (``batched``
    engine; from the batch checkpoint, if it is theirs), then measure and write each and
    call ``done(i, result)``; delete the batch checkpoint; raise the first point's
    :class:`.errors.TrainingError` if any failed (the others are written)."""

    resolve_engine(BATCHED, resolve_device(job.config.device), job.arch.kind)  # one it trains
    checkpoint = batch_checkpoint(points)

    def foreign(message: str) -> None:  # a job killed while writing: its points differ
        print(f"{message}: deleted; training the {len(todo)} points left afresh", flush=True)

    results = train_scan_points_batched(
        ds.x_train,
        ds.x_val,
        [(points[i].temperature, points[i].seed) for i in todo],
        latents=job.latents,
        sigma2=job.sigma2,
        config=job.config,
        checkpoint=checkpoint,
        arch=job.arch,
        keep_going=True,
        on_foreign_checkpoint=foreign,
    )
    failed = None
    for i, result in zip(todo, results, strict=True):
        if isinstance(result, TrainingError):
            failed = failed or result
            continue
        measure_and_write(points[i], ds, refs, job, result)
        done(i, result)
    checkpoint.unlink(missing_ok=True)  # every point trained is written
    if failed is not None:
        raise failed


def measure_and_write(point: PointFiles, ds, refs: DataReferences, job: JobOptions, result):
    """Measure a trained scan point on the evaluation split (docs/science.md §3-4, §10.1)
    and write its weights, training log and scan-point file (all or none)."""
    temperature, seed = point.temperature, point.seed
    attrs = job_attrs(
        sigma2=job.sigma2,
        eval_split=job.eval_split,
        data=job.data,
        ds=ds,
        training=vars(job.config),
    )
    scan_point = point_dataset(
        result.model, ds, refs, result, temperature=temperature, seed=seed, attrs=attrs
    )
    spec = model_spec(result.model)
    write_outputs(
        point.weights,
        {
            "state_dict": result.model.state_dict(),
            "d": result.model.d,
            "latents": result.model.latents,
            "temperature": temperature,
            "seed": seed,
            "beta": result.beta,
            **spec,
        },
        point.log,
        result.log,
        point.out,
        scan_point,
    )
