"""A custom model (``model.kind: custom``) through a real Snakemake run on a ``.npz`` source
(``dataset.source: arrays``; issue 24).

Oracle: the built-in MLP family. The run ``custom`` names a factory file in the working
directory (a copy of ``tests/custom_factories.py``) whose ``same_as_mlp`` returns the
built-in ``MLPVAE`` from the generator it is given; the run ``mlp`` is the built-in family
with the same architecture, data, seed and engine (``mlp``, autograd, which ``auto`` picks
for a custom model). The two train the same operations in the same order on this machine,
so their spectra must be equal; the 1e-12 relative tolerance only absorbs the CSV's
decimal round trip, not any arithmetic difference (there is none to absorb).
"""

import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from synthetic_gaussian import gaussian_splits
from workflow_helpers import ROOT, SNAKEMAKE, planned_jobs, workdir

FACTORY = "factories.py:same_as_mlp"
TRAINING = {"max_updates": 1500, "eval_every": 250, "patience": 0.5, "engine": "mlp"}


def config():
    def run(model):
        return {
            "dataset": {"source": "arrays", "path": "samples.npz"},
            "model": {"latents": 4, **model},
            "training": TRAINING,
            "scan": {"temperatures": [0.01, 0.05, 0.2], "seeds": [0]},
        }

    return {
        "default_runs": ["custom", "mlp"],
        "runs": {
            "custom": run({"kind": "custom", "factory": FACTORY, "options": {"hidden": [16]}}),
            "mlp": run({"kind": "mlp", "hidden": [16], "activation": "gelu"}),
        },
    }


def snakemake(wd, *args):
    cmd = [*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(wd), "--cores", "2", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


@pytest.mark.slow
def test_a_custom_factory_measures_what_the_family_measures(tmp_path):
    wd = workdir(tmp_path, config())
    shutil.copy(ROOT / "tests" / "custom_factories.py", wd / "factories.py")
    # 3000 samples of 5 correlated features, as a user's own array (no split: a seeded
    # random split with the configured fractions)
    xtr, xva, xte, _, _ = gaussian_splits([0.5, 0.3, 0.15, 0.05, 0.0], sizes=(2000, 500, 500))
    np.savez(wd / "samples.npz", x=np.concatenate([xtr, xva, xte]))
    targets = [f"results/{r}/spectra.csv" for r in ("custom", "mlp")]
    snakemake(wd, *targets)
    custom, mlp = (pd.read_csv(wd / t) for t in targets)
    assert len(custom) == len(mlp) == 4  # min(latents, features)
    numeric = mlp.select_dtypes("number").columns
    np.testing.assert_allclose(custom[numeric], mlp[numeric], rtol=1e-12, equal_nan=True)
    assert np.isfinite(custom["utility"]).all()
    # the stage file records the factory's code; a changed factory reruns training, and
    # only for the custom run
    assert "model_source" in (wd / "results/custom/config/train.json").read_text()
    assert planned_jobs(wd) == {} or "train" not in str(planned_jobs(wd))
    with open(wd / "factories.py", "a") as fh:
        fh.write("\n# edited\n")
    jobs = planned_jobs(wd)
    trained = {rule: n for rule, n in jobs.items() if rule.startswith("train")}
    assert sum(trained.values()) >= 1 and all("mlp" not in rule for rule in trained), jobs


@pytest.mark.parametrize(
    "factory, words",
    [
        ("factories.py:wrong_shapes", "encode(x)[0] (mu) has shape (5, 8), expected (5, 4)"),
        ("factories.py:nan_output", "non-finite"),
        ("factories.py:no_such_function", "has no attribute 'no_such_function'"),
    ],
)
def test_a_bad_custom_model_stops_the_workflow_before_any_job(tmp_path, factory, words):
    """On an arrays source the model is built on the file's sample shape when the
    workflow starts: exit 2, one line naming the key, no job, no results folder."""
    cfg = config()
    cfg["runs"]["custom"]["model"].update(factory=factory, options={})
    wd = workdir(tmp_path, cfg)
    shutil.copy(ROOT / "tests" / "custom_factories.py", wd / "factories.py")
    np.savez(wd / "samples.npz", x=np.zeros((100, 5), dtype=np.float32))
    cmd = [*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(wd), "--cores", "2", "-n"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr[-2000:]
    # one line per problem (a config check's list has a heading line), no traceback
    lines = [line for line in proc.stderr.splitlines() if "runs.custom.model" in line]
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"runs.custom.model.factory = {factory!r}" in lines[0] and words in lines[0]
    assert not (wd / "results").exists()
