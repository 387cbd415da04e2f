"""Utility concentration: how many variables a distortion tolerance needs (docs/science.md §9).

The linear VAE is the null model: its utilities equal the PCA spectrum ``lambda_k / V``
(docs/science.md §4.5). A nonlinear decoder may concentrate the same distortion into fewer
latents; these numbers measure that against PCA.

- ``n(eps) = min{k : Dn*_k <= eps}`` for the VAE's best truncated distortions, and
  ``n_PCA(eps) = min{k : 1 - sum_{i<=k} lambda_i/V <= eps}`` for PCA, over the tolerances
  ``eps`` of the schema's ``spectra.tolerances`` (:data:`TOLERANCES`);
- a VAE counts its active ranks only (:func:`last_active_rank`: the ranks past the last
  one whose ``rho`` exceeds ``rho_min`` at some scan point carry no signal at any ``T``,
  and their ``Dn*_k`` differ from the last active one's by scatter, ``~1e-8``, which must
  not count as variables that reach a tolerance just below it);
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


def last_active_rank(rho, rho_min: float) -> int:
    """The highest rank ``k`` whose signal fraction exceeds ``rho_min`` at some scan point
    (0 when none does). ``rho`` is ``(..., K)``: ranked signal fractions, any leading axes
    (scan points, seeds); NaN (a point not measured) is never active."""
    r = np.asarray(rho, dtype=np.float64)
    r = np.where(np.isnan(r), -np.inf, r).reshape(-1, r.shape[-1])
    active = np.flatnonzero(r.max(axis=0, initial=-np.inf) > rho_min)
    return int(active[-1]) + 1 if active.size else 0


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


def utility_concentration(
    best,
    utility,
    pca_distortion,
    pca_ratio,
    tolerances=TOLERANCES,
    active: int | None = None,
    pca_eval_distortion=None,
):
    """The ``utility_concentration`` block of ``summary.json``.

    ``best`` is ``Dn*_k`` (``k = 0..K``), ``utility`` is ``u_k`` (``k = 1..K``),
    ``pca_distortion`` is ``1 - sum_{i<=k} lambda_i/V`` (``k = 0..d``) and ``pca_ratio``
    is ``lambda_k/V``; ``active`` the VAE's :func:`last_active_rank` (``None``: all ``K``
    count). ``n_vae`` and ``n_pca`` hold ``None`` where the curve never reaches that
    ``eps`` (the VAE within its active latents, PCA within ``d`` components); Fig 5 draws
    the same counts. ``pca_eval_distortion`` (the training PCs' truncation measured on the
    evaluation split, ``k = 0..d``) adds ``n_pca_eval``: the split-matched comparison for
    the VAE's levels, which are measured on that split too.
    """
    eps = [float(e) for e in tolerances]
    counted = np.asarray(best, dtype=np.float64)
    if active is not None:
        counted = counted[: active + 1]
    return {
        "eps": eps,
        "n_vae": [variables_needed(counted, e) for e in eps],
        "n_pca": [variables_needed(pca_distortion, e) for e in eps],
        **(
            {"n_pca_eval": [variables_needed(pca_eval_distortion, e) for e in eps]}
            if pca_eval_distortion is not None
            else {}
        ),
        "participation_ratio_vae": participation_ratio(utility),
        "participation_ratio_pca": participation_ratio(pca_ratio),
    }


def per_seed_variables(per_seed_best: dict, tolerances=TOLERANCES, active: int | None = None):
    """``n(eps)`` of each seed's own best truncated distortions, and their range.

    ``per_seed_best`` maps a seed to its ``Dn*_k``, ``k = 1..K`` (``None`` or NaN where the
    seed has none; ``Dn*_0 = 1`` is prepended), as the summary's ``seed_intervals`` block
    holds them. ``active`` is the pooled scan's :func:`last_active_rank`, so that every seed
    counts the same latents. Returns ``{"n_vae_per_seed": {seed: [n per eps]},
    "n_vae_seed_range": [[min, max] per eps]}``; a range is ``None`` where some seed never
    reaches that ``eps``. ``n`` is an integer, so its spread over seeds is given as the
    range of the seeds' values rather than a t-interval (docs/science.md §4.8).
    """
    eps = [float(e) for e in tolerances]
    per_seed = {}
    for seed, best in per_seed_best.items():
        levels = np.array([1.0] + [np.nan if v is None else v for v in best], dtype=np.float64)
        if active is not None:
            levels = levels[: active + 1]
        per_seed[str(seed)] = [variables_needed(levels, e) for e in eps]
    ranges = []
    for i in range(len(eps)):
        values = [n[i] for n in per_seed.values()]
        ranges.append(None if None in values or not values else [min(values), max(values)])
    return {"n_vae_per_seed": per_seed, "n_vae_seed_range": ranges}


def rank_order(utility, active: int | None = None) -> dict:
    """Do the ranks by signal fraction (the spectra's order) also rank the utilities?

    Among the active ranks (``active``: :func:`last_active_rank`), an inversion is a pair
    of ranks ``k < l`` whose utilities run the other way, ``u_k < u_l``: a latent ranked
    below another by ``rho`` that removes more distortion. For the linear VAE at
    equilibrium both orders are the PCA order (docs/science.md §4.5); a nonlinear model
    may keep a latent of high ``rho`` that removes little. Returns ``agree`` and the
    ``inversions`` as ``[k, l]`` pairs (ranks from 1).
    """
    u = np.asarray(utility, dtype=np.float64)
    if active is not None:
        u = u[:active]
    pairs = [
        [k + 1, j + 1]
        for k in range(u.size)
        for j in range(k + 1, u.size)
        if np.isfinite(u[k]) and np.isfinite(u[j]) and u[k] < u[j]
    ]
    return {"agree": not pairs, "inversions": pairs}
