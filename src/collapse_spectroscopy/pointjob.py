"""One scan-point job: load the prepared dataset, train at (T, seed), measure, write.

This is what ``collapse-spectroscopy train`` (and so each Snakemake scan job) runs. The
output folders are checked for writing before the data is loaded, so a read-only or
misspelt destination fails at once, not after the training. The weights and the training
log are written first and the scan-point NetCDF file last, each atomically, and a failed
write removes what this job wrote before it: the outputs exist together or not at all.
"""

from __future__ import annotations

import os
from pathlib import Path

from . import observables, scanfile, settings, spectra
from .errors import InputError
from .families import check_model, model_spec, numpy_codec
from .io import all_or_none, atomic_path, check_writable, remove_stale_temporaries, save_torch
from .prepared import load_prepared
from .training import TrainConfig, train_scan_point

_MODEL = settings.section_defaults("model")  # the one home of these defaults


def set_threads(threads: int) -> None:
    """Pin torch and the BLAS pools to ``threads`` so parallel jobs do not oversubscribe."""
    if int(threads) != threads or threads < 1:
        raise InputError(f"threads = {threads!r}: expected an integer >= 1")
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(int(threads))
    threadpool_limits(int(threads))


def default_paths(out: Path, weights: Path | None, log: Path | None) -> tuple[Path, Path]:
    out = Path(out)
    return (
        Path(weights) if weights else out.with_suffix(".pt"),
        Path(log) if log else out.with_suffix(".log.csv"),
    )


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
    latents: int,
    sigma2: float,
    training: dict | None = None,
    eval_split: str,
    threads: int = 1,
    kind: str = _MODEL["kind"],
    hidden=tuple(_MODEL["hidden"]),
    activation: str = _MODEL["activation"],
):
    """Train and measure one scan point, write its files; return the training result.

    ``kind``, ``hidden``, ``activation``: the model family (``model.kind`` and, for
    ``mlp``, its architecture; :mod:`.families`).
    """
    set_threads(threads)
    check_model(kind, hidden, activation)
    out = Path(out)
    if out.suffix != ".nc":
        raise InputError(f"--out {str(out)!r}: expected a .nc file name")
    weights, log = default_paths(out, weights, log)
    checkpoint = out.with_suffix(".ckpt")  # not a workflow output: it survives a failed job
    for path in (out, weights, log, checkpoint):
        check_writable(path)  # before hours of training, not after
        remove_stale_temporaries(path)
    try:
        config = TrainConfig(**(training or {}))
    except TypeError as exc:
        raise InputError(f"unknown training option: {exc}") from exc
    ds = load_prepared(data)
    result = train_scan_point(
        ds.x_train,
        ds.x_val,
        temperature,
        seed,
        latents=latents,
        sigma2=sigma2,
        config=config,
        checkpoint=checkpoint,
        kind=kind,
        hidden=hidden,
        activation=activation,
    )
    x_eval = ds.split(eval_split)
    spec = model_spec(result.model)  # {} for the linear model: its files stay as they were
    if spec:  # no closed form: measure through the networks (docs/science.md §9)
        encode, decode = numpy_codec(result.model)
        obs = observables.measure_decoded(encode, decode, x_eval, ds.x_train, seed=seed)
    else:
        params = result.model.numpy_params()
        obs = observables.measure(params, x_eval, ds.x_train, seed=seed)
    point = scanfile.scan_point_dataset(
        temperature=temperature,
        seed=seed,
        obs=obs,
        train=result,
        pca_ratio=spectra.pca_spectrum(ds.x_train),
        pca_eval_distortion=spectra.pca_eval_distortion(ds.x_train, x_eval),
        true_spectrum=ds.true_spectrum,
        attrs={
            "sigma2": sigma2,
            "eval_split": eval_split,
            "dataset": os.fspath(data),
            "features": ",".join(ds.feature_names),
            "training": vars(config),
            **({"model": spec} if spec else {}),
        },
    )
    write_outputs(
        weights,
        {
            "state_dict": result.model.state_dict(),
            "d": result.model.d,
            "latents": result.model.latents,
            "temperature": temperature,
            "seed": seed,
            "beta": result.beta,
            **spec,
        },
        log,
        result.log,
        out,
        point,
    )
    checkpoint.unlink(missing_ok=True)  # the scan point is done: nothing left to resume
    return result
