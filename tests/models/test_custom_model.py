"""``model.kind: custom``: a user's factory (docs/custom_models.md, issue 24).

Oracle: the built-in MLP family. ``custom_factories.same_as_mlp`` returns the built-in
``MLPVAE`` itself, initialized from the generator it is handed, so a custom scan point
trained by the same engine (``mlp``, autograd) on the same data and seed runs the same
operations in the same order in this process: its log and weights must equal the built-in
family's exactly (no tolerance: nothing differs but the wrapper, which adds no arithmetic).
"""

import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from collapse_spectroscopy.config.checks import check_config
from collapse_spectroscopy.errors import InputError
from collapse_spectroscopy.models.families import Architecture, model_spec
from collapse_spectroscopy.training.scan_point import TrainConfig, train_scan_point
from synthetic_gaussian import gaussian_prepared, gaussian_splits
from workflow_helpers import ROOT

SPECTRUM = [0.5, 0.3, 0.15, 0.05]
SAME = Architecture("custom", factory="custom_factories:same_as_mlp", options={"hidden": [16]})
MLP = Architecture("mlp", (16,), "gelu")
TESTS = str(ROOT / "tests")


def built(arch, d=4, latents=3, seed=7):
    return arch.build(
        d, latents, generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )


def test_the_factory_is_handed_the_generator_and_builds_the_family_network():
    custom, mlp = built(SAME), built(MLP)
    assert custom.kind == "custom" and (custom.d, custom.latents) == (4, 3)
    mine = {k.removeprefix("net."): v for k, v in custom.state_dict().items()}
    theirs = mlp.state_dict()
    assert mine.keys() == theirs.keys()
    assert all(torch.equal(mine[k], theirs[k]) for k in theirs)
    # the saved spec rebuilds it: the factory, its options
    spec = model_spec(custom)
    assert spec == {"kind": "custom", "factory": SAME.factory, "options": {"hidden": [16]}}
    again = built(Architecture.from_spec(spec))
    assert all(
        torch.equal(a, b) for a, b in zip(again.parameters(), custom.parameters(), strict=True)
    )


def test_sample_shape_is_handed_to_a_factory_that_takes_it():
    arch = Architecture("custom", factory="custom_factories:with_shape", sample_shape=(2, 2))
    assert built(arch).net.sample_shape == (2, 2)
    assert model_spec(built(arch))["sample_shape"] == [2, 2]
    # a factory without the parameter is called without it (same_as_mlp takes none)
    built(Architecture("custom", factory=SAME.factory, sample_shape=(2, 2)))


@pytest.fixture(scope="module")
def splits():
    xtr, xva, _, _, _ = gaussian_splits(SPECTRUM, sizes=(1500, 500, 10), seed=1)
    return xtr.astype(np.float64), xva.astype(np.float64)


def test_a_custom_scan_point_trains_exactly_as_the_family(splits):
    config = TrainConfig(
        engine="auto", max_updates=400, eval_every=100, patience=10**6, dtype="float64"
    )
    a = train_scan_point(*splits, 0.05, seed=2, latents=3, config=config, arch=SAME)
    b = train_scan_point(
        *splits, 0.05, seed=2, latents=3, config=replace(config, engine="mlp"), arch=MLP
    )
    assert a.engine == b.engine == "mlp"  # auto trains a custom model by autograd
    np.testing.assert_array_equal(a.log["val_loss"], b.log["val_loss"])
    sa = {k.removeprefix("net."): v for k, v in a.model.state_dict().items()}
    assert all(torch.equal(sa[k], v) for k, v in b.model.state_dict().items())


BAD = [
    ("no_such_module_for_tests:f", "module 'no_such_module_for_tests' is not importable"),
    ("custom_factories:not_callable", "'not_callable' is not callable (type int)"),
    ("custom_factories:returns_array", "returned a ndarray, expected a torch.nn.Module"),
    ("custom_factories:encode_one_tensor", "encode(x) returned one tensor of shape (5, 6)"),
    ("custom_factories:wrong_shapes", "encode(x)[0] (mu) has shape (5, 6), expected (5, 3)"),
    ("custom_factories:nan_output", "decode(z) has 20 non-finite values"),
]


@pytest.mark.parametrize("factory, words", BAD, ids=[b[0].split(":")[1] for b in BAD])
def test_a_bad_factory_is_one_line_naming_the_key(factory, words):
    with pytest.raises(InputError) as info:
        built(Architecture("custom", factory=factory))
    message = str(info.value)
    assert message.startswith(f"model.factory = {factory!r}: ") and words in message
    assert "\n" not in message


def test_a_bad_factory_stops_the_train_command_before_any_update(tmp_path):
    """Through the CLI, as a training job runs it: exit 2 (docs/cli.md), one line on
    stderr naming the key, no output, no checkpoint."""
    data = tmp_path / "prepared.npz"
    gaussian_prepared(SPECTRUM, sizes=(300, 100, 100)).save(data)
    out = tmp_path / "p.nc"
    proc = subprocess.run(
        [sys.executable, "-m", "collapse_spectroscopy.cli", "train", "--data", str(data)]
        + ["-T", "0.1", "--seed", "0", "--out", str(out), "--latents", "3"]
        + ["--kind", "custom", "--factory", "custom_factories:wrong_shapes"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([TESTS, *sys.path])},
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "model.factory = 'custom_factories:wrong_shapes'" in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prepared.npz"]


def run_with(model: dict) -> dict:
    return {
        "runs": {
            "r": {
                "dataset": {"source": "synthetic"},
                "model": model,
                "scan": {"temperatures": [0.1], "seeds": [0]},
            }
        }
    }


@pytest.mark.parametrize(
    "model, words",
    [
        ({"kind": "custom", "factory": "no_such_module_for_tests:f"}, "is not importable"),
        ({"kind": "custom", "factory": "custom_factories:not_callable"}, "not callable"),
        ({"kind": "custom", "factory": "missing/file.py:f"}, "no file"),
        ({"kind": "custom", "factory": "nocolon"}, "expected 'package.module:function'"),
        ({"kind": "custom"}, "factory"),
        ({"kind": "custom", "factory": SAME.factory, "hidden": [8]}, "model.kind mlp only"),
        ({"kind": "mlp", "factory": SAME.factory}, "model.kind custom only"),
        ({"kind": "linear", "options": {"a": 1}}, "model.kind custom only"),
    ],
)
def test_the_workflow_checks_the_factory_before_any_job(model, words):
    with pytest.raises(InputError) as info:
        check_config(run_with(model))
    message = str(info.value)
    assert "runs.r.model" in message and words in message, message


def test_a_custom_model_trains_with_autograd_only():
    config = run_with({"kind": "custom", "factory": SAME.factory})
    config["runs"]["r"]["training"] = {"engine": "mlp_fast"}
    with pytest.raises(InputError, match="engine"):
        check_config(config)


def test_the_factory_source_identifies_the_code(tmp_path, monkeypatch):
    """A file factory is identified by its content (an edit changes it, a move does not);
    a module of an installed distribution also by the distribution's version."""
    from collapse_spectroscopy.config.model_source import factory_source

    monkeypatch.chdir(tmp_path)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "f.py").write_text("def f(**kw): pass\n")
    first = factory_source("a/f.py:f")
    assert set(first) == {"sha256"}
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "f.py").write_text("def f(**kw): pass\n")
    assert factory_source("b/f.py:f") == first  # the same code elsewhere
    (tmp_path / "b" / "f.py").write_text("def f(**kw): return 1\n")
    assert factory_source("b/f.py:f") != first
    source = factory_source("collapse_spectroscopy.models.mlp:MLPVAE")
    assert source["module"] == "collapse_spectroscopy.models.mlp"
    assert source["distribution"] == "collapse-spectroscopy" and source["version"]
