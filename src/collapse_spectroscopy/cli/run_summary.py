"""What the workflow prints when it ends well (issue 20, item 4): a few lines per run it
built, read from the run's ``summary.json`` (docs/science.md §4), so that after hundreds of
lines of Snakemake's own output the user sees where the results are, which figure to open
first and whether the numbers can be trusted."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

#: The figure that shows the paper's claim at a glance (docs/science.md §6).
FIRST_FIGURE = "figures/fig3_duality.png"


def _spread(ratios: dict) -> str:
    """'within x %' of the largest deviation of ``value / pca`` from 1 over the ranks, with
    the rank it comes from and the median deviation: one tail rank far off (an
    under-equilibrated or nearly degenerate mode, docs/science.md §7b) should not read as
    the whole spectrum being off."""
    values = {int(k): v for k, v in ratios.items() if v is not None and math.isfinite(float(v))}
    if not values:
        return "none to compare"
    deviation = {k: abs(v - 1.0) for k, v in values.items()}
    worst = max(deviation, key=deviation.get)
    text = f"within {100 * deviation[worst]:.1f} % (ranks 1-{max(values)}"
    if len(values) > 2:
        text += f"; worst rank {worst}, median {100 * statistics.median(deviation.values()):.1f} %"
    return text + ")"


def _variables_line(block: dict, label: str = "variables needed n(eps)") -> str | None:
    """n(eps), the variables needed at each tolerance (docs/science.md §9), beside PCA's on
    the evaluation split (the split the VAE's levels are measured on) and, with several
    seeds, the range over seeds; '-' where a tolerance is never reached. None for a
    summary without the block."""
    eps, vae = block.get("eps"), block.get("n_vae")
    if not eps or not vae:
        return None
    pca = block.get("n_pca_eval") or block.get("n_pca") or []
    seeds = block.get("n_vae_seed_range") or []

    def count(n) -> str:
        return "-" if n is None else str(n)

    cells = []
    for i, n in enumerate(vae):
        cell = count(n)
        if i < len(seeds):
            if seeds[i] is None:
                cell += " (a seed: -)"
            elif seeds[i][0] != seeds[i][1]:
                cell += f" (seeds {seeds[i][0]}-{seeds[i][1]})"
        cells.append(cell)
    line = f"  {label} at eps = {' / '.join(f'{e:g}' for e in eps)}: "
    line += " / ".join(cells)
    if pca:
        line += f" (PCA: {' / '.join(count(n) for n in pca)})"
    return line + ("; - = not reached" if None in [*vae, *pca, *seeds] else "")


def summary_lines(results: str | Path, run: str) -> list[str]:
    """The lines for run ``run`` whose outputs are in ``results`` (``results/RUN``)."""
    folder = Path(results)
    path = folder / "summary.json"
    try:
        s = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return [f"{run}: no readable summary ({path}: {exc})"]
    under = s.get("under_equilibrated", {})
    lines = [
        f"{run}: results in {folder}/ -- open {folder / FIRST_FIGURE} first",
        f"  {s.get('scan_points', '?')} scan points, T from {s['T_range'][0]:g} to "
        f"{s['T_range'][1]:g}; {s.get('modes_with_threshold', 0)} modes with a threshold",
        f"  thresholds / PCA ratios: {_spread(s.get('threshold_over_pca', {}))}; "
        f"utilities / PCA ratios: {_spread(s.get('utility_over_pca', {}))}",
    ]
    count, of = under.get("count", 0), under.get("of", s.get("scan_points", "?"))
    flagged = under.get("ranks")
    warn = f"{count} of {of} scan points under-equilibrated"
    if count:
        warn += " (they stopped at training.max_updates: see logs/spectra.log"
        warn += f"; ranks relying on them: {flagged})" if flagged else ")"
    lines.append("  " + warn)
    needed = _variables_line(s.get("utility_concentration") or {})
    if needed:
        lines.append(needed)
    both = (s.get("hysteresis") or {}).get("both_branches") or {}
    needed = _variables_line(both, "over both sweep directions, n(eps)")
    if needed:
        cooling = [k for k, branch in both.get("branch_of_best", {}).items() if branch == "cooling"]
        lines.append(
            needed + (f"; ranks from the cooling chains: {', '.join(cooling)}" if cooling else "")
        )
    cost = s.get("training_cost") or {}
    if cost.get("points"):
        line = f"  training: {cost['updates']:,} updates over {cost['points']} points"
        spread = cost.get("updates_per_point") or {}
        if spread:
            line += f" ({spread['min']:,} to {spread['max']:,} per point)"
        lines.append(line)
    return lines


def built_runs(results_root: str | Path, runs, since: float) -> list[str]:
    """The runs among ``runs`` whose ``summary.json`` was written at or after ``since``
    (a time.time()): the ones this invocation of the workflow built."""
    out = []
    for run in runs:
        path = Path(results_root) / run / "summary.json"
        try:
            if path.stat().st_mtime >= since:
                out.append(run)
        except OSError:
            continue
    return out
