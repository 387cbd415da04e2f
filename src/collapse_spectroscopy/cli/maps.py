"""``maps``: the active latents of one scan point as maps and loadings (docs/science.md §10)."""

from __future__ import annotations

from pathlib import Path

from collapse_spectroscopy.cli.runconfig import add_run_config_argument, config_option
from collapse_spectroscopy.cli.spectra import (
    RHO_MIN_KEY,
    add_unused_spectra_options,
    check_rho_min,
)
from collapse_spectroscopy.store import scanfile
from collapse_spectroscopy.store.atomic import all_or_none, atomic_path
from collapse_spectroscopy.store.prepared import load_prepared


def register_maps(sub) -> None:
    p = sub.add_parser(
        "maps",
        help="latent maps and loadings of one scan point",
        description="For the latents of a scan point with rho > rho_min, ranked by signal "
        "fraction: the posterior mean mu_k(x) of every sample of all splits -- for a raster "
        "dataset latent_means.tif (one float32 band per rank on the input grid: CRS, "
        "transform, nodata; descriptions 'rank k, rho=...') and latent_means.png, for a "
        "table latent_means.csv -- and the loadings (decoder column W_k of the linear "
        "model, mean decoder Jacobian of an mlp; standardized units; with the Jacobian's "
        "RMS over the samples and the fraction of samples sharing the mean's sign), "
        "loadings.csv and loadings.png, all in OUT_DIR. Each latent's sign makes its "
        "largest-|loading| feature positive.",
    )
    p.add_argument("point", type=Path, help="the scan point (scan/T=.../seed=....nc)")
    p.add_argument("--data", required=True, type=Path, help="prepared dataset (.npz)")
    p.add_argument(
        "--weights", type=Path, help="the scan point's weights (default: POINT with .pt)"
    )
    p.add_argument("--out-dir", required=True, type=Path)
    add_run_config_argument(p)
    config_option(p, RHO_MIN_KEY, "--rho-min", suffix="; maps the active latents")
    # maps reads the whole spectra section (settings.STAGES); the tolerances are not used
    add_unused_spectra_options(p, "maps")
    p.set_defaults(func=run_maps)


def run_maps(args) -> int:
    from collapse_spectroscopy.maps import latent_maps  # lazy: torch

    check_rho_min(args.rho_min)
    point = scanfile.read(args.point)
    weights = args.weights or args.point.with_suffix(".pt")
    model, _ = latent_maps.load_model(weights)
    ds = load_prepared(args.data)
    grid = latent_maps.dataset_grid(ds)
    result = latent_maps.latent_maps(ds, model, point, args.rho_min)
    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)
    files = {k: out / v for k, v in latent_maps.FILES.items()}
    title = f"T = {result.temperature:.4g}, seed {result.seed} ({result.kind})"
    with all_or_none() as written:  # the maps of a scan point exist together or not at all
        if grid is not None:
            # lazy: matplotlib and torch
            from collapse_spectroscopy.figures.maps import draw_latent_means

            latent_maps.write_geotiff(files["geotiff"], result, ds, grid)
            written.append(files["geotiff"])
            bands = latent_maps.grid_bands(result, ds, grid)
            means_title = f"posterior means $\\mu_k(x)$, {title}{subsample_note(ds)}"
            fig = draw_latent_means(bands, result, grid, means_title)
            _save_png(fig, files["means_png"], atomic_path)
            written.append(files["means_png"])
        else:
            latent_maps.write_means_table(files["means_csv"], result, ds)
            written.append(files["means_csv"])
        latent_maps.write_loadings(files["loadings_csv"], result)
        written.append(files["loadings_csv"])
        _save_png(loadings_figure(result, ds, title), files["loadings_png"], atomic_path)
        written.append(files["loadings_png"])
    for path in written:
        print(path)
    return 0


def loadings_figure(result, ds, title: str):
    """The loadings figure: one image per active latent for samples that are images (a
    2-D ``sample_shape``), else the rank x feature heatmap."""
    from collapse_spectroscopy.figures import loading_images  # lazy: matplotlib and torch
    from collapse_spectroscopy.figures.maps import draw_loadings  # lazy: matplotlib and torch

    shape = loading_images.image_shape(ds.metadata)
    if shape is not None:
        return loading_images.draw_loading_images(result, shape, f"loadings, {title}")
    return draw_loadings(result, f"loadings, {title}")


def subsample_note(ds) -> str:
    """A second title line for a run with ``split.train_subsample``: the prepared dataset
    keeps only the subsampled training cells, so its maps show mostly validation and test
    cells, and the title says how many of each (docs/science.md §10, §11)."""
    sub = ds.metadata.get("split", {}).get("train_subsample")
    if not sub:
        return ""
    n = {name: ds.split(name).shape[0] for name in ("train", "val", "test")}
    total = sum(n.values())
    return (
        f"\ntraining split subsampled to {sub['fraction']:g}: {n['train']:,} of its "
        f"{sub['samples_in_split']:,} cells mapped; {100 * (n['val'] + n['test']) / total:.0f} % "
        "of the mapped cells are validation and test"
    )


def _save_png(fig, path: Path, atomic_path) -> None:
    from collapse_spectroscopy.figures.style import DPI, style  # lazy: matplotlib

    with style(), atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, metadata={"Software": None}, bbox_inches="tight")
