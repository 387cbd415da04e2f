"""The workflow's configuration checks (issue 9, item 4): every hole stops before any job,
naming the config key.

Each hole is checked twice over: through :func:`check_config` on the YAML text a user
would write (YAML's own reading of ``1e-3`` or ``.nan`` is part of the hole), and through
a real ``snakemake -n`` of the project's Snakefile, which must exit 2 with the key named,
without a traceback and before it plans a single job.
"""

import re
import subprocess

import numpy as np
import pytest
import yaml

from collapse_spectroscopy.cli import build_parser
from collapse_spectroscopy.cli.runconfig import with_run_config
from collapse_spectroscopy.config import settings
from collapse_spectroscopy.config.checks import check_config
from collapse_spectroscopy.config.grid import (
    scan_point_label,
    scan_temperatures,
    temperature_grid_errors,
)
from collapse_spectroscopy.config.validate import coerce_text_scalars
from collapse_spectroscopy.errors import InputError
from collapse_spectroscopy.training.engines import ENGINES
from workflow_helpers import ROOT, SNAKEMAKE, tiny_config, workdir

TINY = """\
default_runs: [tiny]
runs:
  tiny:
    dataset: {source: synthetic}
    model: {latents: 6}
    training: {max_updates: 600, eval_every: 100}
"""

# (what a user writes under runs.tiny, the key the message must name, words it must hold)
HOLES = {
    "no scan": ("", "config key runs.tiny.scan is required", "temperatures"),
    "grid of one repeated T": (
        "    scan: {temperatures: {min: 0.1, max: 0.1, num: 3}}\n",
        "config key runs.tiny.scan.temperatures",
        "3 temperatures but only 1 distinct",
    ),
    "nan in a list": (
        "    scan: {temperatures: [0.01, .nan]}\n",
        "config key runs.tiny.scan.temperatures[1]: .nan",
        "finite",
    ),
    "inf as max": (
        "    scan: {temperatures: {min: 0.01, max: .inf, num: 4}}\n",
        "config key runs.tiny.scan.temperatures.max: .inf",
        "finite",
    ),
    "a refined sweep": (
        "    scan: {temperatures: [0.01, 0.1], start: sweep, refine: {rounds: 1}}\n",
        "config key runs.tiny.scan.refine.rounds = 1",
        "sweep",
    ),
    "refinement without points": (
        "    scan: {temperatures: [0.01, 0.1], refine: {rounds: 1, points_per_mode: 0}}\n",
        "config key runs.tiny.scan.refine.points_per_mode",
        "minimum",
    ),
    "text that spells no number": (
        "    scan: {temperatures: {min: 1e-3x, max: 0.5, num: 4}}\n",
        "config key runs.tiny.scan.temperatures.min: '1e-3x' is not of type 'number'",
        "",
    ),
}


def errors_of(text: str) -> str:
    with pytest.raises(InputError) as exc:
        check_config(yaml.safe_load(text))
    return str(exc.value)


@pytest.mark.parametrize("hole", HOLES)
def test_check_config_names_the_key(hole):
    run_text, key, words = HOLES[hole]
    message = errors_of(TINY + run_text)
    assert key in message and words in message, message


@pytest.mark.parametrize(
    "hole", ["no scan", "grid of one repeated T", "inf as max", "a refined sweep"]
)
def test_snakemake_stops_before_any_job(tmp_path, hole):
    run_text, key, words = HOLES[hole]
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(TINY + run_text)
    proc = subprocess.run(
        [*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path), "-n", "--cores", "1"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2, proc.stderr
    assert key in proc.stderr and words in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and "KeyError" not in proc.stderr
    assert "Building DAG" not in proc.stderr + proc.stdout  # stopped before planning jobs
    assert not (tmp_path / "results").exists()


def test_a_good_grid_plans_exactly_its_scan_points(tmp_path):
    """The grid check_config expands is the grid the workflow runs: one job per T."""
    grid = {"min": 0.01, "max": 0.3, "num": 5}
    wd = workdir(tmp_path, tiny_config(grid))
    proc = subprocess.run(
        [*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(wd), "-n", "--cores", "1"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    planned = {  # a job of several points (points_per_job auto) lists each
        t
        for line in proc.stdout.splitlines()
        if "output:" in line
        for t in re.findall(r"/scan/T=([^/]+)/seed=\d+\.nc", line)
    }
    assert planned == {scan_point_label(t) for t in scan_temperatures(grid)}
    assert len(planned) == 5


@pytest.mark.parametrize(
    "grid, digits",
    [
        ({"min": 1.0e-6, "max": 1.0, "num": 37}, 4),  # the paper's 6 per decade
        ({"min": 0.001, "max": 0.7, "num": 14}, 4),  # the demo's
        ({"min": 0.1, "max": 0.2, "num": 2000}, 5),  # dense: 4 digits would collide
    ],
)
def test_grid_temperatures_have_short_labels_that_round_trip(grid, digits):
    """A {min, max, num} grid's T are geomspace's rounded to the fewest significant digits
    (>= 4) that keep them distinct (issue 20.7: folder names like
    T=0.0016552122635755085). Each label reads back as its T, no two collide, no T moves
    by more than half a unit in its last kept digit, and the ends stay as written."""
    temps = scan_temperatures(grid)
    raw = np.geomspace(grid["min"], grid["max"], grid["num"])
    labels = [scan_point_label(t) for t in temps]
    assert len(set(labels)) == grid["num"]
    assert all(float(label) == t for label, t in zip(labels, temps, strict=True))
    np.testing.assert_allclose(temps, raw, rtol=0.5 * 10.0 ** (1 - digits), atol=0)
    assert temps[0] == grid["min"] and temps[-1] == grid["max"]
    assert max(len(label.replace(".", "").lstrip("0").split("e")[0]) for label in labels) == digits


def test_duplicates_in_explicit_lists_and_labels():
    # two spellings of one float: YAML reads both as 0.1 and the schema names the key
    message = errors_of(TINY + "    scan: {temperatures: [0.1, 0.10000000000000001]}\n")
    assert "config key runs.tiny.scan.temperatures" in message and "non-unique" in message
    # the expanded-grid check itself, for a list that reached it
    (message,) = temperature_grid_errors("tiny", [0.1, 0.2, 0.1])
    assert "runs.tiny.scan.temperatures" in message and "T = 0.1 repeated" in message
    # a grid so narrow that geomspace repeats values: caught after expansion
    narrow = {"min": 0.1, "max": float(np.nextafter(0.1, 1.0)), "num": 5}
    assert len(set(scan_temperatures(narrow))) < 5
    assert temperature_grid_errors("tiny", narrow)
    # labels never collide for different floats: each reads back as its own T
    t = 0.1
    for _ in range(50):
        nxt = float(np.nextafter(t, 1.0))
        assert scan_point_label(t) != scan_point_label(nxt)
        assert float(scan_point_label(nxt)) == nxt
        t = nxt


def test_number_hints_and_strict_integers():
    message = errors_of(
        TINY
        + "    training: {learning_rate: 5E-4, max_updates: 1.0e+5, batch_size: 2e2}\n"
        + "    scan: {temperatures: [0.1, '0.2']}\n"
    )
    # text that spells a number where a number is wanted is read as one (below); an
    # integer key still refuses a float, with a hint how to write it
    assert "learning_rate" not in message and "temperatures" not in message
    assert "runs.tiny.training.max_updates: 100000.0 is not of type 'integer'" in message
    assert "write 100000" in message
    assert "runs.tiny.training.batch_size: '2e2'" in message and "write 200" in message


def test_text_that_spells_a_number_is_read_as_one():
    """Snakemake hands the values of a nested ``--config 'runs={...}'`` over as text: the
    README's one-line three-seed command gave '12' for latents and '0' for a seed. Such
    text is read as YAML where the schema wants a number, an integer or a boolean (YAML
    1.1's text '1e-3' too); text that spells none stays an error."""
    config = yaml.safe_load(
        TINY.replace("{latents: 6}", "{latents: '6'}")
        + "    training: {learning_rate: 1e-3, gpu: 'false'}\n"
        + "    scan: {temperatures: {min: '0.001', max: '0.7', num: '4'}, seeds: ['0', '1']}\n"
    )
    converted = coerce_text_scalars(config, settings.load_schema())
    check_config(config)  # no error
    run = config["runs"]["tiny"]
    assert run["model"]["latents"] == 6 and run["scan"]["seeds"] == [0, 1]
    assert run["scan"]["temperatures"] == {"min": 0.001, "max": 0.7, "num": 4}
    assert run["training"] == {"learning_rate": 1e-3, "gpu": False}
    assert "runs.tiny.model.latents" in converted and "runs.tiny.scan.seeds[1]" in converted
    assert coerce_text_scalars(config, settings.load_schema()) == []  # nothing left


def test_non_finite_anywhere_and_dataset_keys():
    message = errors_of(
        TINY.replace("{latents: 6}", "{latents: 6, sigma2: -.inf}")
        + "    scan: {temperatures: [0.1]}\n"
    )
    assert "config key runs.tiny.model.sigma2: -.inf is not a finite number" in message
    message = errors_of(
        TINY.replace("{source: synthetic}", "{source: rasters, path: x, drop_columns: [id]}")
        + "    scan: {temperatures: [0.1]}\n"
    )
    assert "config key runs.tiny.dataset.drop_columns applies to source 'table' only" in message
    message = errors_of(
        TINY.replace("{source: synthetic}", "{source: table, path: x.csv, nodata: .nan}")
        + "    scan: {temperatures: [0.1]}\n"
    )
    assert "config key runs.tiny.dataset.nodata: .nan" in message
    message = errors_of(
        TINY.replace("{source: synthetic}", "{source: synthetic, nodata: -9999}")
        + "    scan: {temperatures: [0.1]}\n"
    )
    assert "config key runs.tiny.dataset.nodata is not used by source 'synthetic'" in message


def test_runs_sharing_a_download_agree_on_url():
    config = yaml.safe_load(TINY + "    scan: {temperatures: [0.1]}\n")
    for name, url in (("a", "https://x.org/a.zip"), ("b", "https://x.org/b.zip")):
        config["runs"][name] = {
            "dataset": {"source": "worldclim", "url": url},
            "scan": {"temperatures": [0.1]},
        }
    with pytest.raises(InputError, match=r"runs\.b\.dataset\.url .* differs from runs\.a"):
        check_config(config)


@pytest.mark.slow
def test_workflow_passes_dataset_keys_to_its_commands(tmp_path):
    """dataset.drop_columns, split_column and nodata reach the prepare command; a
    worldclim run's url and sha256 reach the download (fetch) and prepare: through the
    stage file the workflow writes (results/RUN/config/prepare.json), read back by the
    command's own parser."""
    config = tiny_config([0.1])
    config["runs"]["tiny"]["dataset"] = {
        "source": "table",
        "path": "samples, 2024.csv",  # a comma inside a file name stays one path
        "split_column": "part",
        "drop_columns": ["site id", "date"],
        "nodata": -3.4e38,
    }
    sha = "ab" * 32
    config["runs"]["wc"] = {
        "dataset": {"source": "worldclim", "url": "https://mirror.example/wc.zip", "sha256": sha},
        "scan": {"temperatures": [0.1]},
    }
    config["default_runs"] = ["tiny", "wc"]
    wd = workdir(tmp_path, config)
    (wd / "samples, 2024.csv").write_text("part,site id,date,x\n")  # dataset.path must exist
    snakemake = [*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(wd), "--cores", "1"]
    proc = subprocess.run([*snakemake, "-n", "-p"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    fetch = next(line for line in proc.stdout.splitlines() if "collapse-spectroscopy fetch" in line)
    assert f"--url https://mirror.example/wc.zip --sha256 {sha}" in fetch
    stages = [f"results/{run}/config/prepare.json" for run in ("tiny", "wc")]
    proc = subprocess.run([*snakemake, *stages], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr

    def prepare_args(run):
        parser = build_parser()
        argv = ["prepare", "--run-config", str(wd / f"results/{run}/config/prepare.json")]
        argv += ["--out", str(tmp_path / "out")]
        return with_run_config(parser, argv, parser.parse_args(argv))

    tiny = prepare_args("tiny")
    assert (tiny.source, tiny.path) == ("table", ["samples, 2024.csv"])
    assert tiny.split_column == "part"
    assert tiny.drop_columns == ["site id", "date"]
    assert tiny.nodata == -3.4e38
    wc = prepare_args("wc")
    assert (wc.source, wc.sha256, wc.url) == ("worldclim", sha, "https://mirror.example/wc.zip")


# model keys of the MLP family (docs/science.md §9): (what replaces `latents: 6` in TINY's
# model section, the key the message must name, words it must hold)
MODEL_HOLES = {
    "empty hidden": ("kind: mlp, hidden: []", "config key runs.tiny.model.hidden", "non-empty"),
    "zero width": ("kind: mlp, hidden: [64, 0]", "config key runs.tiny.model.hidden[1]", "minimum"),
    "negative width": ("hidden: [-4]", "config key runs.tiny.model.hidden[0]", "minimum"),
    "unknown activation": ("activation: swish", "config key runs.tiny.model.activation", "gelu"),
    "unknown kind": ("kind: deep", "config key runs.tiny.model.kind", "'linear', 'mlp'"),
    "linear-only engine": (
        "kind: mlp",  # with training.engine: numba (ENGINE_HOLE)
        "config key runs.tiny.training.engine",
        "'auto', 'mlp', 'mlp_fast', 'batched'] (model.kind mlp trains with engine auto, mlp, "
        "mlp_fast or batched)",
    ),
}
ENGINE_HOLE = "linear-only engine"
SCAN = "    scan: {temperatures: [0.01, 0.1]}\n"


def model_hole(hole: str) -> str:
    text = TINY.replace("model: {latents: 6}", "model: {" + MODEL_HOLES[hole][0] + "}")
    if hole == ENGINE_HOLE:
        text = text.replace("training: {", "training: {engine: numba, ")
    return text + SCAN


@pytest.mark.parametrize("hole", MODEL_HOLES)
def test_bad_model_keys_name_the_key(hole):
    _, key, words = MODEL_HOLES[hole]
    message = errors_of(model_hole(hole))
    assert key in message and words in message, message


def test_good_mlp_model_passes():
    check_config(yaml.safe_load(model_hole("zero width").replace("64, 0", "32, 16")))


@pytest.mark.parametrize("kind", ["mlp", "custom"])
def test_the_engines_of_a_nonlinear_family_in_the_schema_are_the_registrys(kind):
    """model.kind mlp (custom) takes auto and every engine whose ``kinds`` hold mlp
    (custom): for mlp the batched one included (a chunk of MLP points trains as one
    batch), for custom the autograd engine alone."""
    with open(settings.SCHEMA_PATH) as f:
        rules = yaml.safe_load(f)["$defs"]["run"]["allOf"]
    (then,) = [
        r["then"]
        for r in rules
        if r["if"]["properties"]["model"]["properties"]["kind"] == {"const": kind}
    ]
    enum = then["properties"]["training"]["properties"]["engine"]["enum"]
    assert enum == ["auto", *(name for name, e in ENGINES.items() if kind in e.kinds)]
    text = model_hole("zero width").replace("64, 0", "32, 16")
    check_config(yaml.safe_load(text.replace("training: {", "training: {engine: batched, ")))


def test_snakemake_stops_on_a_bad_model_before_any_job(tmp_path):
    _, key, words = MODEL_HOLES["empty hidden"]
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text(model_hole("empty hidden"))
    proc = subprocess.run(
        [*SNAKEMAKE, "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path), "-n", "--cores", "1"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2, proc.stderr
    assert key in proc.stderr and words in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "Building DAG" not in proc.stderr + proc.stdout


# runs.R.baselines (docs/science.md §9, "Autoencoder baseline"): an MLP run's option. (what
# is added to TINY's run, model first, the key the message must name, words it must hold)
MLP_MODEL = "    model: {latents: 6, kind: mlp, hidden: [16]}\n"
BASELINE_HOLES = {
    "on a linear run": (
        "    baselines: {autoencoder: {max_latents: 2}}\n",
        "config key runs.tiny.baselines.autoencoder trains autoencoders",
        "model.kind 'linear': expected model.kind mlp",
    ),
    "max_latents 0": (
        MLP_MODEL + "    baselines: {autoencoder: {max_latents: 0}}\n",
        "config key runs.tiny.baselines.autoencoder.max_latents: 0",
        "less than the minimum of 1",
    ),
    "no max_latents": (
        MLP_MODEL + "    baselines: {autoencoder: {seed: 1}}\n",
        "config key runs.tiny.baselines.autoencoder.max_latents is required",
        "the largest bottleneck k",
    ),
    "unknown baseline": (
        MLP_MODEL + "    baselines: {pca: {max_latents: 2}}\n",
        "config key runs.tiny.baselines",
        "'pca' was unexpected",
    ),
}


def baseline_config(hole: str) -> str:
    text = TINY + SCAN + BASELINE_HOLES[hole][0]
    return text.replace("    model: {latents: 6}\n", "") if MLP_MODEL in text else text


@pytest.mark.parametrize("hole", BASELINE_HOLES)
def test_a_bad_baseline_is_one_line_naming_the_key(hole):
    _, key, words = BASELINE_HOLES[hole]
    message = errors_of(baseline_config(hole))
    problems = message.splitlines()[1:]  # "invalid configuration:", then one line each
    assert len(problems) == 1 and key in problems[0] and words in problems[0], message


def test_a_good_baseline_passes_and_is_resolved_with_its_seed():
    config = yaml.safe_load(
        baseline_config("max_latents 0").replace("max_latents: 0", "max_latents: 3")
    )
    check_config(config)
    run = settings.resolve_run(config["runs"]["tiny"])
    assert run["baselines"] == {"autoencoder": {"max_latents": 3, "seed": 0}}
    assert settings.stage_config(run, "autoencoder")["baselines"] == run["baselines"]
    # absent: no baseline, and the resolved run has no section for it
    assert "baselines" not in settings.resolve_run(yaml.safe_load(TINY + SCAN)["runs"]["tiny"])
