"""Utility concentration: how many variables a distortion tolerance needs (docs/science.md §9).

The linear VAE is the null model: its utilities equal the PCA spectrum ``lambda_k / V``
(docs/science.md §4.5). A nonlinear decoder may concentrate the same distortion into fewer
latents; these numbers measure that against PCA.

- ``n(eps) = min{k : Dn*_k <= eps}`` for the VAE's best truncated distortions, and
  ``n_PCA(eps) = min{k : 1 - sum_{i<=k} lambda_i/V <= eps}`` for PCA, over the tolerances
  ``eps`` of the schema's ``spectra.tolerances`` (:data:`TOLERANCES`);
- the participation ratio ``(sum w_k)^2 / sum w_k^2`` of the VAE's positive utilities and
  of ``lambda_k / V``: the effective number of variables that share the removed variance
  (``n`` equal weights give ``n``, one weight gives 1).

Pure functions; :func:`.spectra.summarize` puts :func:`utility_concentration` into
``summary.json``.
"""

from __future__ import annotations

import numpy as np

from collapse_spectroscopy.config.settings import section_defaults

# the tolerances of a run that names none (the schema's spectra.tolerances)
TOLERANCES = tuple(section_defaults("spectra")["tolerances"])


def variables_needed(levels, eps: float) -> int | None:
    """``min{k : levels[k] <= eps}`` for ``levels`` indexed by ``k = 0, 1, ...``.

    ``levels`` is a truncation curve (``Dn*_k`` or the PCA distortion, ``k = 0`` first);
    ``None`` when no level reaches ``eps`` (NaN levels never do).
    """
    reached = np.flatnonzero(np.asarray(levels, dtype=np.float64) <= eps)
    return int(reached[0]) if reached.size else None


def participation_ratio(weights) -> float | None:
    """``(sum w)^2 / sum w^2`` over the positive, finite weights; ``None`` when there are none.

    Only positive weights count. A VAE utility ``u_k = Dn*_{k-1} - Dn*_k`` is negative only
    because each ``Dn*_k`` is minimized over the scan independently (docs/science.md §4.2):
    scatter between scan points, not a variable that removes variance. Counting it would
    add to ``sum w^2`` and subtract from ``sum w``, lowering the ratio for noise. Zero
    weights (collapsed latents, empty PCA modes) change neither sum, so leaving them out is
    the same as keeping them.
    """
    w = np.asarray(weights, dtype=np.float64)
    w = w[np.isfinite(w) & (w > 0)]
    if w.size == 0:
        return None
    return float(np.sum(w) ** 2 / np.sum(w * w))


def utility_concentration(best, utility, pca_distortion, pca_ratio, tolerances=TOLERANCES):
    """The ``utility_concentration`` block of ``summary.json``.

    ``best`` is ``Dn*_k`` (``k = 0..K``), ``utility`` is ``u_k`` (``k = 1..K``),
    ``pca_distortion`` is ``1 - sum_{i<=k} lambda_i/V`` (``k = 0..d``) and ``pca_ratio``
    is ``lambda_k/V``. ``n_vae`` and ``n_pca`` hold ``None`` where the curve never
    reaches that ``eps`` (the VAE within ``K`` latents, PCA within ``d`` components).
    """
    eps = [float(e) for e in tolerances]
    return {
        "eps": eps,
        "n_vae": [variables_needed(best, e) for e in eps],
        "n_pca": [variables_needed(pca_distortion, e) for e in eps],
        "participation_ratio_vae": participation_ratio(utility),
        "participation_ratio_pca": participation_ratio(pca_ratio),
    }
