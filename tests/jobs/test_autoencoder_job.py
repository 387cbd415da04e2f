"""The autoencoder baseline's job and command (jobs/autoencoder_job.py, cli/baselines.py;
docs/science.md §9, "Autoencoder baseline").

- **The known answer.** The manifold dataset (the synthetic source's manifold kind: 10
  smooth nonlinear functions of 2 factors plus 2 % noise) is 2-dimensional: an
  autoencoder with a bottleneck of 2 reconstructs it, while PCA needs at least 5
  components for the same distortion. The bound 0.05 is the issue's; measured at seed 0
  (64-64 GELU, the paper's optimizer): Dn = 0.0019 after 1,000 updates (the budget here,
  ~1 s), 0.0008 after 2,000, 0.00035 after the early stop at 16k (the noise normal to the
  manifold leaves 3.2e-4). PCA's split-matched distortion on the same test split is 0.36
  at 2 components and reaches 0.05 at 5 (0.038).
- **Determinism**: the same seed and inputs give the same file, byte for byte; another seed
  another table.
- **Resume**: a job stopped between two k keeps the finished ones and trains the rest; a
  job stopped inside a k resumes it from its checkpoint; both end with the table of a run
  never stopped.
- **Bad input**: one line naming the option or key, no output.
"""

import os
import signal
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from collapse_spectroscopy import cli
from collapse_spectroscopy.analysis import pca
from collapse_spectroscopy.errors import Interrupted
from collapse_spectroscopy.jobs import autoencoder_job
from collapse_spectroscopy.store.prepared import load_prepared
from collapse_spectroscopy.training.checkpoint import PAUSE_ENV
from pause_helpers import wait_paused

TOLERANCE = 0.05
TRAINING = ["--max-updates", "1000", "--eval-every", "250", "--device", "cpu"]


@pytest.fixture(scope="module")
def manifold(tmp_path_factory):
    root = tmp_path_factory.mktemp("autoencoder")
    assert cli.main(["prepare", "--out", str(root / "data"), "--synthetic-kind", "manifold"]) == 0
    return root / "data" / "prepared.npz"


def run(data, out, *extra) -> int:
    return cli.main(["autoencoder", "--data", str(data), "--out", str(out), *TRAINING, *extra])


@pytest.fixture(scope="module")
def table(manifold, tmp_path_factory):
    out = tmp_path_factory.mktemp("table") / "autoencoder.csv"
    assert run(manifold, out, "--max-latents", "2") == 0
    return out


def test_two_latents_reconstruct_the_manifold_that_pca_needs_five_for(manifold, table):
    rows = pd.read_csv(table)
    assert rows["k"].tolist() == [1, 2]
    assert rows.loc[1, "distortion"] <= TOLERANCE, rows
    # the linear null model on the same split: train PCs applied to the test split, with
    # the baseline's normalizer (docs/science.md §4.4)
    ds = load_prepared(manifold)
    levels = pca.pca_eval_distortion(ds.x_train, ds.x_test)
    assert int(np.flatnonzero(levels <= TOLERANCE)[0]) >= 5, levels
    assert levels[2] >= 0.3  # and two components leave most of it
    assert (rows["eval_split"] == "test").all() and (rows["engine"] == "mlp_fast").all()
    # 1,000 updates with the best at the last validation: the scan's rule flags it
    assert rows["under_equilibrated"].tolist() == [True, True]
    assert not list(table.parent.glob("autoencoder.k=*"))  # records and checkpoints gone


def test_the_same_seed_gives_the_same_table(manifold, table, tmp_path):
    again = tmp_path / "again.csv"
    assert run(manifold, again, "--max-latents", "2") == 0
    assert again.read_bytes() == table.read_bytes()
    other = tmp_path / "other.csv"
    assert run(manifold, other, "--max-latents", "2", "--seed", "1") == 0
    assert pd.read_csv(other)["distortion"].tolist() != pd.read_csv(table)["distortion"].tolist()


def test_a_job_stopped_between_two_k_keeps_the_finished_ones(
    manifold, table, tmp_path, monkeypatch
):
    real = autoencoder_job.train_autoencoder
    trained = []

    def stop_at_two(x_train, x_val, k, *args, **kw):
        trained.append(k)
        if k == 2 and len(trained) == 2:  # the first job: a signal before k = 2's training
            raise Interrupted("SIGTERM (test)")
        return real(x_train, x_val, k, *args, **kw)

    monkeypatch.setattr(autoencoder_job, "train_autoencoder", stop_at_two)
    out = tmp_path / "autoencoder.csv"
    assert run(manifold, out, "--max-latents", "2") == 4  # interrupted: rerun to resume
    assert not out.exists() and (tmp_path / "autoencoder.k=1.json").is_file()
    assert run(manifold, out, "--max-latents", "2") == 0
    assert trained == [1, 2, 2]  # k = 1 kept, not trained again
    assert out.read_bytes() == table.read_bytes()
    # a changed option is another identity: the record is not kept
    trained.clear()
    (tmp_path / "autoencoder.k=1.json").write_text('{"identity": {}, "row": {}}')
    assert run(manifold, out, "--max-latents", "1") == 0
    assert trained == [1]


@pytest.mark.slow
def test_a_job_stopped_inside_a_k_resumes_it_bit_for_bit(manifold, table, tmp_path):
    """SIGTERM at update 500 of k = 1 (the test-only pause): a checkpoint, exit 4; the rerun
    resumes it and writes the table of the run never stopped. ~8 s: two processes."""
    out = tmp_path / "autoencoder.csv"
    cmd = [sys.executable, "-m", "collapse_spectroscopy.cli", "autoencoder", "--data"]
    cmd += [str(manifold), "--out", str(out), "--max-latents", "2", *TRAINING]
    cmd += ["--checkpoint-every", "250"]
    env = {**os.environ, PAUSE_ENV: "500"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    checkpoint = autoencoder_job.checkpoint_path(out, 1)
    assert wait_paused(proc, checkpoint, 500).strip() == "500"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 4, err
    assert checkpoint.is_file() and not out.exists()
    done = subprocess.run(cmd, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == table.read_bytes()
    assert not checkpoint.exists()


def test_max_latents_0_is_refused_by_the_schema_bound(manifold, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:  # argparse: usage, then the one error line
        run(manifold, tmp_path / "autoencoder.csv", "--max-latents", "0")
    assert stop.value.code == 2
    assert "baselines.autoencoder.max_latents must be >= 1" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "extra, words",
    [
        ([], "give --max-latents, or --run-config with baselines.autoencoder.max_latents"),
        (["--max-latents", "1", "--kind", "linear"], "model.kind = 'linear'"),
        (["--max-latents", "1", "--engine", "numba"], "cannot train model.kind = 'mlp'"),
    ],
)
def test_bad_input_is_one_line(manifold, tmp_path, capsys, extra, words):
    assert run(manifold, tmp_path / "autoencoder.csv", *extra) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1 and "Traceback" not in err, err
    assert not list(tmp_path.iterdir())
