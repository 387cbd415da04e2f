"""Loadings of image samples drawn as images (figures/loading_images.py).

Oracle: the loadings themselves. Each drawn image must be its rank's row of the loadings
reshaped row-major to the sample shape (the order in which the arrays source flattened
the pixels, datasets/arrays.py), in rank order, on the panels' colour limits.
"""

import numpy as np
import pytest

from collapse_spectroscopy.figures.loading_images import (
    MAX_RANKS,
    draw_loading_images,
    image_shape,
)
from collapse_spectroscopy.maps.latent_maps import LatentMaps


def maps(n, d, kind="mlp"):
    rng = np.random.default_rng(0)
    loadings = rng.normal(size=(n, d))
    return LatentMaps(
        temperature=0.01,
        seed=0,
        kind=kind,
        latent_index=np.arange(n)[::-1],
        rho=np.linspace(0.9, 0.1, n),
        sign=np.ones(n),
        loadings=loadings,
        feature_names=[f"x_{i}" for i in range(d)],
        means={},
        jacobian_rms=np.abs(loadings) * 1.5,
        sign_agreement=rng.uniform(0.5, 1.0, size=(n, d)),
    )


@pytest.mark.parametrize("kind, rows", [("mlp", 3), ("linear", 1)])
def test_each_image_is_its_ranks_loadings_reshaped(kind, rows):
    m = maps(3, 6, kind)
    fig = draw_loading_images(m, (2, 3), "t")
    images = [ax.images for ax in fig.axes if ax.images]
    assert len(images) == 3 * rows
    panels = [m.loadings, m.jacobian_rms, m.sign_agreement][:rows]
    for r, values in enumerate(panels):
        for k in range(3):
            np.testing.assert_array_equal(images[r * 3 + k][0].get_array(), values[k].reshape(2, 3))
    lim = np.abs(m.jacobian_rms if kind == "mlp" else m.loadings).max()
    assert images[0][0].get_clim() == (-lim, lim)


def test_many_ranks_are_capped_and_the_title_says_so():
    fig = draw_loading_images(maps(MAX_RANKS + 2, 4), (2, 2), "t")
    drawn = sum(1 for ax in fig.axes if ax.images)
    assert drawn == 3 * MAX_RANKS
    assert "2 more active ranks not drawn" in fig._suptitle.get_text()


def test_only_a_2d_sample_shape_is_an_image():
    assert image_shape({"sample_shape": [8, 8]}) == (8, 8)
    assert image_shape({"sample_shape": [64]}) is None
    assert image_shape({"sample_shape": [3, 8, 8]}) is None
    assert image_shape({}) is None
    with pytest.raises(ValueError, match="does not hold the 6 features"):
        draw_loading_images(maps(2, 6), (2, 2), "t")
