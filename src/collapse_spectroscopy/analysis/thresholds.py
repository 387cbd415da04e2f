"""Per-rank values of a scan: collapse thresholds and utilities (docs/science.md §4).

- **Collapse spectrum**: for ranked mode ``k`` the fixed-exponent law
  ``rho_k(T) = 1 - T/T_k`` fitted by least squares on the points with ``rho_k > rho_min``
  (seeds pooled): ``1/T_k = sum T_i (1 - rho_i) / sum T_i^2``. Whether a rank has a
  threshold at all is one rule, :func:`rank_threshold`, used by the table, its
  ``fit_note``, the per-seed intervals and (through the table) the figures. A
  free-exponent fit ``rho = 1 - (T/T_k)^gamma`` is a diagnostic; the model-free crossing
  threshold, where the seed-mean ``rho_k`` falls through ``rho_min`` (linear in
  ``log T``), assumes no law.
- **Utility spectrum**: ``Dn*_k`` is the best (lowest) truncated distortion over the scan,
  ``u_k = Dn*_{k-1} - Dn*_k`` with ``Dn*_0 = 1``, in float64.
- **Under-equilibrated ranks**: a rank whose threshold or utility moves by more than
  :data:`EQUILIBRATION_TOLERANCE` when the scan points that ended before the protocol's
  early-stopping test passed are left out (:func:`under_equilibrated_ranks`).

The default fit cut :data:`RHO_MIN` is the schema's ``spectra.rho_min``
(:mod:`collapse_spectroscopy.config.settings`, the one home of every default).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from collapse_spectroscopy.analysis.pca import PCA_FLOOR
from collapse_spectroscopy.config.settings import section_defaults

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

RANK_RULE = (
    "a rank is under-equilibrated when leaving the under-equilibrated points out moves its "
    f"collapse_threshold or utility by more than {100 * EQUILIBRATION_TOLERANCE:g} % "
    f"(and {PCA_FLOOR:g}), or makes one appear or vanish"
)


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
    intervals (:mod:`.seed_intervals`), the per-rank under-equilibrated flag and, through the
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

    ``flagged`` (P,) marks the points of :func:`.equilibration.under_equilibrated`. Each rank's
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
    temps, mean = seed_mean_curve(temperature, rho)
    if temps.size == 0:
        return ThresholdFit(np.nan, 0, "no scan point with a finite rho")
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


def seed_mean_curve(temperature, rho) -> tuple[np.ndarray, np.ndarray]:
    """The scan temperatures (ascending, each once) and the mean of ``rho`` over the points
    at each (seeds pooled, NaN points left out): the curve :func:`crossing_threshold` reads."""
    t = np.asarray(temperature, dtype=np.float64).ravel()
    r = np.asarray(rho, dtype=np.float64).ravel()
    keep = np.isfinite(t) & np.isfinite(r)
    temps, where = np.unique(t[keep], return_inverse=True)
    if temps.size == 0:
        return temps, temps
    return temps, np.bincount(where, weights=r[keep]) / np.bincount(where)


def crossing_bracket(temperature, rho, rho_min: float = RHO_MIN) -> tuple[float, float] | None:
    """The two adjacent scan temperatures ``(T_a, T_b)`` between which
    :func:`crossing_threshold` places the crossing (docs/science.md §4.9); None where it
    has none."""
    if not np.isfinite(crossing_threshold(temperature, rho, rho_min).threshold):
        return None
    temps, mean = seed_mean_curve(temperature, rho)
    a = int(np.flatnonzero(mean > rho_min)[-1])
    return float(temps[a]), float(temps[a + 1])


def _fit_points(temperature, rho, rho_min):
    t = np.asarray(temperature, dtype=np.float64).ravel()
    r = np.asarray(rho, dtype=np.float64).ravel()
    keep = np.isfinite(t) & np.isfinite(r) & (r > rho_min)
    return t[keep], r[keep]


def best_distortions(truncated) -> np.ndarray:
    """``Dn*_k``: the lowest ``Dn_k`` over the scan points of ``truncated`` (P, K+1),
    ``k = 0..K``.

    ``Dn*_0`` is 1 by definition (docs/science.md §4), whatever the split's own ``Dn_0``.
    Paired levels, ``(P, K+1, 2)``, choose on one split and report on another
    (``spectra.select_on: val``, docs/science.md §9): ``[..., 0]`` the levels reported,
    ``[..., 1]`` the levels that choose each rank's point (:func:`best_points`).
    """
    dn = np.asarray(truncated, dtype=np.float64)
    if dn.ndim == 3:
        chosen = best_points(dn)
        k = np.arange(dn.shape[1])
        best = np.where(chosen >= 0, dn[np.maximum(chosen, 0), k, 0], np.nan)
    else:
        best = np.nanmin(dn.reshape(-1, dn.shape[-1]), axis=0)
    best[0] = 1.0
    return best


def best_points(paired) -> np.ndarray:
    """For paired levels ``(P, K+1, 2)`` (:func:`best_distortions`), the point chosen for
    each ``k``: the lowest choosing level among the points that hold both levels, the
    first on a tie; -1 where no point holds both."""
    dn = np.asarray(paired, dtype=np.float64)
    ok = np.isfinite(dn[..., 0]) & np.isfinite(dn[..., 1])
    chosen = np.argmin(np.where(ok, dn[..., 1], np.inf), axis=0)
    return np.where(ok.any(axis=0), chosen, -1)


def selected_values(truncated, values) -> np.ndarray:
    """Each rank's value at the scan point that sets its ``Dn*_k``, ``k = 1..K``.

    ``truncated`` (P, K+1), or paired (P, K+1, 2), and ``values`` (P, K), both over the
    same flattened points: ``values[p, k-1]`` at the point ``p`` that
    :func:`best_distortions` chooses (the first on a tie). The spectra's ``rate`` column
    is the ranked KL rate read this way: what the rank-``k`` latent carries where it is
    used best.
    """
    dn = np.asarray(truncated, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if dn.ndim == 3:  # paired levels: the point chosen on the choosing split
        chosen = best_points(dn)[1:]
    else:
        finite = np.isfinite(dn[:, 1:])
        chosen = np.where(
            finite.any(axis=0), np.argmin(np.where(finite, dn[:, 1:], np.inf), axis=0), -1
        )
    out = np.full(chosen.size, np.nan)
    has = chosen >= 0
    out[has] = v[chosen[has], np.flatnonzero(has)]
    return out


def utilities(best) -> np.ndarray:
    """``u_k = Dn*_{k-1} - Dn*_k``, ``k = 1..K`` (float64), from ``Dn*_k``, ``k = 0..K``.

    Written as the equation's difference, not ``-np.diff``: the two round alike, but where
    two levels are equal this gives ``0`` and ``-np.diff`` gives ``-0`` (``"-0"`` in the CSV).
    """
    b = np.asarray(best, dtype=np.float64)
    return b[:-1] - b[1:]
