"""The loadings of an image dataset, drawn as images (docs/science.md §10, §5.7).

For samples that are images (an arrays source whose ``sample_shape`` is 2-D, e.g. the
``digits`` example's 8 x 8), a latent's loadings over the d = h x w pixels are an image:
what decoding one more unit of that latent adds to every pixel. One column per active
rank; the rows are the panels of :func:`.maps.draw_loadings` (the mean decoder Jacobian,
and for a nonlinear model the RMS of the local Jacobian and the fraction of samples with
the mean's sign), on the same colour scales, so a pixel bright in the RMS row but pale in
the mean row is one where the latent's effect cancels along the data.
"""

from __future__ import annotations

import numpy as np

from collapse_spectroscopy.figures.maps import AGREEMENT_CMAP, CMAP, RMS_CMAP, SIGN_NOTE
from collapse_spectroscopy.figures.style import PAGE_WIDTH, style
from collapse_spectroscopy.maps.latent_maps import LatentMaps, rho_text

MAX_RANKS = 16  # columns drawn; a caption says how many more are active


def image_shape(metadata: dict) -> tuple[int, int] | None:
    """The (height, width) of one sample if the dataset records a 2-D ``sample_shape``."""
    shape = (metadata or {}).get("sample_shape")
    if shape is None or len(shape) != 2:
        return None
    return int(shape[0]), int(shape[1])


def draw_loading_images(maps: LatentMaps, shape: tuple[int, int], title: str):
    """A grid of images: rows the panels, columns the active ranks (at most
    :data:`MAX_RANKS`), each the rank's values over the pixels reshaped to ``shape``."""
    from matplotlib.figure import Figure

    n, d = maps.loadings.shape
    if shape[0] * shape[1] != d:
        raise ValueError(f"sample_shape {shape} does not hold the {d} features")
    curved = maps.kind != "linear"
    lim = float(np.nanmax(maps.jacobian_rms if curved else np.abs(maps.loadings))) or 1.0
    rows = [(maps.loadings, CMAP, -lim, lim, "mean decoder Jacobian" if curved else "$W_k$")]
    if curved:
        rows += [
            (maps.jacobian_rms, RMS_CMAP, 0.0, lim, "RMS of the\nlocal Jacobian"),
            (maps.sign_agreement, AGREEMENT_CMAP, 0.0, 1.0, "fraction with\nthe mean's sign"),
        ]
    shown = min(n, MAX_RANKS)
    with style():
        fig = Figure(
            figsize=(min(PAGE_WIDTH, 1.4 + 0.85 * max(shown, 1)), 0.95 * len(rows) + 1.0),
            layout="constrained",
        )
        axes = fig.subplots(len(rows), max(shown, 1), squeeze=False)
        for r, (values, cmap, vmin, vmax, label) in enumerate(rows):
            im = None
            for k in range(max(shown, 1)):
                ax = axes[r, k]
                ax.set_xticks([])
                ax.set_yticks([])
                if k >= n:
                    continue
                im = ax.imshow(values[k].reshape(shape), cmap=cmap, vmin=vmin, vmax=vmax)
                if r == 0:
                    ax.set_title(
                        f"rank {maps.ranks[k]}\n$\\rho$ = {rho_text(maps.rho[k])}", fontsize=6
                    )
            axes[r, 0].set_ylabel(label, fontsize=6)
            if im is not None:
                bar = fig.colorbar(im, ax=list(axes[r]), shrink=0.9)
                bar.ax.tick_params(labelsize=5)
        more = f"; {n - shown} more active ranks not drawn" if n > shown else ""
        fig.suptitle(
            f"{title}\neach image: one latent's effect on the {shape[0]} x {shape[1]} pixels "
            f"(standardized units); {SIGN_NOTE}{more}",
            fontsize=7,
        )
    return fig
