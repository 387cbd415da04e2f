"""One scan point as a NetCDF file, and the gathered ``scan.nc`` (docs/science.md §3, §4).

A scan-point file holds, for one (T, seed):

- per-latent observables on dim ``latent`` — the **rank** by signal fraction (1 = most
  active), with ``latent_index`` giving the raw unit behind each rank;
- truncated distortions on dim ``k = 0..K``;
- the training PCA spectrum on dim ``mode = 1..d`` (the same in every file of a run), and
  the per-mode totals of this point on the same dim (``PER_MODE``, docs/science.md §10.1);
- scalars: ``T``, ``beta``, ``seed``, training outcome, global distortions and rate.

:func:`gather` stacks many into one dataset with dims ``T``, ``seed``, ``latent``, ``k``
(and ``mode``); combinations that were not run are NaN; :func:`point_grid` reads one
variable of it on the ``(T, seed)`` grid. Both kinds of file are written atomically:
a scan point as NetCDF3 through scipy (fast to open by the dozen), ``scan.nc`` as
NetCDF4 through h5netcdf.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import xarray as xr

from collapse_spectroscopy.errors import InputError
from collapse_spectroscopy.store.atomic import write_bytes

ENGINE = "h5netcdf"  # the gathered scan.nc: NetCDF4
# A scan-point file is small and a scan gathers dozens of them: NetCDF3 through scipy
# opens in ~10 ms against ~200 ms for NetCDF4 through h5netcdf (measured on a 37-variable
# point), which decides how long `gather` takes on a paper-sized scan.
POINT_ENGINE = "scipy"

PER_LATENT = {
    "posterior_mean_square": ("m", "1", "mean over x of mu_j(x)^2 (raw, not centred)"),
    "posterior_variance": ("v", "1", "mean over x of the posterior variance s_j^2(x)"),
    "posterior_log_variance": ("l", "1", "mean over x of log s_j^2(x)"),
    "kl_rate": ("R", "nat", "mean KL of latent j to the prior, 1/2 (m + v - 1 - l)"),
    "signal_fraction": ("rho", "1", "order parameter m / (m + v) = SNR / (1 + SNR)"),
    "latent_scale": ("q", "1", "m + v; 1 at equilibrium"),
    "jensen_gap": ("J", "1", "log v - l >= 0: posterior-variance heterogeneity"),
}

# Per-mode totals of one scan point on dim ``mode`` (docs/science.md §10.1): unlike the
# run-level variables on that dim (``pca_ratio`` and the like) they differ between points.
PER_MODE = {
    "mode_posterior_mean_square": ("m", "1", "per-mode total: E (sum_j g_j mu_j)^2 / sum g_j^2"),
    "mode_posterior_variance": ("v", "1", "per-mode total: sum_j g_j^2 v_j / sum g_j^2"),
    "mode_signal_fraction": ("rho", "1", "per-mode total m / (m + v) of the latents on this PC"),
    "mode_latents": ("", "1", "latents the mode spans: participation ratio of their signal"),
}

# The other pruning rule and the validation split (observables.EXTRA_TRUNCATIONS; docs/
# science.md §9): what a point measured by this version holds besides truncated_distortion.
EXTRA_TRUNCATION_MEANINGS = {
    "truncated_distortion_prior": (
        "pruned latents averaged over their prior (fixed draws)",
        "evaluation split",
    ),
    "truncated_distortion_val": ("pruned latents at 0", "validation split"),
    "truncated_distortion_prior_val": (
        "pruned latents averaged over their prior (fixed draws)",
        "validation split",
    ),
}

SCALARS = {
    "beta": ("1", "beta-VAE weight, beta = T V / sigma2"),
    "sigma2": ("1", "decoder variance of the Gaussian likelihood"),
    "total_variance": ("1", "V = trace of the training covariance (standardized units)"),
    "updates_run": ("1", "Adam updates run"),
    "best_update": ("1", "update of the best validation loss (weights kept)"),
    "best_validation_loss": ("nat", "best validation loss D + beta R (exact noise average)"),
    "distortion_sampled": ("1", "normalized distortion of a sampled reconstruction"),
    "distortion_posterior_mean": ("1", "normalized distortion at the posterior means"),
    "rate": ("nat", "total rate, sum of kl_rate over latents"),
    "n_eval": ("1", "samples in the evaluation split"),
    "elapsed_s": ("s", "training wall time"),
}


def scan_point_dataset(
    *,
    temperature: float,
    seed: int,
    obs,
    train,
    pca_ratio,
    pca_eval_distortion=None,
    true_spectrum=None,
    attrs: dict | None = None,
    pca_eval_ratio=None,
    modes=None,
) -> xr.Dataset:
    """Build the dataset of one scan point.

    ``obs`` is an :class:`~collapse_spectroscopy.analysis.observables.Observables`, ``train`` a
    :class:`~collapse_spectroscopy.training.scan_point.TrainResult`; ``pca_eval_ratio`` the
    evaluation split along the training PCs (``pca.pca_eval_ratio``), ``modes`` the per-mode
    totals (:class:`~collapse_spectroscopy.analysis.modes.ModeTotals`; ``None`` for a nonlinear
    model).
    """
    K = obs.latent_index.size
    data = latent_variables(obs)
    data.update(pca_variables(pca_ratio, pca_eval_distortion, pca_eval_ratio))
    if modes is not None:
        data.update(mode_variables(modes, obs))
    if true_spectrum is not None:
        data["true_spectrum"] = xr.Variable(
            "mode",
            np.asarray(true_spectrum, np.float64),
            {"units": "1", "long_name": "declared spectrum lambda_k/V of a synthetic source"},
        )
    data.update(scalar_variables(obs, train, attrs))
    ds = xr.Dataset(data, coords=point_coords(temperature, seed, K, len(pca_ratio)))
    ds.attrs.update(
        {
            "title": "collapse-spectroscopy scan point",
            "engine": train.engine,
            "device": train.device,
        }
    )
    ds.attrs.update(
        {k: (json.dumps(v) if isinstance(v, dict | list) else v) for k, v in (attrs or {}).items()}
    )
    return ds


def latent_variables(obs) -> dict[str, xr.Variable]:
    """A scan point's variables on dim ``latent`` (by rank) and ``k`` (latents kept)."""
    data = {}
    for name, (symbol, units, meaning) in PER_LATENT.items():
        data[name] = xr.Variable(
            "latent", obs.per_latent[name], {"symbol": symbol, "units": units, "long_name": meaning}
        )
    data["latent_index"] = xr.Variable(
        "latent", obs.latent_index.astype(np.int32), {"long_name": "raw latent unit at this rank"}
    )
    data["train_mean_posterior_mean"] = xr.Variable(
        "latent", obs.train_mean_mu, {"long_name": "training-split mean of mu_j"}
    )
    data["truncated_distortion"] = xr.Variable(
        "k",
        obs.truncated_distortion,
        {
            "symbol": "Dn_k",
            "units": "1",
            "long_name": "normalized distortion keeping the k "
            "highest-rho latents at their posterior means, the others at 0",
        },
    )
    for name, (rule, split) in EXTRA_TRUNCATION_MEANINGS.items():
        if name in obs.extra:
            meaning = f"as truncated_distortion, {rule}, on the {split}"
            data[name] = xr.Variable("k", obs.extra[name], {"units": "1", "long_name": meaning})
    data["truncated_distortion_train_mean"] = xr.Variable(
        "k",
        obs.truncated_distortion_train_mean,
        {
            "units": "1",
            "long_name": "as truncated_distortion, pruned latents at their "
            "training-split mean of mu",
        },
    )
    return data


def pca_variables(pca_ratio, pca_eval_distortion=None, pca_eval_ratio=None) -> dict:
    """The PCA references of the run (the same in every scan point of it), on dims
    ``mode`` and ``mode_k``; the optional ones when given."""
    data = {}
    data["pca_ratio"] = xr.Variable(
        "mode",
        np.asarray(pca_ratio, dtype=np.float64),
        {
            "symbol": "lambda_k/V",
            "units": "1",
            "long_name": "normalized eigenvalues of the training covariance, descending",
        },
    )
    if pca_eval_distortion is not None:
        data["pca_eval_distortion"] = xr.Variable(
            "mode_k",
            np.asarray(pca_eval_distortion, dtype=np.float64),
            {
                "units": "1",
                "long_name": "train-PCA truncation distortion on the evaluation split, k = 0..d",
            },
        )
    if pca_eval_ratio is not None:
        data["pca_eval_ratio"] = xr.Variable(
            "mode",
            np.asarray(pca_eval_ratio, dtype=np.float64),
            {
                "units": "1",
                "long_name": "evaluation split's mean square along training PC k about the "
                "training mean, over the training V (lambda_k/V on the evaluation split)",
            },
        )
    return data


def mode_variables(modes, obs) -> dict[str, xr.Variable]:
    """The point's per-mode totals (``PER_MODE``, dim ``mode``) and each ranked latent's
    mode (dim ``latent``)."""
    data = {}
    for name, (symbol, units, meaning) in PER_MODE.items():
        meta = {"units": units, "long_name": meaning} | ({"symbol": symbol} if symbol else {})
        value = getattr(modes, name.removeprefix("mode_"))
        data[name] = xr.Variable("mode", np.asarray(value, dtype=np.float64), meta)
    data["latent_mode"] = xr.Variable(
        "latent",
        (modes.mode_of_latent[obs.latent_index] + 1).astype(np.int32),
        {"long_name": "PCA mode whose per-mode total holds the latent at this rank"},
    )
    return data


def scalar_variables(obs, train, attrs: dict | None) -> dict[str, xr.Variable]:
    """The point's scalars (``SCALARS``) and why its training stopped."""
    values = {
        "beta": train.beta,
        "sigma2": attrs.get("sigma2", 1.0) if attrs else 1.0,
        "total_variance": train.total_variance,
        "updates_run": train.updates_run,
        "best_update": train.best_update,
        "best_validation_loss": train.best_val_loss,
        "distortion_sampled": obs.distortion_sampled,
        "distortion_posterior_mean": obs.distortion_posterior_mean,
        "rate": obs.rate,
        "n_eval": obs.n_eval,
        "elapsed_s": train.elapsed_s,
    }
    data = {}
    for name, (units, meaning) in SCALARS.items():
        data[name] = xr.Variable((), values[name], {"units": units, "long_name": meaning})
    data["stop_reason"] = xr.Variable((), train.stop_reason, {"long_name": "why training stopped"})
    return data


def point_coords(temperature: float, seed: int, K: int, n_modes: int) -> dict:
    """The coordinates of a scan point: ``latent`` (ranks 1..K), ``k`` (0..K), ``mode``
    (1..n_modes) and the scalars ``T`` and ``seed``."""
    return {
        "latent": (
            "latent",
            np.arange(1, K + 1),
            {"long_name": "rank by signal fraction (1 = most active)"},
        ),
        "k": ("k", np.arange(K + 1), {"long_name": "latents kept"}),
        "mode": ("mode", np.arange(1, n_modes + 1), {"long_name": "PCA mode"}),
        "T": (
            (),
            float(temperature),
            {"long_name": "normalized temperature beta sigma2 / V", "units": "1"},
        ),
        "seed": ((), int(seed), {"long_name": "training seed"}),
    }


def write(ds: xr.Dataset, path: str | os.PathLike, engine: str = ENGINE) -> None:
    """Write a dataset to NetCDF atomically (NetCDF4 by default; ``POINT_ENGINE`` for points).

    The file is built in memory and its bytes written with plain file I/O: HDF5 writing
    straight to a full disk crashes the process (a segfault after h5py's error), where
    plain I/O raises a :class:`~collapse_spectroscopy.errors.WriteError` naming ``path``.
    A scan file is a few MB, so holding it in memory costs nothing.
    """
    write_bytes(path, ds.to_netcdf(engine=engine))


def read(path: str | os.PathLike) -> xr.Dataset:
    """Open a scan-point or scan file fully into memory, with a clear error if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"scan file {str(path)!r} does not exist")
    try:
        with xr.open_dataset(path) as ds:  # NetCDF3 or NetCDF4: xarray tells them apart
            return ds.load()
    except Exception as exc:
        raise InputError(f"scan file {str(path)!r} cannot be read as NetCDF: {exc}") from exc


def scan_model_kind(scan: xr.Dataset) -> str:
    """The model family of the scan (``model.kind``): the ``kind`` of the ``model`` attribute
    the scan points of a nonlinear family carry (:func:`.models.families.model_spec`, kept by
    :func:`gather`); ``"linear"`` for a scan without one, as a linear run writes."""
    spec = scan.attrs.get("model")
    if spec is None:
        return "linear"
    try:
        spec = json.loads(spec) if isinstance(spec, str) else spec
    except ValueError:
        return "unknown"
    return str(spec.get("kind", "linear")) if isinstance(spec, dict) else "unknown"


def point_grid(scan: xr.Dataset, name: str, *trailing: str) -> np.ndarray:
    """``scan[name]`` as an array over ``(T, seed, *trailing)``; a ``T`` or ``seed`` dim the
    variable lacks (one scan point, a variable of the whole run) becomes of length 1."""
    da = scan[name]
    for dim in ("T", "seed"):
        if dim not in da.dims:
            da = da.expand_dims(dim)
    return da.transpose("T", "seed", *trailing).values


def gather(paths: Iterable[str | os.PathLike]) -> xr.Dataset:
    """Combine scan-point files into one dataset with dims ``T``, ``seed``, ``latent``, ``k``.

    Per-run variables (``pca_ratio`` and the like, dims without ``latent``/``k`` and no
    scalar, except the per-mode totals ``PER_MODE``) must agree across files; a scan point
    that was not run is NaN.
    """
    paths = sorted(map(str, paths))
    if not paths:
        raise InputError("gather: no scan-point files given")
    points, shared, first_k = [], None, None
    for p in paths:
        ds = read(p)
        for name in ("latent", "k", "mode", "T", "seed"):
            if name not in ds.coords:
                raise InputError(f"{p!r} is not a scan-point file: it lacks coordinate {name!r}")
        run_vars = [
            v
            for v in ds.data_vars
            if v not in PER_MODE and ("mode" in ds[v].dims or "mode_k" in ds[v].dims)
        ]
        if shared is None:
            shared, first_k = ds[run_vars], ds.sizes["latent"]
        else:
            if ds.sizes["latent"] != first_k:
                raise InputError(
                    f"{p!r} has {ds.sizes['latent']} latents, {paths[0]!r} has {first_k}"
                )
            for v in run_vars:
                if v not in shared or not np.array_equal(
                    ds[v].values, shared[v].values, equal_nan=True
                ):
                    raise InputError(
                        f"{p!r}: {v} differs from {paths[0]!r}: the files come "
                        "from different datasets"
                    )
        points.append(ds.drop_vars(run_vars).expand_dims(["T", "seed"]))
    keys = [(float(p["T"].values[0]), int(p["seed"].values[0])) for p in points]
    dupes = {k for k in keys if keys.count(k) > 1}
    if dupes:
        raise InputError(f"gather: duplicate scan points (T, seed) {sorted(dupes)}")
    for point in points:
        # forget the on-disk encoding of the first file (a fixed string length, say), which
        # would otherwise truncate longer values of other files on writing
        for var in point.variables.values():
            var.encoding = {}
    # compat given, not defaulted: points measured by different versions hold different
    # variables (a newer point's validation levels, say), and xarray warns, once per
    # variable, that its default for that case will change; a variable a point lacks is
    # NaN there, as spectra's selection expects (analysis/selection.py)
    scan = xr.combine_by_coords(
        points, combine_attrs="drop_conflicts", join="outer", compat="no_conflicts"
    )
    scan = scan.sortby("T").sortby("seed")
    scan = xr.merge([scan, shared], combine_attrs="drop_conflicts")
    scan.attrs["title"] = "collapse-spectroscopy temperature scan"
    scan.attrs["scan_points"] = len(points)
    return scan
