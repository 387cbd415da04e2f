"""The workflow's closing summary (issue 20, item 4): what it says of a run, from the run's
summary.json, and that a real Snakemake run ends with it (tests/workflow/test_workflow.py)."""

import json
import os
import time

from collapse_spectroscopy.cli.run_summary import built_runs, summary_lines


def write_summary(folder, **extra):
    folder.mkdir(parents=True)
    summary = {
        "scan_points": 14,
        "T_range": [0.001, 0.7],
        "modes_with_threshold": 3,
        "threshold_over_pca": {"1": 1.01, "2": 0.97, "3": None},
        "utility_over_pca": {"1": 1.002, "2": 0.9, "3": 1.05},
        "under_equilibrated": {"count": 2, "of": 14, "ranks": [3]},
        **extra,
    }
    (folder / "summary.json").write_text(json.dumps(summary))


def test_summary_lines_say_where_what_and_how_far(tmp_path):
    write_summary(tmp_path / "demo")
    lines = summary_lines(tmp_path / "demo", "demo")
    assert lines[0] == (
        f"demo: results in {tmp_path / 'demo'}/ -- open "
        f"{tmp_path / 'demo' / 'figures' / 'fig3_duality.png'} first"
    )
    assert "14 scan points, T from 0.001 to 0.7; 3 modes with a threshold" in lines[1]
    # the largest |ratio - 1|: 3 % of the thresholds (rank 3 has none), 10 % of utilities
    # (rank 2), whose deviations 0.2 / 10 / 5 % have the median 5 %; with two ranks the
    # worst and the median say nothing more
    assert "thresholds / PCA ratios: within 3.0 % (ranks 1-2);" in lines[2]
    assert (
        "utilities / PCA ratios: within 10.0 % (ranks 1-3; worst rank 2, median 5.0 %)" in lines[2]
    )
    assert "2 of 14 scan points under-equilibrated" in lines[3] and "[3]" in lines[3]
    assert len(lines) == 4  # no training_cost block (an older summary): no cost line


def test_summary_lines_say_what_training_cost(tmp_path):
    cost = {
        "points": 14,
        "updates": 1_234_000,
        "updates_per_point": {"min": 40_000, "median": 90_000.0, "max": 150_000},
    }
    write_summary(tmp_path / "demo", training_cost=cost)
    line = summary_lines(tmp_path / "demo", "demo")[4]
    assert line == ("  training: 1,234,000 updates over 14 points (40,000 to 150,000 per point)")


def test_a_missing_summary_is_one_line(tmp_path):
    lines = summary_lines(tmp_path / "gone", "gone")
    assert len(lines) == 1 and lines[0].startswith("gone: no readable summary")


def test_only_runs_written_since_the_start_are_built(tmp_path):
    write_summary(tmp_path / "old")
    write_summary(tmp_path / "new")
    start = time.time()
    os.utime(tmp_path / "old" / "summary.json", (start - 100, start - 100))
    os.utime(tmp_path / "new" / "summary.json", (start + 1, start + 1))
    assert built_runs(tmp_path, ["old", "new", "absent"], start) == ["new"]


def test_summary_lines_say_how_many_variables_each_tolerance_needs(tmp_path):
    """n(eps) of the pooled scan beside PCA's on the evaluation split, with the seeds'
    range where they differ and '-' where a tolerance is never reached."""
    concentration = {
        "eps": [0.1, 0.03, 0.001],
        "n_vae": [3, 4, None],
        "n_pca": [4, 7, 12],
        "n_pca_eval": [4, 6, 12],
        "n_vae_seed_range": [[3, 4], [4, 4], None],
    }
    write_summary(tmp_path / "mlp", utility_concentration=concentration)
    line = summary_lines(tmp_path / "mlp", "mlp")[4]
    assert line == (
        "  variables needed n(eps) at eps = 0.1 / 0.03 / 0.001: 3 (seeds 3-4) / 4 / - "
        "(a seed: -) (PCA: 4 / 6 / 12); - = not reached"
    )
    # one seed, every tolerance reached, no split-matched PCA (an older summary)
    one = {"eps": [0.1, 0.01], "n_vae": [2, 5], "n_pca": [2, 6]}
    write_summary(tmp_path / "lin", utility_concentration=one)
    line = summary_lines(tmp_path / "lin", "lin")[4]
    assert line == "  variables needed n(eps) at eps = 0.1 / 0.01: 2 / 5 (PCA: 2 / 6)"


def test_a_sweep_says_how_many_variables_both_directions_need(tmp_path):
    """A sweep's summary adds n(eps) of Dn*_k over both directions' points, naming the
    ranks whose point is a cooling chain's; a run without a sweep has no such line."""
    one = {"eps": [0.1, 0.01], "n_vae": [3, 6], "n_pca": [4, 8]}
    both = {
        "eps": [0.1, 0.01],
        "n_vae": [2, 6],
        "n_pca": [4, 8],
        "branch_of_best": {"1": "cooling", "2": "cooling", "3": "warming"},
    }
    write_summary(tmp_path / "sweep", utility_concentration=one, hysteresis={"both_branches": both})
    lines = summary_lines(tmp_path / "sweep", "sweep")
    assert lines[4:6] == [
        "  variables needed n(eps) at eps = 0.1 / 0.01: 3 / 6 (PCA: 4 / 8)",
        "  over both sweep directions, n(eps) at eps = 0.1 / 0.01: 2 / 6 (PCA: 4 / 8); "
        "ranks from the cooling chains: 1, 2",
    ]
    write_summary(tmp_path / "plain", utility_concentration=one)
    assert not any("both" in line for line in summary_lines(tmp_path / "plain", "plain"))
