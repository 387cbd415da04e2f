"""What a mean decoder Jacobian can hide: its RMS and sign agreement over the samples
(docs/science.md §10 "Loadings", issue 23 item 5).

Oracles, not the formula again:

- a linear decoder's local Jacobian is its decoder column at every sample, so the RMS is
  ``|W_k|`` up to the round-off of summing ``n`` equal numbers, and every sample agrees;
- a hand-built decoder of known curvature (``a^2``, ``a^3 - a``, ``relu(a)``, ``b^2``) over a
  hand-picked set of posterior means gives the mean, RMS and agreement in closed form, the
  fractions as counts over 30 samples (exact in float64: ``20/30`` rounds as ``2/3`` does);
- flipping a latent (``mu -> -mu``, ``decode(z) -> decode(-z)``, the same model) negates
  the mean and leaves RMS and agreement bit for bit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from collapse_spectroscopy.maps.jacobian import constant_jacobian_stats, decoder_jacobian_stats
from collapse_spectroscopy.maps.latent_maps import LatentMaps, write_loadings
from collapse_spectroscopy.models.linear import LinearVAE

EPS = np.finfo(np.float64).eps


def test_a_linear_decoder_has_rms_abs_mean_and_full_agreement():
    gen = torch.Generator().manual_seed(3)
    model = LinearVAE(6, 4, generator=gen, dtype=torch.float64)
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((300, 6)), rng.standard_normal((211, 6))]
    n = sum(x.shape[0] for x in xs)
    cols = np.array([3, 0, 2])
    stats = decoder_jacobian_stats(model, xs, cols, chunk=64)
    w = model.dec.weight.detach().numpy()[:, cols].T  # the decoder columns: the oracle
    # Each local Jacobian is W_jk exactly (a one-hot tangent through an affine layer), so
    # the sums of J and J^2 over n samples carry recursive-summation error <= (n - 1) u
    # (u = eps / 2) each, then one rounding in the division and one in the sqrt: the ratio
    # rms / |mean| is 1 within about (n + 2) u < n eps
    np.testing.assert_allclose(stats.mean, w, rtol=n * EPS, atol=0)
    np.testing.assert_allclose(stats.rms, np.abs(stats.mean), rtol=n * EPS, atol=0)
    np.testing.assert_array_equal(stats.agreement, 1.0)  # n / n: a count, exact
    # the linear path of the maps takes these from W without a pass: the same by definition
    const = constant_jacobian_stats(w)
    np.testing.assert_array_equal(const.rms, np.abs(w))
    np.testing.assert_array_equal(const.agreement, 1.0)
    # an entry exactly 0 has no sign: one half, as a mean of exactly 0 is read
    assert constant_jacobian_stats(np.array([[0.0, -2.0]])).agreement.tolist() == [[0.5, 1.0]]


class Curved:
    """``mu(x) = x`` (2 latents ``a``, ``b``) and a decoder of 5 features of known
    Jacobian: ``a^2`` (2a), ``3a`` (3), ``a^3 - a`` (3a^2 - 1), ``relu(a)`` (1 or 0),
    ``b^2`` (2b). ``flip`` negates latent ``a``: the same model, the other sign."""

    d = 5

    def __init__(self, flip: bool = False):
        self.s = torch.tensor([-1.0 if flip else 1.0, 1.0], dtype=torch.float64)

    def encode(self, x):
        return x * self.s, torch.zeros_like(x)

    def decode(self, z):
        a, b = (z * self.s).unbind(1)
        return torch.stack([a**2, 3 * a, a**3 - a, torch.relu(a), b**2], dim=1)


def curved_samples() -> list[np.ndarray]:
    """30 posterior means: ``a`` symmetric about 0 (each of +-0.5, +-1, +-2 five times),
    ``b`` +0.25 on 21 samples and -1 on 9 (each pattern cycled), shuffled, in two splits."""
    a = np.tile([-2.0, -1.0, -0.5, 0.5, 1.0, 2.0], 5)
    b = np.tile([0.25] * 7 + [-1.0] * 3, 3)
    x = np.stack([a, b], axis=1)[np.random.default_rng(1).permutation(30)]
    return [x[:13], x[13:]]


def test_a_curved_decoder_gives_known_rms_and_agreement():
    stats = decoder_jacobian_stats(Curved(), curved_samples(), np.array([0, 1]), chunk=4)
    # latent a: 2a cancels exactly (dyadic sums) while its RMS is 2 sqrt(mean a^2) =
    # 2 sqrt(1.75) = sqrt(7); (a^3 - a)' = 3a^2 - 1 is 11, 2, -1/4 at |a| = 2, 1, 1/2:
    # mean 4.25, positive on 20 of 30; relu'(a) is 1 on 15, 0 on 15 (a zero counts one
    # half: 0.75).
    # latent b: 2b is +0.5 on 21 samples, -2 on 9: mean -0.25 < 0 although most are
    # positive, so 9 of 30 agree; a feature not depending on a latent: J = 0, agreement 0.5
    mean = [[0.0, 3.0, 4.25, 0.5, 0.0], [0.0, 0.0, 0.0, 0.0, -0.25]]
    ms = [[7.0, 9.0, (121 + 4 + 1 / 16) / 3, 0.5, 0.0], [0.0, 0.0, 0.0, 0.0, 13.75 / 10]]
    agreement = [[0.5, 1.0, 2 / 3, 0.75, 0.5], [0.5, 0.5, 0.5, 0.5, 0.3]]
    np.testing.assert_allclose(stats.mean, mean, rtol=0, atol=4 * EPS)
    assert stats.mean[0, 0] == 0.0  # the cancelling mean is 0 exactly: agreement 0.5 by rule
    # a division and a sqrt: two roundings apart from the analytic value at most
    np.testing.assert_allclose(stats.rms, np.sqrt(ms), rtol=2 * EPS, atol=0)
    np.testing.assert_array_equal(stats.agreement, agreement)  # counts over 30: exact


def test_flipping_a_latent_keeps_rms_and_agreement():
    xs, cols = curved_samples(), np.array([0, 1])
    plain = decoder_jacobian_stats(Curved(), xs, cols, chunk=7)
    flipped = decoder_jacobian_stats(Curved(flip=True), xs, cols, chunk=7)
    np.testing.assert_array_equal(flipped.mean[0], -plain.mean[0])
    np.testing.assert_array_equal(flipped.rms, plain.rms)
    np.testing.assert_array_equal(flipped.agreement, plain.agreement)


def curved_maps() -> LatentMaps:
    stats = decoder_jacobian_stats(Curved(), curved_samples(), np.array([0, 1]))
    return LatentMaps(
        temperature=0.01,
        seed=0,
        kind="mlp",
        latent_index=np.array([0, 1]),
        rho=np.array([0.7, 0.2]),
        sign=np.ones(2),
        loadings=stats.mean,
        feature_names=["sq", "lin", "cubic", "relu", "b_sq"],
        means={},
        jacobian_rms=stats.rms,
        sign_agreement=stats.agreement,
    )


def test_loadings_csv_appends_rms_and_agreement_after_the_loadings(tmp_path):
    maps = curved_maps()
    write_loadings(tmp_path / "loadings.csv", maps)
    table = pd.read_csv(tmp_path / "loadings.csv")
    names = maps.feature_names
    assert list(table.columns) == (
        ["rank", "rho", "latent_index", "sign", *names]
        + [f"jacobian_rms_{f}" for f in names]
        + [f"sign_agreement_{f}" for f in names]
    )
    assert table.loc[0, "jacobian_rms_sq"] == float(f"{np.sqrt(7):.8g}")
    assert table.loc[0, "sign_agreement_cubic"] == 0.66666667  # 2/3 to %.8g
    assert table.loc[1, "sign_agreement_b_sq"] == 0.3


def test_loadings_figure_of_a_curved_model_shows_rms_and_agreement():
    from collapse_spectroscopy.figures.maps import draw_loadings

    maps = curved_maps()
    fig = draw_loadings(maps, "t")
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 3  # the mean, the RMS, the agreement
    bars = [ax.get_ylabel() for ax in fig.axes if not ax.images]  # the colour bars' labels
    assert "Jacobian" in bars[0] and "RMS" in bars[1] and "mean's sign" in bars[2]
    mean_im, rms_im, agree_im = (ax.images[0] for ax in panels)
    # the RMS shares the mean's colour limit, its largest value: equal colour, equal size
    assert mean_im.get_clim() == (-maps.jacobian_rms.max(), maps.jacobian_rms.max())
    assert rms_im.get_clim() == (0.0, maps.jacobian_rms.max())
    assert agree_im.get_clim() == (0.0, 1.0)
