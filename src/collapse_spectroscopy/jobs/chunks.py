"""Several scan points in one job (``scan.points_per_job``; docs/science.md §5).

A job that trains a *chunk* of scan points pays the start-up once (imports, loading the
prepared dataset, the PCA references) instead of once per point. Each point keeps its own
files (``.nc``, ``.pt``, ``.log.csv``), its own checkpoint and its bit-identical resume,
exactly as a job of one point.

Which points share a job, with independent starts and ``points_per_job: auto``
(:func:`auto_points_per_job`, :func:`scan_blocks`): consecutive blocks of points cold to
warm, about four jobs per core, the coldest first. With a given number
(:func:`scan_chunks`): the scan points
in the workflow's order (temperature-major, seeds inside), dealt out round-robin over
``ceil(N / points_per_job)`` jobs, so that each job spans the whole temperature range.
Training time depends on T (early stopping), so consecutive points would make some jobs
much longer than others.
With continuation starts (:func:`scan_chains`) a job is a consecutive piece of one seed's
chain over T: its points must train one after another.

**A rerun skips the finished points.** A chunk job killed (SIGKILL, a node failure) or
interrupted (SIGTERM/SIGUSR1, exit 4) after some of its points were written is rerun as a
whole: Snakemake first deletes every output of a job it (re)runs, and also those of a
failed job. So the finished points are kept aside: once a point's files are written, the
job links them (hard links: no copy, no extra space; a copy where the file system has no
hard links) into ``<point>.finished/`` beside them, with the point's :func:`identity`.
The rerun restores a point whose record has the same identity (the same T, seed, dataset
content and options) by linking the files back (the same bytes, not retrained) and trains
the others, the interrupted one from its checkpoint. The dataset is identified by its
content digest (:mod:`.store.digest`), so a ``prepared.npz`` rewritten with the same bytes
(Snakemake reruns ``prepare`` after an input's modification time changes) keeps them. A
record of another identity (the configuration or the dataset changed meanwhile) is
deleted and the point retrained. When every point of the chunk is written, the job
deletes the records. A job of one point
keeps no record: it is done when its files are written.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from collapse_spectroscopy.store.digest import data_identity

FINISHED_SUFFIX = ".finished"
IDENTITY_FILE = "identity.json"
# the point's outputs inside its record: (attribute of the point, file name)
KEPT = (("out", "point.nc"), ("weights", "weights.pt"), ("log", "log.csv"))


def check_per_job(per_job) -> None:
    """ValueError unless ``per_job`` is an integer >= 1."""
    if int(per_job) != per_job or per_job < 1:
        raise ValueError(f"points_per_job = {per_job!r}: expected an integer >= 1")


# ``points_per_job: auto``: this many jobs per core. Simulated on the measured training
# times of the paper scan's 37 points (a ~10x spread, the coldest longest) with ~4 s of
# start-up per job, in coldest-first order: 1 point per job finishes the scan in 359 s
# of wall on 2 cores (start-ups), 2 jobs of 19 in 423 s (imbalance), 4 jobs per core
# (blocks of 5) in 296 s, 2 and 8 per core in 320 and 298 s.
JOBS_PER_CORE = 4


def auto_points_per_job(n_points: int, cores: int | None) -> int:
    """The points per job ``scan.points_per_job: auto`` means for ``n_points`` points on
    ``cores`` cores: :data:`JOBS_PER_CORE` jobs per core; 1 (a job per point) when the
    cores are not known (a cluster executor, where jobs run side by side as the queue
    allows)."""
    if not cores or cores < 1:
        return 1
    return max(1, math.ceil(n_points / (JOBS_PER_CORE * cores)))


def scan_blocks(points: Sequence, per_job: int) -> list[list]:
    """``points``, ``(T, seed)`` pairs (``T`` a number or its label), sorted cold to warm
    (seeds in their order within a temperature) and cut into consecutive jobs of at most
    ``per_job``: the first jobs hold the coldest points, which train longest, so that a
    scheduler that starts them first (their priority) balances the cores with the short
    warm jobs at the end."""
    check_per_job(per_job)
    order = sorted(points, key=lambda p: float(p[0]))
    return [order[i : i + per_job] for i in range(0, len(order), per_job)]


def scan_chunks(points: Sequence, per_job: int) -> list[list]:
    """``points`` dealt round-robin into ``ceil(len(points) / per_job)`` chunks (each of at
    most ``per_job`` points, in their original order inside a chunk)."""
    check_per_job(per_job)
    n = math.ceil(len(points) / per_job)
    return [list(points[i::n]) for i in range(n)]


@dataclass(frozen=True)
class ChainJob:
    """A training job of a continuation chain (``scan.start``; docs/science.md §5.8):
    ``points`` in training order, each starting from the one before it, the first from
    ``start``, the chain's point before it (trained by another job), or, if None, from
    its seed's random initialization."""

    points: list
    start: object | None


def scan_chains(points: Sequence, per_job: int, *, cooling: bool = False) -> list[ChainJob]:
    """The jobs of the continuation chains through ``points``, ``(T, seed)`` pairs (``T``
    a number or its label): one chain per seed, ordered cold to warm (``cooling``: warm
    to cold), cut into consecutive jobs of at most ``per_job`` points. Chains in the
    order of their seeds' first appearance."""
    check_per_job(per_job)
    seeds = list(dict.fromkeys(seed for _, seed in points))
    jobs = []
    for seed in seeds:
        chain = sorted((p for p in points if p[1] == seed), key=lambda p: float(p[0]))
        chain = chain[::-1] if cooling else chain
        for i in range(0, len(chain), per_job):
            jobs.append(ChainJob(chain[i : i + per_job], chain[i - 1] if i else None))
    return jobs


def identity(point, data, options: dict) -> dict:
    """What a finished point's files depend on: T, seed, the dataset file's content (its
    digest, :func:`.store.digest.data_identity`; ``data`` may be the path or its identity,
    computed once per job) and every option of the job (model, training, evaluation
    split)."""
    if not isinstance(data, dict):
        data = data_identity(data)
    return {
        "T": float(point.temperature),
        "seed": int(point.seed),
        "data": data,
        "options": options,
    }


def record_path(point) -> Path:
    """The record of a finished point: ``<out without .nc>.finished/``."""
    return Path(point.out).with_suffix(FINISHED_SUFFIX)


def _link(src: Path, dst: Path) -> None:
    """``dst`` becomes ``src``'s content, atomically: a hard link (a copy where links are
    not possible) under a temporary name, renamed into place."""
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{dst.name}-", dir=dst.parent)
    os.close(fd)
    os.unlink(tmp)
    try:
        try:
            os.link(src, tmp)
        except OSError:  # no hard links here (EPERM, EXDEV, ...): copy
            shutil.copy2(src, tmp)
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def keep(point, ident: dict) -> None:
    """Record ``point`` (its files just written) as finished, with its identity."""
    final = record_path(point)
    discard(point)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    try:
        for attr, name in KEPT:
            _link(Path(getattr(point, attr)), tmp / name)
        (tmp / IDENTITY_FILE).write_text(json.dumps(ident, sort_keys=True))
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def restore(point, ident: dict) -> bool:
    """True if ``point`` was finished by an earlier run of this job with the same identity:
    its files are then in place (linked back from its record where they are missing or
    differ). A record of another identity, or an incomplete one, is deleted (False)."""
    record = record_path(point)
    if not record.is_dir():
        return False
    try:
        same = json.loads((record / IDENTITY_FILE).read_text()) == json.loads(
            json.dumps(ident, sort_keys=True)
        )
    except (OSError, ValueError):
        same = False
    if not same or not all((record / name).is_file() for _, name in KEPT):
        discard(point)
        return False
    for attr, name in KEPT:
        dst = Path(getattr(point, attr))
        with contextlib.suppress(OSError):
            if os.path.samefile(record / name, dst):
                continue  # still there, untouched
        _link(record / name, dst)
    return True


def refresh(out) -> bool:
    """A finished point's file ``out`` rewritten in place (``collapse-spectroscopy measure``):
    its record, if it has one, takes the new file, so that a rerun of the chunk job (which
    Snakemake starts by deleting the job's outputs) restores what was measured last, not
    the file the record linked before. True if there was a record."""
    kept = Path(out).with_suffix(FINISHED_SUFFIX) / dict(KEPT)["out"]
    if not kept.is_file():
        return False
    _link(Path(out), kept)
    return True


def discard(point) -> None:
    """Delete ``point``'s record (and any half-made one of a killed job)."""
    final = record_path(point)
    shutil.rmtree(final, ignore_errors=True)
    for stale in final.parent.glob(f".tmp-{final.name}-*"):
        shutil.rmtree(stale, ignore_errors=True)
