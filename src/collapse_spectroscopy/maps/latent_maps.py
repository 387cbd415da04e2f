"""The effective variables of one scan point in the data's own terms (docs/science.md §10).

For the active latents of a trained scan point (``rho_k > spectra.rho_min``, ranked by
signal fraction as the observables rank them, :meth:`.observables.Observables.ranked`):

- **latent means**: the posterior mean ``mu_k(x)`` of every sample of all three splits;
  for a raster dataset a map on the input grid (:func:`write_geotiff`), for a table one
  row per sample (:func:`write_means_table`);
- **loadings**: the decoder's response to each latent per input feature, in standardized
  units: the decoder column ``W_k`` for the linear model, the decoder Jacobian
  ``d xhat / d z_k`` at ``z = mu(x)`` averaged over every sample for a nonlinear one;
  beside it the Jacobian's RMS over the samples and the fraction of samples whose local
  Jacobian has the mean's sign, which say where the mean cancels (:mod:`.jacobian`).

Sign convention: a latent and its decoder column can flip sign together without changing
the model, so each latent is flipped so that its largest-``|.|`` loading is positive; its
map and its loadings carry the same sign (the RMS and the agreement do not change with it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd

from collapse_spectroscopy.errors import InputError
from collapse_spectroscopy.maps.jacobian import constant_jacobian_stats, decoder_jacobian_stats
from collapse_spectroscopy.models.families import Architecture, model_kind, numpy_codec
from collapse_spectroscopy.store.atomic import atomic_path
from collapse_spectroscopy.store.prepared import SPLITS, PreparedDataset
from collapse_spectroscopy.store.weights import read_weights

RHO_DECIMALS = 3  # a rank's rho in band descriptions, map titles and loadings rows


def rho_text(rho: float) -> str:
    """A rank's signal fraction as the GeoTIFF's band descriptions, the maps and the
    loadings write it (one format, so that they read the same number)."""
    return f"{rho:.{RHO_DECIMALS}f}"


CHUNK = 65536

#: the files of one map folder, results/RUN/maps/T=.../
FILES = {
    "geotiff": "latent_means.tif",
    "means_png": "latent_means.png",
    "means_csv": "latent_means.csv",
    "loadings_csv": "loadings.csv",
    "loadings_png": "loadings.png",
}


@dataclass
class LatentMaps:
    """The active latents of one scan point, rank 1 first (signs already applied).

    Attributes
    ----------
    temperature, seed : the scan point.
    kind : the model family (``linear`` or ``mlp``).
    latent_index : (n,) raw latent unit at each active rank.
    rho : (n,) signal fraction of each active rank (on the scan point's evaluation split).
    sign : (n,) +1 or -1, the flip applied to each latent (the sign convention).
    loadings : (n, d) loadings in standardized units (the mean Jacobian, sign applied).
    jacobian_rms : (n, d) ``sqrt(mean_i J_i^2)`` of the local Jacobian over every sample,
        ``|loadings|`` for the linear model (:mod:`.jacobian`).
    sign_agreement : (n, d) in [0, 1], the fraction of samples whose local Jacobian has the
        loading's sign (a zero counts one half; 1 for the linear model).
    feature_names : (d,)
    means : split -> (n_split, n) posterior means ``mu_k(x)`` of the split's samples.
    """

    temperature: float
    seed: int
    kind: str
    latent_index: np.ndarray
    rho: np.ndarray
    sign: np.ndarray
    loadings: np.ndarray
    feature_names: list[str]
    means: dict[str, np.ndarray]
    jacobian_rms: np.ndarray
    sign_agreement: np.ndarray

    @property
    def ranks(self) -> np.ndarray:
        return np.arange(1, self.rho.size + 1)

    def labels(self) -> list[str]:
        """``rank k, rho=...`` for each active rank (band descriptions, panel titles)."""
        return [f"rank {k}, rho={rho_text(r)}" for k, r in zip(self.ranks, self.rho, strict=True)]


def load_model(weights: str | os.PathLike):
    """The model saved by a training job (``scan/T=.../seed=....pt``), rebuilt in float64
    on the CPU, and the saved dictionary."""
    import torch

    state = read_weights(weights)
    model = Architecture.from_spec(state).build(
        int(state["d"]),
        int(state["latents"]),
        generator=torch.Generator().manual_seed(0),
        dtype=torch.float64,
    )
    model.load_state_dict({k: v.to(torch.float64) for k, v in state["state_dict"].items()})
    return model.eval(), state


def active_latents(point, rho_min: float) -> tuple[np.ndarray, np.ndarray]:
    """Raw latent index and ``rho`` of each rank with ``rho > rho_min`` (rank order), from a
    scan point's dataset (:func:`.scanfile.read`)."""
    rho = np.asarray(point["signal_fraction"].values, dtype=np.float64).ravel()
    index = np.asarray(point["latent_index"].values, dtype=np.int64).ravel()
    keep = rho > rho_min  # rho is ranked descending: the active ranks come first
    return index[keep], rho[keep]


def posterior_means(encode, x: np.ndarray, columns: np.ndarray, chunk: int = CHUNK):
    """``mu(x)[:, columns]`` in float64, chunk by chunk."""
    out = np.empty((x.shape[0], columns.size))
    for start in range(0, x.shape[0], chunk):
        xc = np.asarray(x[start : start + chunk], dtype=np.float64)
        out[start : start + chunk] = encode(xc)[0][:, columns]
    return out


def sign_convention(loadings: np.ndarray) -> np.ndarray:
    """+1 or -1 per row: the sign that makes the row's largest-``|.|`` entry positive."""
    if loadings.size == 0:
        return np.ones(loadings.shape[0])
    top = loadings[np.arange(loadings.shape[0]), np.argmax(np.abs(loadings), axis=1)]
    return np.where(top < 0, -1.0, 1.0)


def latent_maps(ds: PreparedDataset, model, point, rho_min: float) -> LatentMaps:
    """The active latents of ``model`` (a scan point's weights, :func:`load_model`) with
    the ranking of its scan point ``point``: their means over every split and loadings."""
    index, rho = active_latents(point, rho_min)
    temperature = float(np.asarray(point["T"].values).ravel()[0]) if "T" in point else np.nan
    seed = int(np.asarray(point["seed"].values).ravel()[0]) if "seed" in point else -1
    if index.size == 0:
        raise InputError(
            f"no latent has rho > rho_min = {rho_min:g} at T = {temperature:g} (seed {seed}): "
            "nothing to map; choose a lower temperature (maps.temperatures)"
        )
    d = len(ds.feature_names)
    if model.d != d or index.max() >= model.latents:
        raise InputError(
            f"the weights have d = {model.d}, K = {model.latents}, the prepared dataset "
            f"d = {d} and the scan point ranks latent {int(index.max())}: expected the "
            "weights, scan point and dataset of one run"
        )
    kind = model_kind(model)
    encode, _ = numpy_codec(model)
    if kind == "linear":  # a constant Jacobian: no pass over the samples
        jac = constant_jacobian_stats(model.numpy_params()["W"][:, index].T)
    else:
        jac = decoder_jacobian_stats(model, [ds.split(s) for s in SPLITS], index)
    loadings = jac.mean
    sign = sign_convention(loadings)
    means = {s: posterior_means(encode, ds.split(s), index) * sign for s in SPLITS}
    return LatentMaps(
        temperature=temperature,
        seed=seed,
        kind=kind,
        latent_index=index,
        rho=rho,
        sign=sign,
        loadings=loadings * sign[:, None],
        feature_names=list(ds.feature_names),
        means=means,
        # a flip negates the mean and every local Jacobian: the RMS and the agreement keep
        jacobian_rms=jac.rms,
        sign_agreement=jac.agreement,
    )


# ---- the grid --------------------------------------------------------------------------


@dataclass
class Grid:
    """The input grid of a raster dataset, as the prepared file records it."""

    shape: tuple[int, int]
    transform: tuple[float, ...]  # affine a, b, c, d, e, f
    crs_wkt: str
    nodata: float | None

    @property
    def is_geographic(self) -> bool:
        import pyproj

        return pyproj.CRS.from_wkt(self.crs_wkt).is_geographic

    def extent(self) -> tuple[float, float, float, float]:
        """(left, right, bottom, top) in CRS units, for ``imshow``."""
        a, _, c, _, e, f = self.transform
        h, w = self.shape
        x = sorted([c, c + w * a])
        y = sorted([f, f + h * e])
        return x[0], x[1], y[0], y[1]


def dataset_grid(ds: PreparedDataset) -> Grid | None:
    """The grid of a raster dataset; None for a table. InputError for a raster dataset
    prepared before the grid positions were kept."""
    info = ds.metadata.get("source_info", {})
    if "grid_shape" not in info:
        return None
    if ds.index is None or "crs_wkt" not in info:
        raise InputError(
            "the prepared dataset predates the latent maps (no grid positions): rerun "
            "`collapse-spectroscopy prepare` (delete results/RUN/data/ to make the workflow "
            "rerun it)"
        )
    return Grid(
        shape=tuple(int(v) for v in info["grid_shape"]),
        transform=tuple(float(v) for v in info["transform"]),
        crs_wkt=info["crs_wkt"],
        nodata=info.get("nodata"),
    )


def output_nodata(grid: Grid) -> float:
    """The fill value of the maps: the input's nodata as float32, NaN if it has none or
    float32 cannot hold it."""
    if grid.nodata is None or not np.isfinite(grid.nodata):
        return float("nan")
    value = np.float32(grid.nodata)
    return float(value) if np.isfinite(value) else float("nan")


def grid_bands(maps: LatentMaps, ds: PreparedDataset, grid: Grid) -> np.ndarray:
    """(n, height, width) float32: each active latent's mean on its valid cells, the
    output nodata elsewhere."""
    fill = output_nodata(grid)
    h, w = grid.shape
    bands = np.full((maps.rho.size, h * w), fill, dtype=np.float32)
    for s in SPLITS:
        bands[:, ds.index[s]] = maps.means[s].T
    return bands.reshape(maps.rho.size, h, w)


def write_geotiff(path, maps: LatentMaps, ds: PreparedDataset, grid: Grid) -> None:
    """``latent_means.tif``: one float32 band per active rank on the input grid (CRS,
    transform, nodata), deflate-compressed, band descriptions ``rank k, rho=...``."""
    import rasterio
    from affine import Affine
    from rasterio.crs import CRS

    bands = grid_bands(maps, ds, grid)
    profile = {
        "driver": "GTiff",
        "height": grid.shape[0],
        "width": grid.shape[1],
        "count": bands.shape[0],
        "dtype": "float32",
        "crs": CRS.from_wkt(grid.crs_wkt),
        "transform": Affine(*grid.transform[:6]),
        "nodata": output_nodata(grid),
        "compress": "deflate",
        "predictor": 3,  # floating-point predictor: smooth fields compress well
        "tiled": True,
    }
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(bands)
        for i, label in enumerate(maps.labels(), start=1):
            dst.set_band_description(i, label)
            dst.update_tags(
                i, latent_index=int(maps.latent_index[i - 1]), sign=int(maps.sign[i - 1])
            )
        dst.update_tags(
            temperature=repr(maps.temperature),
            seed=maps.seed,
            quantity="posterior mean mu_k(x) of each active latent, rank order "
            "(docs/science.md §10); sign: largest-|.| loading positive",
        )


def write_means_table(path, maps: LatentMaps, ds: PreparedDataset) -> None:
    """``latent_means.csv`` of a table dataset: one row per sample of all splits, its split,
    its row in the source table and ``mu_rank<k>`` per active rank."""
    frames = []
    for s in SPLITS:
        index = ds.index[s] if ds.index is not None else np.full(maps.means[s].shape[0], -1)
        df = pd.DataFrame(maps.means[s], columns=[f"mu_rank{k}" for k in maps.ranks])
        df.insert(0, "source_row", index)
        df.insert(0, "split", s)
        frames.append(df)
    out = pd.concat(frames, ignore_index=True).sort_values("source_row", kind="stable")
    with atomic_path(path) as tmp:
        out.to_csv(tmp, index=False, float_format="%.7g")


def loadings_table(maps: LatentMaps) -> pd.DataFrame:
    """One row per active rank: rank, rho, raw latent, sign, one column per feature (the
    loading), then ``jacobian_rms_<feature>`` and ``sign_agreement_<feature>`` per feature
    (:mod:`.jacobian`; appended after the loadings so that a reader of those keeps working).
    """
    names = maps.feature_names
    df = pd.DataFrame(maps.loadings, columns=names)
    df.insert(0, "sign", maps.sign.astype(int))
    df.insert(0, "latent_index", maps.latent_index)
    df.insert(0, "rho", maps.rho)
    df.insert(0, "rank", maps.ranks)
    spread = [
        pd.DataFrame(values, columns=[f"{prefix}_{name}" for name in names])
        for prefix, values in (
            ("jacobian_rms", maps.jacobian_rms),
            ("sign_agreement", maps.sign_agreement),
        )
    ]
    df = pd.concat([df, *spread], axis=1)
    if not df.columns.is_unique:
        twice = sorted(set(df.columns[df.columns.duplicated()]))
        raise InputError(f"loadings.csv would repeat the columns {twice}: rename those features")
    return df


def write_loadings(path, maps: LatentMaps) -> None:
    with atomic_path(path) as tmp:
        loadings_table(maps).to_csv(tmp, index=False, float_format="%.8g")
