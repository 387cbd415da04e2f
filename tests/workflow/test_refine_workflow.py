"""Adaptive refinement through the real workflow (scan.refine; docs/science.md §4.9).

Each round is a Snakemake checkpoint: these runs show that it adds points, that they
train by the run's ordinary rules and are gathered into the spectra, that a finished run
has nothing left to do, that a run killed in round 2 finishes without retraining round 1,
and that with continuation starts an added point starts from its chain's nearest earlier
point. The budgets are tiny: what is checked is the bookkeeping, not the thresholds (the
accuracy refinement buys is tests/analysis/test_refine.py's, on the analytic curves).
"""

import json
import re
import subprocess

import pandas as pd
import pytest

from collapse_spectroscopy.store import scanfile
from workflow_helpers import ROOT, SNAKEMAKE, kill_when_paused, planned_jobs, tiny_config, workdir

GRID = [0.01, 0.06, 0.5]  # crossings of the synthetic spectrum in both grid steps


def snakemake(wd, *args, **kwargs):
    cmd = [*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(wd), "--cores", "2", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    assert proc.returncode == 0, f"snakemake {' '.join(args)}:\n{proc.stderr[-4000:]}"
    return proc.stdout + proc.stderr


def refined_config(rounds=2, **scan):
    config = tiny_config(GRID, max_updates=600, patience=10**6, checkpoint_every=100)
    config["runs"]["tiny"]["scan"].update(refine={"rounds": rounds, "points_per_mode": 1}, **scan)
    return config


def added(res, i) -> list[float]:
    return [
        a["T"] for a in json.loads((res / "scan" / f"refine_round_{i}.json").read_text())["added"]
    ]


def point(res, t, seed=0, suffix=".nc"):
    return res / "scan" / f"T={t!r}" / f"seed={seed}{suffix}"


@pytest.mark.slow
def test_a_run_killed_in_round_2_finishes_without_retraining_round_1(tmp_path):
    """The grid and round 1 run to the end (the target: round 2's record); then the whole
    workflow runs with the test-only pause (checkpoint.PAUSE_ENV), so that round 2's
    training jobs, the only ones left, stop at update 300 after their checkpoint at 200
    and wait, and it is killed once its job slots hold them: a known state, not a timer.
    The rerun resumes them, keeps every earlier point, gathers all points into the
    spectra, and then has nothing left to do."""
    wd = workdir(tmp_path, refined_config())
    res = wd / "results" / "tiny"
    snakemake(wd, "results/tiny/scan/refine_round_2.json")
    first, second = added(res, 1), added(res, 2)
    assert first and second and not set(first) & set(second)
    assert not set(first + second) & set(GRID)
    earlier = {p: p.stat().st_mtime_ns for p in map(lambda t: point(res, t), GRID + first)}
    assert not any(point(res, t).exists() for t in second)

    waiting = min(2, len(second))  # --cores 2: at most two jobs at a time
    paused = kill_when_paused(wd, res, pause_at=300, count=waiting)
    killed = {float(p.parent.name.removeprefix("T=")) for p in paused}
    assert killed <= set(second)  # round 2's points, and no earlier one, were training
    for marker in paused:
        marker.unlink()

    snakemake(wd, "--unlock")
    snakemake(wd)
    for p, mtime in earlier.items():
        assert p.stat().st_mtime_ns == mtime, f"{p} was retrained"
    for t in killed:
        log = (res / "logs" / "train" / f"T={t!r}_seed=0.log").read_text()
        assert "resumed from a checkpoint at update 200" in log, log
    assert added(res, 1) == first and added(res, 2) == second  # the records were kept

    # every point is in the gathered scan and its spectra; the summary counts the rounds
    everything = sorted(GRID + first + second)
    assert scanfile.read(res / "scan.nc")["T"].values.tolist() == everything
    summary = json.loads((res / "summary.json").read_text())
    assert summary["scan_points"] == len(everything)
    rounds = summary["refinement"]["rounds"]
    assert [(r["round"], r["added"], r["T"]) for r in rounds] == [
        (1, len(first), first),
        (2, len(second), second),
    ]
    # each rank with a crossing has its final bracket; its crossing threshold lies in it
    table = pd.read_csv(res / "spectra.csv")
    for rank, bracket in summary["refinement"]["bracket"].items():
        crossing = table.loc[table["rank"] == int(rank), "crossing_threshold"].item()
        assert bracket["low"] < crossing <= bracket["high"]
        assert bracket["ratio"] == pytest.approx(bracket["high"] / bracket["low"])
    assert planned_jobs(wd) == {}  # nothing to do after a finished refined run


@pytest.mark.slow
def test_continuation_starts_an_added_point_from_its_nearest_colder_point(tmp_path):
    """scan.start continuation (warming), two seeds: each seed's added point is trained by a
    job of its own given the .pt of that seed's nearest colder point trained before its
    round (--chain --start-from, whose loading tests/jobs/test_continuation.py checks), as
    Snakemake's record of the job's command shows; then nothing is left to do."""
    wd = workdir(tmp_path, refined_config(rounds=1, start="continuation", seeds=[0, 1]))
    res = wd / "results" / "tiny"
    said = snakemake(wd)
    new = added(res, 1)
    assert new
    commands = [line for line in said.splitlines() if "collapse-spectroscopy train" in line]
    for t in new:
        colder = max(g for g in GRID if g < t)
        for seed in (0, 1):
            out = f"--point {t!r} {seed} {point(res, t, seed).relative_to(wd)}"
            (command,) = [c for c in commands if out in c]
            start = point(res, colder, seed, ".pt").relative_to(wd)
            assert f"--chain --start-from {start} " in command, command
            assert point(res, t, seed).is_file()
    assert planned_jobs(wd) == {}


def test_mlp_runs_and_studies_plan_their_rounds(tmp_path):
    """A dry run: an MLP run and a study whose base run is refined (its derived run too,
    with chunks) each plan their rounds; rounds 0 plans none. (A real run of this config
    built every output and then had nothing to do; the runs above train through the same
    rules.)"""
    config = refined_config(rounds=1, points_per_job=2)
    config["runs"]["mlp"] = {
        "dataset": {"source": "synthetic", "synthetic_kind": "manifold"},
        "model": {"kind": "mlp", "hidden": [16], "latents": 4},
        "training": {"max_updates": 600, "eval_every": 100},
        "scan": {"temperatures": GRID, "refine": {"rounds": 2}},
    }
    config["runs"]["plain"] = tiny_config(GRID)["runs"]["tiny"]
    config["default_runs"] = ["tiny", "mlp", "plain"]
    config["studies"] = {"size": {"run": "tiny", "vary": "split.train_subsample", "values": [0.5]}}
    said = snakemake(workdir(tmp_path, config), "-n", "all", "studies")
    # before the rounds run, Snakemake plans round 1 of each refined run (tiny, its study's
    # derived run, mlp) and round 2 of mlp; plain has none
    rounds = re.findall(r"output: results/(\S+)/scan/refine_round_(\d+)\.json", said)
    assert sorted(rounds) == [("mlp", "1"), ("mlp", "2"), ("size__0p5", "1"), ("tiny", "1")]
    assert re.search(r"rule study:", said)
