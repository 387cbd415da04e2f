"""The split map: the spatial blocks coloured by split (geopandas + matplotlib).

Blocks are drawn as the squares they are, in the equal-area CRS EPSG:6933 where they
were cut (axes in km), over the outline of the projected globe, and the axes show the
blocks' extent (:func:`map_extent`): a region of a few degrees fills the map instead of a
corner of the world. For a table without
geography the "map" is a bar chart of the samples per split, so that every run writes
the same files.
"""

from __future__ import annotations

from pathlib import Path

from collapse_spectroscopy.datasets.split import SPLITS, SplitResult
from collapse_spectroscopy.store.atomic import atomic_path

COLORS = {"train": "#4477AA", "val": "#EE7733", "test": "#228833"}  # Paul Tol, bright
LABELS = {"train": "training", "val": "validation", "test": "test"}


def _globe_outline():
    """The projected extent of the globe in EPSG:6933 (a rectangle), as a GeoSeries."""
    import geopandas as gpd
    import pyproj
    import shapely

    t = pyproj.Transformer.from_crs("EPSG:4326", "EPSG:6933", always_xy=True)
    xmax, ymax = t.transform(180.0, 90.0)
    return gpd.GeoSeries([shapely.box(-xmax, -ymax, xmax, ymax)], crs="EPSG:6933")


def blocks_geodataframe(split: SplitResult):
    """One square polygon per block (EPSG:6933) with its split, area and sample count."""
    import geopandas as gpd
    import shapely

    b = split.blocks
    geom = shapely.box(
        b["x_min_m"], b["y_min_m"], b["x_min_m"] + b["size_m"], b["y_min_m"] + b["size_m"]
    )
    return gpd.GeoDataFrame(b.copy(), geometry=geom, crs="EPSG:6933")


def map_extent(bounds, block_m: float, globe_bounds) -> tuple[float, float, float, float]:
    """The axes' ``(x0, x1, y0, y1)`` (m): the blocks' ``bounds`` ``(minx, miny, maxx,
    maxy)`` widened by half a block on each side (the outer blocks keep a margin), within
    the globe's ``globe_bounds``."""
    minx, miny, maxx, maxy = bounds
    gx0, gy0, gx1, gy1 = globe_bounds
    pad = 0.5 * block_m
    return max(minx - pad, gx0), min(maxx + pad, gx1), max(miny - pad, gy0), min(maxy + pad, gy1)


def draw_split_map(split: SplitResult, summary: dict, paths, title: str = "") -> None:
    """Draw the split map and save it to each of ``paths`` (format from the suffix), atomically."""
    fig = split_map_figure(split, summary, title)
    for path in paths:
        path = Path(path)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=150, format=path.suffix.lstrip(".") or None)


def split_map_figure(split: SplitResult, summary: dict, title: str = ""):
    """The split map (a bar chart of the counts for a table without geography)."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter

    counts = {s: summary["splits"][s]["samples"] for s in SPLITS}
    if split.blocks is not None:
        gdf = blocks_geodataframe(split)
        globe = _globe_outline()
        gdf = gdf.set_geometry(gdf.geometry.intersection(globe.iloc[0]))  # clip at the poles
        fig = Figure(figsize=(10, 5.8), layout="constrained")
        ax = fig.subplots()
        globe.plot(ax=ax, facecolor="#F4F4F4", edgecolor="#999999", linewidth=0.5)
        for name in SPLITS:
            part = gdf[gdf["split"] == name]
            if len(part):
                part.plot(ax=ax, facecolor=COLORS[name], edgecolor="white", linewidth=0.2)
        km = FuncFormatter(lambda v, _: f"{v / 1000:,.0f}")
        ax.xaxis.set_major_formatter(km)
        ax.yaxis.set_major_formatter(km)
        ax.set_xlabel("x (km, EPSG:6933 equal-area)")
        ax.set_ylabel("y (km)")
        handles = [
            Patch(
                facecolor=COLORS[s],
                label=(
                    f"{LABELS[s]}: {counts[s]:,} cells, {summary['splits'][s]['blocks']} blocks, "
                    f"{100 * summary['splits'][s]['area_fraction']:.1f} % of area"
                ),
            )
            for s in SPLITS
        ]
        fig.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=8, frameon=False)
        p = split.parameters
        ax.set_title(
            title
            or f"Spatial-block split: {p['block_km']:g} km blocks, "
            f"seed {p['seed']}, area targets {p['fractions']}"
        )
        ax.set_aspect("equal")
        if len(gdf):
            block_m = float(split.blocks["size_m"].max())
            x0, x1, y0, y1 = map_extent(gdf.total_bounds, block_m, globe.total_bounds)
            ax.set_xlim(x0, x1)
            ax.set_ylim(y0, y1)
    else:
        fig = Figure(figsize=(6, 4), layout="constrained")
        ax = fig.subplots()
        ax.bar(
            [LABELS[s] for s in SPLITS],
            [counts[s] for s in SPLITS],
            color=[COLORS[s] for s in SPLITS],
        )
        for i, s in enumerate(SPLITS):
            ax.text(i, counts[s], f"{counts[s]:,}", ha="center", va="bottom")
        ax.set_ylabel("samples")
        ax.set_ylim(0, 1.12 * max(counts.values()))
        ax.set_title(title or f"Split of a table without geography ({split.method})")
    return fig
