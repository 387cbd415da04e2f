"""One autoencoder-baseline job: the autoencoders of ``k = 1 .. max_latents`` latents
trained in turn, each measured on the evaluation split, and their table (docs/science.md
§9, "Autoencoder baseline"; the training is :mod:`collapse_spectroscopy.training.autoencoder`).

This is what ``collapse-spectroscopy autoencoder`` (the workflow's rule
``autoencoder_baseline``) runs. The table, ``results/RUN/baselines/autoencoder.csv``, has
one row per ``k`` (:data:`COLUMNS`): ``distortion``, the evaluation split's
``E ||x - xhat(mu(x))||^2 / E ||x - xbar_train||^2``, normalized exactly as the VAE's
``Dn*_k``, and ``train_distortion`` the same on the training split; the training outcome
(``updates_run``, ``best_update``, ``stop_reason``, ``best_val_loss``) and
``under_equilibrated``, the scan's rule (:func:`.equilibration.under_equilibrated`: stopped
at the budget before the patience passed), so that Fig 5 draws such a ``k`` hollow as it
draws such a scan point. Elapsed times go to the log, not the table: the same seed and
inputs give the same file.

**Resume.** Each ``k`` trains with its own checkpoint ``<out>.k=<k>.ckpt`` (the
trainer's: written every ``checkpoint_every`` updates and on SIGTERM/SIGUSR1/SIGINT, which
stop the job with exit 4), and a finished ``k`` leaves a record ``<out>.k=<k>.json``: its
row and the identity it was trained under (the dataset file's content digest and every
option). A rerun keeps the finished ``k`` whose record has the same
identity and resumes the interrupted one; Snakemake deletes a failed job's outputs (the
table) but not these files, which the job deletes once the table is written.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from collapse_spectroscopy.analysis.equilibration import under_equilibrated
from collapse_spectroscopy.analysis.observables import reconstruction_distortion
from collapse_spectroscopy.config import settings
from collapse_spectroscopy.errors import InputError
from collapse_spectroscopy.jobs.train_job import set_threads, train_config
from collapse_spectroscopy.models.families import check_model, numpy_codec
from collapse_spectroscopy.store.atomic import (
    atomic_path,
    check_writable,
    remove_stale_temporaries,
    write_json,
)
from collapse_spectroscopy.store.digest import data_identity
from collapse_spectroscopy.store.prepared import load_prepared
from collapse_spectroscopy.training.autoencoder import (
    KIND,
    autoencoder_engine,
    train_autoencoder,
)
from collapse_spectroscopy.training.checkpoint import Interrupted, SignalFlag
from collapse_spectroscopy.training.scan_point import resolve_device

_MODEL = settings.section_defaults("model")  # the one home of these defaults
COLUMNS = (
    "k",
    "distortion",
    "train_distortion",
    "updates_run",
    "best_update",
    "stop_reason",
    "under_equilibrated",
    "best_val_loss",
    "seed",
    "eval_split",
    "engine",
)


def record_path(out, k: int) -> Path:
    """The record of a finished ``k``: ``<out without .csv>.k=<k>.json``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.k={k}.json")


def checkpoint_path(out, k: int) -> Path:
    """The checkpoint of ``k``'s training: ``<out without .csv>.k=<k>.ckpt``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.k={k}.ckpt")


def job_identity(data, options: dict) -> dict:
    """What a finished ``k``'s row depends on besides ``k``: the dataset file's content
    (:func:`.store.digest.data_identity`) and every option (as :func:`.chunks.identity`
    keeps a scan point)."""
    data = data_identity(data)
    return json.loads(json.dumps({"data": data, "options": options}, sort_keys=True))


def restore(out, k: int, identity: dict) -> dict | None:
    """The row of ``k`` an earlier run of the job finished under ``identity``, or None (a
    record of another identity, or an unreadable one, is deleted)."""
    path = record_path(out, k)
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        record = None
    if not isinstance(record, dict) or record.get("identity") != {**identity, "k": k}:
        path.unlink(missing_ok=True)
        return None
    return record["row"]


def autoencoder_baseline(
    *,
    data,
    out,
    max_latents: int,
    seed: int = 0,
    hidden=tuple(_MODEL["hidden"]),
    activation: str = _MODEL["activation"],
    sigma2: float = _MODEL["sigma2"],
    training: dict | None = None,
    eval_split: str,
    threads: int = 1,
    report: Callable | None = None,
) -> pd.DataFrame:
    """Train and measure the autoencoder of every ``k = 1 .. max_latents`` (each kept from
    an earlier run of the job if it finished there), write the table ``out`` atomically
    and return it. ``training``: the options of :class:`.scan_point.TrainConfig`;
    ``report(k, row, result)`` is called as each ``k`` is done (``result`` None for a kept
    one)."""
    set_threads(threads)
    check_model(KIND, hidden, activation)
    if isinstance(max_latents, bool) or int(max_latents) != max_latents or max_latents < 1:
        raise InputError(
            f"baselines.autoencoder.max_latents = {max_latents!r}: expected an integer >= 1"
        )
    config = train_config(training)
    config.validate()
    autoencoder_engine(config.engine, resolve_device(config.device))  # fails before any work
    out, ks = Path(out), range(1, int(max_latents) + 1)
    for path in (out, *(f(out, k) for k in ks for f in (record_path, checkpoint_path))):
        check_writable(path)  # before minutes of training, not after
        remove_stale_temporaries(path)
    options = {
        "seed": int(seed),
        "model": {"hidden": [int(h) for h in hidden], "activation": activation, "sigma2": sigma2},
        "eval_split": eval_split,
        "training": {k: v for k, v in vars(config).items() if k != "progress"},
    }
    identity = job_identity(data, options)
    rows, ds = [], None
    with SignalFlag() as flag:  # a signal between two trainings: stop before the next one
        for k in ks:
            row = restore(out, k, identity)
            result = None
            if row is None:
                if flag.raised:
                    raise Interrupted(
                        f"{flag.raised} after the autoencoders of k < {k}, which are kept: "
                        "rerun the job to resume"
                    )
                ds = ds or load_prepared(data)
                row, result = train_row(ds, k, seed, config, out, options)
                write_json(record_path(out, k), {"identity": {**identity, "k": k}, "row": row})
            checkpoint_path(out, k).unlink(missing_ok=True)  # done: nothing left to resume
            rows.append(row)
            if report:
                report(k, row, result)
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False)
    for k in ks:
        record_path(out, k).unlink(missing_ok=True)
    return table


def train_row(ds, k: int, seed: int, config, out, options: dict) -> tuple[dict, object]:
    """Train the autoencoder of ``k`` latents on the prepared dataset ``ds`` (resuming its
    checkpoint, if any) and measure it: its row of the table, and the training result."""
    model = options["model"]
    result = train_autoencoder(
        ds.x_train,
        ds.x_val,
        k,
        seed,
        config,
        checkpoint_path(out, k),
        hidden=model["hidden"],
        activation=model["activation"],
        sigma2=model["sigma2"],
    )
    encode, decode = numpy_codec(result.model)  # float64, as every measurement
    eval_split = options["eval_split"]
    flag = under_equilibrated(
        result.stop_reason, result.updates_run, result.best_update, config.patience_updates
    )
    row = {
        "k": k,
        "distortion": reconstruction_distortion(encode, decode, ds.split(eval_split), ds.x_train),
        "train_distortion": reconstruction_distortion(encode, decode, ds.x_train, ds.x_train),
        "updates_run": int(result.updates_run),
        "best_update": int(result.best_update),
        "stop_reason": result.stop_reason,
        "under_equilibrated": bool(flag),
        "best_val_loss": float(result.best_val_loss),
        "seed": int(seed),
        "eval_split": eval_split,
        "engine": result.engine,
    }
    return row, result
