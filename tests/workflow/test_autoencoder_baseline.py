"""The autoencoder baseline through the real workflow (docs/science.md §9, "Autoencoder
baseline"; rules/baselines.smk): a tiny nonlinear run with ``baselines.autoencoder``
builds the table as a target of the run and hands it to the figures job, whose Fig 5
draws it; a run without the section plans no such job; a changed ``max_latents`` reruns
the baseline and the figures, and no training of the scan.
"""

import subprocess

import matplotlib.image as mpimg
import pandas as pd
import pytest
import yaml

from workflow_helpers import ROOT, SNAKEMAKE, planned_jobs, workdir

RUN = {
    "dataset": {"source": "synthetic", "synthetic_kind": "manifold"},
    "model": {"kind": "mlp", "hidden": [16], "latents": 3},
    "training": {"max_updates": 400, "eval_every": 100, "patience": 0.5},
    "scan": {"temperatures": [0.01, 0.1]},
    "maps": {"temperatures": []},  # no maps: not what this test is about
}
TABLE = "results/tiny/baselines/autoencoder.csv"
FIG5 = "results/tiny/figures/fig5_utility_concentration.png"


def config(baselines=None) -> dict:
    run = {**RUN, **({"baselines": baselines} if baselines else {})}
    return {"default_runs": ["tiny"], "runs": {"tiny": run}}


def snakemake(wd, *args):
    cmd = [*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(wd), "--cores", "2", *args]
    return subprocess.run(cmd, capture_output=True, text=True)


def test_a_run_without_the_section_plans_no_baseline(tmp_path):
    proc = snakemake(workdir(tmp_path, config()), "-n", "-p")
    assert proc.returncode == 0, proc.stderr
    assert "autoencoder" not in proc.stdout + proc.stderr


@pytest.mark.slow
def test_the_baseline_is_a_target_and_fig5_draws_it(tmp_path):
    """~40 s on 2 busy cores: prepare, 2 scan points and 2 autoencoders of 400 updates."""
    wd = workdir(tmp_path, config({"autoencoder": {"max_latents": 2}}))
    proc = snakemake(wd, "-p")
    assert proc.returncode == 0, proc.stderr[-4000:]
    table = pd.read_csv(wd / TABLE)
    assert table["k"].tolist() == [1, 2]
    assert ((table["distortion"] > 0) & (table["distortion"] < 1)).all(), table
    assert (table["updates_run"] <= 400).all() and (table["eval_split"] == "test").all()
    # the figures job was handed the table (its shell command, printed by -p)
    assert f"--autoencoder {TABLE}" in proc.stdout + proc.stderr
    png = mpimg.imread(wd / FIG5)
    assert png.ndim == 3 and png[..., :3].std() > 0.05  # drawn, not blank
    log = (wd / "results/tiny/logs/autoencoder.log").read_text()
    assert "k=1: distortion" in log and "k=2: distortion" in log
    # the baseline reads only its own stage file: a changed max_latents reruns the
    # baseline and the figures, and none of the scan's training
    again = config({"autoencoder": {"max_latents": 3}})
    (wd / "config" / "config.yaml").write_text(yaml.safe_dump(again))
    assert planned_jobs(wd) == {
        "run_config": 1,  # config/autoencoder.json
        "autoencoder_baseline": 1,
        "figures": 1,
        "all": 1,
    }
