"""The spectra table and the run's summary (docs/science.md §4).

:func:`spectra_table` assembles the table the workflow writes as ``spectra.csv``: one row
per ranked mode, with the collapse threshold and utility of each rank
(:mod:`.thresholds`) beside the PCA references (:mod:`.pca`); the column names are a
contract. :func:`summarize` adds the per-mode totals of a linear run (§10.1), the
under-equilibrated flag of each rank, the intervals across seeds (§4.8), and the JSON
summary: thresholds and utilities over PCA, utility concentration, stop reasons and the
scan points that ended before the early-stopping test passed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from collapse_spectroscopy.analysis import equilibrium
from collapse_spectroscopy.analysis.concentration import (
    TOLERANCES,
    last_active_rank,
    per_seed_variables,
    rank_order,
    utility_concentration,
)
from collapse_spectroscopy.analysis.equilibration import (
    equilibration_summary,
    scan_under_equilibrated,
    training_cost,
)
from collapse_spectroscopy.analysis.pca import PCA_FLOOR, pca_truncation_distortion
from collapse_spectroscopy.analysis.rate_distortion import rate_distortion_block
from collapse_spectroscopy.analysis.selection import Selection
from collapse_spectroscopy.analysis.thresholds import (
    RANK_RULE,
    RHO_MIN,
    ThresholdFit,
    best_distortions,
    crossing_threshold,
    fixed_exponent_threshold,
    free_exponent_fit,
    rank_values,
    selected_values,
    under_equilibrated_ranks,
    utilities,
)

SPECTRA_COLUMNS = [
    "rank",
    "collapse_threshold",
    "fit_points",
    "free_exponent",
    "utility",
    "best_distortion",
    "pca_ratio",
    "pca_distortion",
]

# Appended by `summarize` after the other columns (docs/science.md §4.7, §10.1).
MODE_COLUMNS = [
    "mode_collapse_threshold",
    "mode_fit_points",
    "mode_free_exponent",
    "mode_latents",
    "split_threshold_reference",
    "split_utility_reference",
]


def spectra_table(
    temperature, rho, truncated, pca_ratio=None, pca_eval=None, rho_min: float = RHO_MIN
) -> pd.DataFrame:
    """The spectra table: one row per ranked mode ``k = 1..K``.

    Parameters
    ----------
    temperature : (P,) temperature of each scan point (seeds flattened into P).
    rho : (P, K) ranked signal fractions at each scan point.
    truncated : (P, K+1) truncated distortions ``Dn_k``.
    pca_ratio : (d,) training ``lambda_k / V`` (rows beyond d get NaN).
    pca_eval : (d+1,) split-matched PCA truncation distortion on the evaluation split.
    """
    t = np.asarray(temperature, dtype=np.float64)
    rho = np.asarray(rho, dtype=np.float64)
    K = rho.shape[1]
    best = best_distortions(truncated)
    fits, utility = rank_values(t, rho, truncated, rho_min)
    rows = []
    for k, fit in enumerate(fits):
        free_tk, gamma, free_note = free_exponent_fit(t, rho[:, k], rho_min)
        rows.append(
            {
                "rank": k + 1,
                "collapse_threshold": fit.threshold,
                "fit_points": fit.points,
                "free_exponent": gamma,
                "free_threshold": free_tk,
                "utility": utility[k],
                "best_distortion": best[k + 1],
                "fit_note": _fit_note(fit, free_note),
            }
        )
    df = pd.DataFrame(rows)
    df["pca_ratio"] = _pad(pca_ratio, K)
    df["pca_distortion"] = _pad(
        None if pca_ratio is None else pca_truncation_distortion(pca_ratio)[1:], K
    )
    df["pca_eval_utility"] = _pad(None if pca_eval is None else utilities(pca_eval), K)
    # appended after the contract's and the earlier extra columns, which keep their order
    crossings = [crossing_threshold(t, rho[:, k], rho_min) for k in range(K)]
    df["crossing_threshold"] = [c.threshold for c in crossings]
    df["crossing_note"] = [c.note for c in crossings]
    extra = [c for c in df.columns if c not in SPECTRA_COLUMNS]
    return df[SPECTRA_COLUMNS + extra]


def _fit_note(fit: ThresholdFit, free_note: str) -> str:
    """``fit_note``: why ``collapse_threshold`` is NaN (:func:`rank_threshold`), and
    nothing else; where the threshold exists but the free-exponent diagnostic does not,
    the note names the diagnostic, so that it never reads as the threshold's reason."""
    if fit.note or not free_note:
        return fit.note
    return f"free exponent only: {free_note}"


def _pad(values, n):
    out = np.full(n, np.nan)
    if values is not None:
        v = np.asarray(values, dtype=np.float64)[:n]
        out[: v.size] = v
    return out


def _flat_rho(scan) -> tuple[np.ndarray, np.ndarray]:
    """A gathered scan's ``rho`` flattened over its (T, seed) points, (P, K), and which
    points were run (finite ``rho``), (P,): the points :func:`scan_arrays` keeps."""
    rho = scan["signal_fraction"].transpose("T", "seed", "latent").values
    rho = rho.reshape(rho.shape[0] * rho.shape[1], -1)
    return rho, np.all(np.isfinite(rho), axis=1)


def scan_levels(scan, selection: Selection | None = None) -> np.ndarray:
    """The truncated distortions the spectra read (:mod:`.selection`) over the points
    :func:`scan_arrays` keeps: ``(P, K+1)`` levels, or paired ``(P, K+1, 2)`` (reported,
    choosing) when the points are chosen on the validation split."""
    selection = selection or Selection()
    _, ran = _flat_rho(scan)

    def flat(name):
        v = scan[name].transpose("T", "seed", "k").values
        return v.reshape(ran.size, -1)[ran]

    report = flat(selection.report)
    return report if selection.choose is None else np.stack([report, flat(selection.choose)], -1)


def scan_arrays(scan):
    """Flatten a gathered scan's (T, seed) points into ``(T, rho, Dn)`` arrays.

    Points that were not run (NaN rho) are dropped. Returns ``T`` (P,), ``rho`` (P, K),
    ``Dn`` (P, K+1).
    """
    rho, ran = _flat_rho(scan)
    dn = scan["truncated_distortion"].transpose("T", "seed", "k").values
    t = np.broadcast_to(scan["T"].values[:, None], dn.shape[:2])
    dn, t = dn.reshape(ran.size, -1), t.reshape(ran.size)
    return t[ran], rho[ran], dn[ran]


def ranked_values(scan, name: str) -> np.ndarray:
    """A per-latent variable of a gathered scan over the points :func:`scan_arrays` keeps,
    in its order (P, K)."""
    _, ran = _flat_rho(scan)
    v = scan[name].transpose("T", "seed", "latent").values
    return v.reshape(ran.size, -1)[ran]


def scan_point_flags(scan) -> np.ndarray:
    """:func:`.equilibration.scan_under_equilibrated` of each point :func:`scan_arrays` keeps,
    in its order (P,)."""
    _, ran = _flat_rho(scan)
    return scan_under_equilibrated(scan).reshape(ran.size)[ran]


def scan_rank_flags(scan, rho_min: float = RHO_MIN) -> np.ndarray:
    """:func:`under_equilibrated_ranks` of a gathered scan: one flag per rank ``1..K``."""
    t, rho, dn = scan_arrays(scan)
    return under_equilibrated_ranks(t, rho, dn, scan_point_flags(scan), rho_min)


def mode_columns(scan, rho_min: float = RHO_MIN) -> dict[str, np.ndarray]:
    """The spectra table's per-mode and split-aware columns, one value per row ``1..K``.

    Row ``k`` is PCA mode ``k``, as ``pca_ratio`` (``split_utility_reference``: rank ``k``,
    as ``utility``). From the mode totals of the scan (docs/science.md §10.1):
    ``mode_collapse_threshold``, ``mode_fit_points`` and ``mode_free_exponent``, the fits of
    :func:`fixed_exponent_threshold` and :func:`free_exponent_fit` on the mode's total
    ``rho``; ``mode_latents``, the most latents it spans (participation ratio) at a point
    of its fit. From the training equilibrium on the evaluation split (docs/science.md
    §4.7): ``split_threshold_reference``, the same fixed-exponent fit applied to the
    expected ``rho`` at the run's own scan points; ``split_utility_reference``, the
    expected ``u_k`` from the expected ``Dn_k`` at those points, best over the scan as for
    the data. NaN where the scan lacks the variables (a nonlinear run, an older scan).
    """
    K = scan.sizes["latent"]
    rho = scan["signal_fraction"].transpose("T", "seed", "latent").values
    ran = np.all(np.isfinite(rho), axis=-1).ravel()
    t = np.broadcast_to(scan["T"].values[:, None], rho.shape[:2]).ravel()[ran]
    out = {name: np.full(K, np.nan) for name in MODE_COLUMNS}
    if "mode_signal_fraction" in scan:
        d = scan.sizes["mode"]

        def values(name):
            v = scan[name].transpose("T", "seed", "mode").values
            return v.reshape(-1, d)[ran]

        mode_rho, latents = values("mode_signal_fraction"), values("mode_latents")
        for k in range(min(d, K)):
            fit = fixed_exponent_threshold(t, mode_rho[:, k], rho_min)
            out["mode_collapse_threshold"][k] = fit.threshold
            out["mode_fit_points"][k] = fit.points
            out["mode_free_exponent"][k] = free_exponent_fit(t, mode_rho[:, k], rho_min)[1]
            above = mode_rho[:, k] > rho_min
            out["mode_latents"][k] = latents[above, k].max() if above.any() else np.nan
    if "pca_eval_ratio" in scan and t.size:
        tk, ev = scan["pca_ratio"].values, scan["pca_eval_ratio"].values
        expected = equilibrium.split_signal_fraction(tk, ev, t)
        for k in range(min(tk.size, K)):
            ref = fixed_exponent_threshold(t, expected[:, k], rho_min).threshold
            out["split_threshold_reference"][k] = ref
        dn = equilibrium.split_truncated_distortion(tk, ev, t)
        out["split_utility_reference"] = _pad(utilities(best_distortions(dn)), K)
    return out


def summarize(
    scan,
    rho_min: float = RHO_MIN,
    tolerances=TOLERANCES,
    reference=None,
    selection: Selection | None = None,
):
    """The spectra table of a gathered scan, and a JSON-ready summary of the run.

    ``tolerances`` are the distortion levels ``eps`` of the utility concentration
    (:func:`.concentration.utility_concentration`). ``reference``: the evaluation split's
    :func:`.rate_distortion.split_reference`, which adds the summary's ``rate_distortion``
    block (docs/science.md §9.1); without it the block is left out. ``selection``: the
    pruning rule and selection split of ``Dn*_k`` (:mod:`.selection`; default the paper's,
    zero and test); the thresholds do not depend on it.
    """
    selection = selection or Selection()
    t, rho, _ = scan_arrays(scan)
    dn = scan_levels(scan, selection)
    pca_ratio = scan["pca_ratio"].values
    pca_eval = scan["pca_eval_distortion"].values if "pca_eval_distortion" in scan else None
    table = spectra_table(t, rho, dn, pca_ratio, pca_eval, rho_min=rho_min)
    for name, column in mode_columns(scan, rho_min).items():  # appended after the others
        table[name] = column
    flags = under_equilibrated_ranks(t, rho, dn, scan_point_flags(scan), rho_min)
    table["under_equilibrated"] = flags
    # each rank's KL rate (nats) at the point that sets its Dn*_k (docs/science.md §9.1)
    table["rate"] = (
        selected_values(dn, ranked_values(scan, "kl_rate")) if "kl_rate" in scan else np.nan
    )
    # lazy: scipy (scipy.stats); the CLI imports this module at start, a training job too
    from collapse_spectroscopy.analysis.seed_intervals import with_intervals

    # confidence intervals across seeds (NaN with one seed), after every other column
    table, seed_block = with_intervals(table, scan, t, rho, dn, rho_min)
    summary = run_summary(scan, table, t, rho, dn, rho_min, tolerances, seed_block)
    summary["selection"] = selection.block()
    if reference is not None:
        summary["rate_distortion"] = rate_distortion_block(scan, reference)
    return table, summary


def concentration_block(best, rho, pca_ratio, pca_eval, tolerances, rho_min) -> dict:
    """The utility concentration (:func:`.concentration.utility_concentration`) of the
    levels ``best`` (``Dn*_k``, ``k = 0..K``), counted within the ranks active in ``rho``
    ``(P, K)``, against the run's PCA references ``pca_ratio`` and ``pca_eval``."""
    return utility_concentration(
        best,
        utilities(best),
        pca_truncation_distortion(pca_ratio),
        pca_ratio,
        tolerances,
        active=last_active_rank(rho, rho_min),
        pca_eval_distortion=pca_eval,
    )


def run_summary(scan, table, t, rho, dn, rho_min, tolerances, seed_block) -> dict:
    """The JSON summary of a run (docs/science.md §4.6) from its spectra table and the
    scan's arrays (``dn`` the levels :func:`summarize` reads)."""
    best = best_distortions(dn)
    pca_ratio = scan["pca_ratio"].values
    pca_eval = scan["pca_eval_distortion"].values if "pca_eval_distortion" in scan else None
    flags = table["under_equilibrated"].to_numpy(dtype=bool)
    fitted = table.dropna(subset=["collapse_threshold"])
    fitted = fitted[fitted["pca_ratio"] > PCA_FLOOR]
    ratio = fitted["collapse_threshold"] / fitted["pca_ratio"]
    util = table[(table["pca_ratio"] > PCA_FLOOR) & (table["utility"] > 0)]
    stop = scan["stop_reason"].values.ravel() if "stop_reason" in scan else []
    summary = {
        "scan_points": int(t.size),
        "temperatures": int(np.unique(t).size),
        "T_range": [float(t.min()), float(t.max())],
        "seeds": [int(s) for s in scan["seed"].values],
        "latents": int(scan.sizes["latent"]),
        "features": int(scan.sizes["mode"]),
        "rho_min": rho_min,
        "modes_with_threshold": int(table["collapse_threshold"].notna().sum()),
        "max_active_latents": int((rho > rho_min).sum(axis=1).max()),
        "threshold_over_pca": {
            int(r): float(v) for r, v in zip(fitted["rank"], ratio, strict=True)
        },
        "utility_over_pca": {
            int(r): float(u / p)
            for r, u, p in zip(util["rank"], util["utility"], util["pca_ratio"], strict=True)
        },
        "utility_concentration": concentration_block(
            best, rho, pca_ratio, pca_eval, tolerances, rho_min
        ),
        "stop_reasons": {
            str(k): int(v)
            for k, v in zip(
                *np.unique([s for s in stop if isinstance(s, str)], return_counts=True), strict=True
            )
        },
        "training_cost": training_cost(scan),
        "under_equilibrated": {
            **equilibration_summary(scan),
            "ranks": [int(r) for r in table.loc[flags, "rank"]],
            "rank_rule": RANK_RULE,
        },
        "seed_intervals": seed_block,
    }
    # does the order by rho rank the utilities too? (docs/science.md §9)
    summary["rank_order"] = rank_order(utilities(best), last_active_rank(rho, rho_min))
    if seed_block["n_seeds"] >= 2:  # n(eps) of each seed, and its range over the seeds
        per_seed_best = {
            seed: values["best_distortion"] for seed, values in seed_block["per_seed"].items()
        }
        summary["utility_concentration"].update(
            per_seed_variables(per_seed_best, tolerances, last_active_rank(rho, rho_min))
        )
    return summary
