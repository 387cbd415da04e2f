"""The collapse, utility and PCA spectra of a temperature scan (docs/science.md §4).

Pure functions on arrays; :func:`spectra_table` assembles the table the workflow writes
as ``spectra.csv`` (one row per ranked mode; the column names are a contract).

- **Collapse spectrum**: for ranked mode ``k`` the fixed-exponent law
  ``rho_k(T) = 1 - T/T_k`` fitted by least squares on the points with ``rho_k > rho_min``
  (seeds pooled): ``1/T_k = sum T_i (1 - rho_i) / sum T_i^2``. Whether a rank has a
  threshold at all is one rule, :func:`rank_threshold`, used by the table, its
  ``fit_note``, the per-seed intervals and (through the table) the figures. A free-exponent fit
  ``rho = 1 - (T/T_k)^gamma`` is a diagnostic; the model-free crossing threshold, where the
  seed-mean ``rho_k`` falls through ``rho_min`` (linear in ``log T``), assumes no law.
- **Utility spectrum**: ``Dn*_k`` is the best (lowest) truncated distortion over the scan,
  ``u_k = Dn*_{k-1} - Dn*_k`` with ``Dn*_0 = 1``, in float64.
- **PCA spectrum**: eigenvalues of the training covariance, ``lambda_k / V``, and the PCA
  truncation distortion ``1 - sum_{i<=k} lambda_i / V``; also the split-matched PCA
  utility on the evaluation split (train principal components applied to it).

:func:`summarize` adds the run's summary, with the scan points that ended before the
protocol's early-stopping test passed (:mod:`.stopping`), and flags each rank whose
threshold or utility depends on them (:func:`under_equilibrated_ranks`). The default fit cut
:data:`RHO_MIN` is the schema's ``spectra.rho_min`` (:mod:`.settings`, the one home of
every default).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import equilibrium
from .concentration import TOLERANCES, utility_concentration
from .settings import section_defaults
from .stopping import equilibration_summary, scan_under_equilibrated

RHO_MIN = section_defaults("spectra")["rho_min"]  # the fit cut of a run that names none
MIN_FIT_POINTS = 2  # the fixed-exponent fit has one parameter: two points make it a fit
MIN_FREE_FIT_POINTS = 3  # the free-exponent fit has two

# A rank is flagged under-equilibrated when leaving the under-equilibrated scan points out
# moves its threshold or its utility by more than this fraction (under_equilibrated_ranks).
# 5 % is the accuracy docs/science.md §7 asks of a reproduced T_k (the oracle test's bound;
# u_k gets 3 %), and it is above the training noise of the values themselves: the 95 %
# seed intervals of §4.8 measured 0.6-1.0 % of T_k and 0.3-4.6 % of u_k. A smaller shift is
# inside what training noise already does and cannot change whether a rank reproduces
# lambda_k/V; a larger one can, and then comes from the flagged points.
EQUILIBRATION_TOLERANCE = 0.05

# A PCA ratio below this is float rounding of an exactly dependent feature
# (docs/science.md §7b), not a mode: summaries leave it out instead of dividing by it.
# In the same units (a fraction of V), a smaller move of a utility or threshold is
# rounding too, not a move (under_equilibrated_ranks: a spare latent's u_k ~ 1e-16).
PCA_FLOOR = 1e-12

RANK_RULE = (
    "a rank is under-equilibrated when leaving the under-equilibrated points out moves its "
    f"collapse_threshold or utility by more than {100 * EQUILIBRATION_TOLERANCE:g} % "
    f"(and {PCA_FLOOR:g}), or makes one appear or vanish"
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


@dataclass
class ThresholdFit:
    """A collapse-threshold fit of one ranked mode."""

    threshold: float  # T_k (NaN when the fit could not be made)
    points: int  # scan points with rho > rho_min
    note: str = ""  # why the threshold is NaN, empty when it is not


def fixed_exponent_threshold(
    temperature, rho, rho_min: float = RHO_MIN, min_points: int = MIN_FIT_POINTS
) -> ThresholdFit:
    """Least-squares ``T_k`` of ``rho = 1 - T/T_k`` over the points with ``rho > rho_min``.

    Minimizing ``sum (1 - rho_i - T_i / T_k)^2`` over ``1/T_k`` gives the closed form
    ``1/T_k = sum T_i (1 - rho_i) / sum T_i^2``.
    """
    t, r = _fit_points(temperature, rho, rho_min)
    if t.size < min_points:
        return ThresholdFit(
            np.nan, int(t.size), f"{t.size} point(s) with rho > {rho_min:g}, need {min_points}"
        )
    inv = np.sum(t * (1.0 - r)) / np.sum(t * t)
    if not inv > 0:
        return ThresholdFit(np.nan, int(t.size), "rho does not fall with T (1/T_k <= 0)")
    return ThresholdFit(float(1.0 / inv), int(t.size))


def rank_threshold(temperature, rho, utility, rho_min: float = RHO_MIN) -> ThresholdFit:
    """The collapse threshold ``T_k`` of ranked mode ``k``, by the one rule for when a rank
    has one (docs/science.md §4.1): the spectra table, its ``fit_note``, the per-seed
    intervals (:mod:`.seeds`), the per-rank under-equilibrated flag and, through the
    table, every figure use this function.

    A threshold exists when (1) the fixed-exponent fit :func:`fixed_exponent_threshold`
    exists: at least :data:`MIN_FIT_POINTS` scan points with ``rho_k > rho_min`` and
    ``1/T_k > 0``; and (2) the rank's utility ``u_k`` (``utility``, docs/science.md §4.2) is
    positive. A latent whose ``rho`` exceeds ``rho_min`` while keeping it never lowers the
    best distortion carries no mode's signal (a spare latent's noise, or float rounding of
    an exactly dependent feature, §7b), so its "threshold" is not one of the duality's
    ``T_k = u_k`` (§4.5): the note says why it is NaN instead.
    """
    fit = fixed_exponent_threshold(temperature, rho, rho_min)
    if np.isfinite(fit.threshold) and not utility > 0:
        note = f"utility {utility:.3g} is not positive: the latent removes no distortion"
        return ThresholdFit(np.nan, fit.points, note)
    return fit


def rank_values(temperature, rho, truncated, rho_min: float = RHO_MIN):
    """Each rank's threshold fit (:func:`rank_threshold`) and utility ``u_k`` from the scan
    points given: ``temperature`` (P,), ``rho`` (P, K), ``truncated`` (P, K+1).
    Returns ``(fits, utility)``; with no point, every fit is NaN and ``u_k`` is NaN."""
    t = np.asarray(temperature, dtype=np.float64)
    rho = np.asarray(rho, dtype=np.float64)
    K = rho.shape[1]
    if t.size == 0:
        return [ThresholdFit(np.nan, 0, "no scan point") for _ in range(K)], np.full(K, np.nan)
    utility = utilities(best_distortions(truncated))
    fits = [rank_threshold(t, rho[:, k], utility[k], rho_min) for k in range(K)]
    return fits, utility


def under_equilibrated_ranks(
    temperature,
    rho,
    truncated,
    flagged,
    rho_min: float = RHO_MIN,
    tolerance: float = EQUILIBRATION_TOLERANCE,
) -> np.ndarray:
    """Which ranks' values depend on under-equilibrated scan points (docs/science.md §4.1).

    ``flagged`` (P,) marks the points of :func:`.stopping.under_equilibrated`. Each rank's
    threshold ``T_k`` (:func:`rank_threshold`) and utility ``u_k`` are computed twice, from
    all points and from the unflagged ones; the rank is flagged when either moves by more
    than ``tolerance`` of its value (:data:`EQUILIBRATION_TOLERANCE`, argued there) and
    more than float rounding (:data:`PCA_FLOOR`), or exists one way and not the other (a
    threshold that needs a flagged point, a utility with every point flagged). Two
    missing thresholds are no move. A scan without flagged
    points flags no rank, and neither does a flagged point that no value uses (a fit
    leaves out its points with ``rho_k <= rho_min``, ``Dn*_k`` its non-best points).
    """
    t = np.asarray(temperature, dtype=np.float64)
    rho = np.asarray(rho, dtype=np.float64)
    dn = np.asarray(truncated, dtype=np.float64)
    flagged = np.asarray(flagged, dtype=bool)
    if not flagged.any():
        return np.zeros(rho.shape[1], dtype=bool)
    fits, util = rank_values(t, rho, dn, rho_min)
    kept_fits, kept_util = rank_values(t[~flagged], rho[~flagged], dn[~flagged], rho_min)
    thr = np.array([f.threshold for f in fits])
    kept_thr = np.array([f.threshold for f in kept_fits])
    return _moved(thr, kept_thr, tolerance) | _moved(util, kept_util, tolerance)


def _moved(value, kept, tolerance, floor: float = PCA_FLOOR) -> np.ndarray:
    """Does ``kept`` differ from ``value`` by more than ``tolerance`` of ``|value|`` and
    more than ``floor``, or is exactly one of them NaN?"""
    value, kept = np.asarray(value, np.float64), np.asarray(kept, np.float64)
    has, has_kept = np.isfinite(value), np.isfinite(kept)
    with np.errstate(invalid="ignore"):
        far = np.abs(kept - value) > np.maximum(tolerance * np.abs(value), floor)
    return (has != has_kept) | (has & has_kept & far)


def free_exponent_fit(
    temperature, rho, rho_min: float = RHO_MIN, min_points: int = MIN_FREE_FIT_POINTS
) -> tuple[float, float, str]:
    """Diagnostic fit of ``rho = 1 - (T/T_k)^gamma``: returns ``(T_k, gamma, note)``.

    Least squares in ``rho`` over the points with ``rho > rho_min``, parameterized by
    ``log T_k`` and ``gamma``, started from the fixed-exponent fit with ``gamma = 1``.
    """
    t, r = _fit_points(temperature, rho, rho_min)
    if t.size < min_points:
        return np.nan, np.nan, f"{t.size} point(s) with rho > {rho_min:g}, need {min_points}"
    start = fixed_exponent_threshold(t, r, rho_min=-np.inf, min_points=1).threshold
    if not np.isfinite(start):
        start = float(np.max(t))

    def model(logt, log_tk, gamma):
        return 1.0 - np.exp(gamma * (logt - log_tk))

    from scipy.optimize import OptimizeWarning, curve_fit  # here: a training job never fits

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            (log_tk, gamma), _ = curve_fit(
                model, np.log(t), r, p0=(np.log(start), 1.0), maxfev=5000
            )
    except (RuntimeError, ValueError) as exc:
        return np.nan, np.nan, f"free-exponent fit failed: {exc}"
    return float(np.exp(log_tk)), float(gamma), ""


def crossing_threshold(temperature, rho, rho_min: float = RHO_MIN) -> ThresholdFit:
    """Model-free ``T_k``: where ranked mode ``k`` falls through ``rho_min`` (docs/science.md §9).

    Seeds are pooled by averaging ``rho_k`` over the points at each temperature (NaN points
    left out), giving one curve ``rho_k(T)``. The threshold is its **highest-T** downward
    crossing: between the last temperature with ``rho_k > rho_min`` (``T_a``) and the next
    scan temperature (``T_b``), ``rho`` is interpolated linearly in ``log T``:

        log T* = log T_a + (rho_a - rho_min) / (rho_a - rho_b) * (log T_b - log T_a)

    Highest, because above a threshold the mode stays collapsed at every hotter scan point;
    a colder crossing followed by a re-activation is not one. NaN, with a note, when
    ``rho_k`` is never above ``rho_min`` or still above it at the hottest scan point;
    ``points`` counts the temperatures with ``rho_k > rho_min``, and the note says when the
    curve crosses more than once. Under the mean-field law the crossing is
    ``(1 - rho_min) T_k``, not ``T_k``; it is known to within one scan step in ``log T``.
    """
    t = np.asarray(temperature, dtype=np.float64).ravel()
    r = np.asarray(rho, dtype=np.float64).ravel()
    keep = np.isfinite(t) & np.isfinite(r)
    temps, where = np.unique(t[keep], return_inverse=True)
    if temps.size == 0:
        return ThresholdFit(np.nan, 0, "no scan point with a finite rho")
    mean = np.bincount(where, weights=r[keep]) / np.bincount(where)
    above = mean > rho_min
    points = int(above.sum())
    if not above.any():
        return ThresholdFit(np.nan, 0, f"rho never above {rho_min:g} in the scan")
    a = int(np.flatnonzero(above)[-1])
    if a == temps.size - 1:
        return ThresholdFit(
            np.nan, points, f"rho still above {rho_min:g} at the highest T ({temps[a]:.4g})"
        )
    la, lb = np.log(temps[a]), np.log(temps[a + 1])
    frac = (mean[a] - rho_min) / (mean[a] - mean[a + 1])
    downs = int(np.sum(above[:-1] & ~above[1:]))
    note = f"rho crosses {rho_min:g} {downs} times; the highest-T crossing" if downs > 1 else ""
    return ThresholdFit(float(np.exp(la + frac * (lb - la))), points, note)


def _fit_points(temperature, rho, rho_min):
    t = np.asarray(temperature, dtype=np.float64).ravel()
    r = np.asarray(rho, dtype=np.float64).ravel()
    keep = np.isfinite(t) & np.isfinite(r) & (r > rho_min)
    return t[keep], r[keep]


def best_distortions(truncated) -> np.ndarray:
    """``Dn*_k``: the lowest ``Dn_k`` over all scan points (any leading dims), ``k = 0..K``.

    ``Dn*_0`` is 1 by definition (docs/science.md §4), whatever the split's own ``Dn_0``.
    """
    dn = np.asarray(truncated, dtype=np.float64)
    best = np.nanmin(dn.reshape(-1, dn.shape[-1]), axis=0)
    best[0] = 1.0
    return best


def utilities(best) -> np.ndarray:
    """``u_k = Dn*_{k-1} - Dn*_k``, ``k = 1..K`` (float64), from ``Dn*_k``, ``k = 0..K``.

    Written as the equation's difference, not ``-np.diff``: the two round alike, but where
    two levels are equal this gives ``0`` and ``-np.diff`` gives ``-0`` (``"-0"`` in the CSV).
    """
    b = np.asarray(best, dtype=np.float64)
    return b[:-1] - b[1:]


def pca_spectrum(x_train, basis=None) -> np.ndarray:
    """Normalized eigenvalues ``lambda_k / V`` of the training covariance, descending.

    float64 throughout (an exactly dependent feature has eigenvalue ~1e-16, docs/science.md §7b);
    population covariance, the convention of ``V`` (the total variance of the training split).
    ``basis``: :func:`pca_basis` of ``x_train`` if already computed (a job computes it once).
    """
    lam, _ = basis if basis is not None else _pca(x_train)
    return lam / lam.sum()


def pca_basis(x_train) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues ``lambda_k`` (descending, clipped at 0) and unit eigenvectors ``e_k``
    (columns, same order) of the training covariance, float64 (docs/science.md §4.4)."""
    return _pca(x_train)


def _pca(x_train):
    x = np.asarray(x_train, dtype=np.float64)
    cov = np.cov(x, rowvar=False, bias=True)
    lam, vecs = np.linalg.eigh(np.atleast_2d(cov))
    order = np.argsort(lam)[::-1]
    return np.clip(lam[order], 0.0, None), vecs[:, order]


def pca_truncation_distortion(ratio) -> np.ndarray:
    """``1 - sum_{i<=k} lambda_i / V`` for ``k = 0..d`` (length d + 1)."""
    r = np.asarray(ratio, dtype=np.float64)
    return 1.0 - np.concatenate([[0.0], np.cumsum(r)])


def pca_eval_distortion(x_train, x_eval, basis=None) -> np.ndarray:
    """Split-matched PCA reference: ``Dn_k`` on ``x_eval`` of the train-PCA truncation.

    Train principal components (and train mean) applied to the evaluation split,
    normalized by ``E_eval ||x - xbar_train||^2`` as the VAE's truncated distortions are.
    Returns ``k = 0..d``. ``basis``: :func:`pca_basis` of ``x_train``, if already computed.
    """
    _, vecs = basis if basis is not None else _pca(x_train)
    mean = np.asarray(x_train, dtype=np.float64).mean(axis=0)
    xe = np.asarray(x_eval, dtype=np.float64) - mean
    proj2 = np.square(xe @ vecs).mean(axis=0)  # variance along each train PC
    total = np.square(xe).sum(axis=1).mean()
    return 1.0 - np.concatenate([[0.0], np.cumsum(proj2)]) / total


def pca_eval_ratio(x_train, x_eval, basis=None) -> np.ndarray:
    """The evaluation split along the training PCs: ``E_eval (e_k.(x - xbar_train))^2 / V``.

    ``V`` is the training total variance, so this is the evaluation split's counterpart of
    ``lambda_k / V``, mean shift included; its ratio to ``lambda_k / V`` sets the training
    equilibrium's ``rho`` on the evaluation split (docs/science.md §4.7). Length ``d``.
    ``basis``: :func:`pca_basis` of ``x_train``, if already computed.
    """
    lam, vecs = basis if basis is not None else _pca(x_train)
    mean = np.asarray(x_train, dtype=np.float64).mean(axis=0)
    xe = np.asarray(x_eval, dtype=np.float64) - mean
    return np.square(xe @ vecs).mean(axis=0) / lam.sum()


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


def scan_point_flags(scan) -> np.ndarray:
    """:func:`.stopping.scan_under_equilibrated` of each point :func:`scan_arrays` keeps,
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


def summarize(scan, rho_min: float = RHO_MIN, tolerances=TOLERANCES):
    """The spectra table of a gathered scan, and a JSON-ready summary of the run.

    ``tolerances`` are the distortion levels ``eps`` of the utility concentration
    (:func:`.concentration.utility_concentration`).
    """
    t, rho, dn = scan_arrays(scan)
    pca_ratio = scan["pca_ratio"].values
    pca_eval = scan["pca_eval_distortion"].values if "pca_eval_distortion" in scan else None
    table = spectra_table(t, rho, dn, pca_ratio, pca_eval, rho_min=rho_min)
    for name, column in mode_columns(scan, rho_min).items():  # appended after the others
        table[name] = column
    flags = under_equilibrated_ranks(t, rho, dn, scan_point_flags(scan), rho_min)
    table["under_equilibrated"] = flags
    from .seeds import with_intervals  # seeds builds on this module's fits

    # confidence intervals across seeds (NaN with one seed), after every other column
    table, seed_block = with_intervals(table, scan, t, rho, dn, rho_min)
    best = best_distortions(dn)
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
        "utility_concentration": utility_concentration(
            best, utilities(best), pca_truncation_distortion(pca_ratio), pca_ratio, tolerances
        ),
        "stop_reasons": {
            str(k): int(v)
            for k, v in zip(
                *np.unique([s for s in stop if isinstance(s, str)], return_counts=True), strict=True
            )
        },
        "under_equilibrated": {
            **equilibration_summary(scan),
            "ranks": [int(r) for r in table.loc[flags, "rank"]],
            "rank_rule": RANK_RULE,
        },
        "seed_intervals": seed_block,
    }
    return table, summary
