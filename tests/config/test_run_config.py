"""The schema is the one home of every default, and a run configuration reaches each
command exactly as the flags the workflow used to spell out for it.

- every key of the sections a command reads is an option of that command, whose default
  is the schema's (no second copy of a default in the CLI);
- ``--run-config FILE`` gives the same parsed arguments as the flags common.smk wrote
  before (``training_args``, ``dataset_args``, copied below as they were), and an option
  on the command line wins over the file;
- a bad run configuration is one line naming the file and the key (exit 2);
- :func:`settings.resolve_run` fills in the same defaults as Snakemake's ``validate``;
- the engine names of the schema, the CLI and the engine registry are one list.
"""

import copy
import json
import shlex

import pytest
import yaml
from snakemake.utils import validate

from collapse_spectroscopy.analysis import thresholds
from collapse_spectroscopy.cli import build_parser, main
from collapse_spectroscopy.cli.runconfig import config_option, with_run_config
from collapse_spectroscopy.config import settings
from collapse_spectroscopy.training.engines import ENGINES
from workflow_helpers import ROOT

# the arguments each command needs besides its configuration
REQUIRED = {
    "prepare": ["--out", "out"],
    "train": ["--data", "d.npz", "-T", "0.1", "--out", "p.nc"],
    "spectra": ["scan.nc", "--out", "s.csv"],
    "figures": ["scan.nc", "s.csv", "--out-dir", "f"],
    "maps": ["p.nc", "--data", "d.npz", "--out-dir", "m"],
    "hysteresis": ["scan.nc", "cool.nc", "s.csv", "--out-dir", "f"],
    "autoencoder": ["--data", "d.npz", "--out", "a.csv"],
    "refine": ["p.nc", "--out", "r.json"],
}
# keys of a command's sections that it does not read: the autoencoder baseline's k runs
# over 1 .. baselines.autoencoder.max_latents, not the VAE's model.latents (its stage
# reads the model section for the architecture)
# the baseline is of the MLP architecture: a custom model's keys do not apply to it
UNREAD = {"autoencoder": {"model.latents", "model.factory", "model.options"}}


def leaf_keys(entry: str) -> set[str]:
    """Every key of a run section, ``section.name``, or deeper in nested objects
    (``baselines.autoencoder.max_latents``); of an entry ``section.name`` of a stage, that
    key's."""

    def walk(prop, path):
        if "properties" not in prop:
            return {".".join(path)}
        return set().union(*(walk(p, [*path, k]) for k, p in prop["properties"].items()))

    return walk(settings.key_schema(entry), entry.split("."))


def subparser(command):
    return build_parser()._subparsers._group_actions[0].choices[command]


def parse(command, *extra, run_config=None):
    parser = build_parser()
    argv = [command, *REQUIRED[command], *extra]
    if run_config is not None:
        argv += ["--run-config", str(run_config)]
    args = parser.parse_args(argv)
    return with_run_config(parser, argv, args) if run_config is not None else args


def options(command):
    return {o.key: o for o in subparser(command).get_default("config_options")}


@pytest.mark.parametrize("command", settings.STAGES)
def test_every_key_a_command_reads_is_one_of_its_options(command):
    keys = set().union(*(leaf_keys(section) for section in settings.STAGES[command]))
    assert set(options(command)) == keys - UNREAD.get(command, set())


@pytest.mark.parametrize("command", settings.STAGES)
def test_option_defaults_are_the_schemas(command):
    args = parse(command)
    actions = {a.option_strings[0]: a for a in subparser(command)._actions if a.option_strings}
    checked = 0
    for key, option in options(command).items():
        action = actions[option.flag]
        if "default" not in settings.key_schema(key) or "default" in action.schema_overrides:
            continue  # no schema default, or the command's own (gpu -> --device; --kind mlp)
        default = settings.key_schema(key)["default"]
        convert = action.type or (lambda v: v)
        expected = [str(v) for v in default] if isinstance(default, list) else default
        if not isinstance(default, list):
            expected = convert(str(default))
        assert getattr(args, action.dest) == expected, key
        checked += 1
    expected = {
        "prepare": 13,
        "train": 16,
        "spectra": 4,
        "figures": 5,
        "maps": 4,
        "hysteresis": 4,
        "autoencoder": 14,
        "refine": 5,
    }
    assert checked == expected[command]


def test_the_fit_cut_has_one_home():
    assert thresholds.RHO_MIN == settings.section_defaults("spectra")["rho_min"]
    assert parse("spectra").rho_min == parse("figures").rho_min == thresholds.RHO_MIN


# ---- what common.smk wrote before the run configuration, verbatim -------------------


def old_training_args(run):
    tr, model = run["training"], run["model"]
    return " ".join(
        [
            f"--latents {model['latents']}",
            f"--sigma2 {model['sigma2']}",
            f"--max-updates {tr['max_updates']}",
            f"--patience {tr['patience']}",
            f"--batch-size {tr['batch_size']}",
            f"--learning-rate {tr['learning_rate']}",
            f"--eval-every {tr['eval_every']}",
            f"--eval-split {tr['eval_split']}",
            f"--engine {tr['engine']}",
            f"--checkpoint-every {tr['checkpoint_every']}",
            f"--device {'cuda' if tr['gpu'] else 'cpu'}",
        ]
    )


def old_dataset_args(run):
    ds, sp = run["dataset"], run["split"]
    paths = ds.get("path") or []
    paths = [paths] if isinstance(paths, str) else list(paths)
    args = [f"--source {ds['source']}"]
    args += [f"--path {' '.join(map(shlex.quote, map(str, paths)))}"] if paths else []
    args += [
        f"--block-km {sp['block_km']}",
        f"--fractions {' '.join(map(str, sp['fractions']))}",
        f"--split-seed {sp['seed']}",
    ]
    if ds["source"] == "worldclim":
        args.append(f"--resolution {ds['resolution']}")
        if ds.get("sha256"):
            args.append(f"--sha256 {ds['sha256']}")
    if ds.get("split_column"):
        args.append(f"--split-column {shlex.quote(ds['split_column'])}")
    if ds.get("drop_columns"):
        args.append(f"--drop-columns {' '.join(map(shlex.quote, ds['drop_columns']))}")
    if ds.get("nodata") is not None:
        args.append(f"--nodata={ds['nodata']!r}")
    if ds["source"] == "synthetic":
        args.append(f"--synthetic-seed {ds['synthetic_seed']}")
    return " ".join(args)


RUNS = {
    "defaults": {"dataset": {"source": "synthetic"}, "scan": {"temperatures": [0.1]}},
    "every key set": {
        "dataset": {
            "source": "table",
            "path": "samples, 2024.csv",
            "split_column": "part",
            "drop_columns": ["site id", "date"],
            "nodata": -3.4e38,
        },
        "split": {"block_km": 250.5, "fractions": [0.5, 0.25, 0.25], "seed": 3},
        "model": {"latents": 7, "sigma2": 0.5},
        "training": {
            "max_updates": 12345,
            "patience": 2000,
            "batch_size": 64,
            "learning_rate": 1.0e-5,  # json.dumps writes 1e-05: read back as a number
            "eval_every": 50,
            "eval_split": "val",
            "engine": "autograd",
            "checkpoint_every": 77,
            "gpu": True,
        },
        "scan": {"temperatures": [0.1]},
        "spectra": {"rho_min": 0.125},
    },
    "worldclim": {
        "dataset": {"source": "worldclim", "path": "wc.zip", "sha256": "ab" * 32},
        "scan": {"temperatures": [0.1]},
    },
}


def write_stage(tmp_path, run, stage):
    path = tmp_path / f"{stage}.json"
    settings.write_run_config(path, settings.stage_config(run, stage))
    return path


@pytest.mark.parametrize("name", RUNS)
def test_a_run_configuration_gives_the_flags_common_smk_wrote(tmp_path, name):
    run = settings.resolve_run(RUNS[name])
    train = parse("train", *shlex.split(old_training_args(run)))
    assert vars(parse("train", run_config=write_stage(tmp_path, run, "train"))) == {
        **vars(train),
        "run_config": tmp_path / "train.json",
    }
    prepare = vars(parse("prepare", *shlex.split(old_dataset_args(run))))
    from_file = vars(parse("prepare", run_config=write_stage(tmp_path, run, "prepare")))
    assert from_file == {**prepare, "run_config": tmp_path / "prepare.json"}
    for stage in ("spectra", "figures"):
        args = parse(stage, run_config=write_stage(tmp_path, run, stage))
        assert args.rho_min == run["spectra"]["rho_min"]


def test_a_mirror_url_now_reaches_prepare(tmp_path):
    """The one difference from the old flags: dataset.url reaches prepare too, which
    records it in split_summary.json (the old flags passed it to fetch only, so the
    summary named the official server even for an archive from a mirror)."""
    run = settings.resolve_run(RUNS["worldclim"])
    run["dataset"]["url"] = "https://mirror.example/wc.zip"
    old = parse("prepare", *shlex.split(old_dataset_args(run)))
    new = parse("prepare", run_config=write_stage(tmp_path, run, "prepare"))
    assert (old.url, new.url) == (None, "https://mirror.example/wc.zip")


def test_an_option_on_the_command_line_wins(tmp_path):
    run = settings.resolve_run(RUNS["every key set"])
    path = write_stage(tmp_path, run, "train")
    args = parse("train", "--max-updates", "99", "--device", "cpu", run_config=path)
    assert (args.max_updates, args.device, args.latents) == (99, "cpu", 7)
    # also when the option comes first
    parser = build_parser()
    argv = ["train", "--engine", "fast", "--run-config", str(path), *REQUIRED["train"]]
    args = with_run_config(parser, argv, parser.parse_args(argv))
    assert (args.engine, args.batch_size) == ("fast", 64)


def test_a_whole_resolved_run_is_a_run_configuration(tmp_path):
    run = settings.resolve_run(RUNS["every key set"])
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(json.loads(json.dumps(run))))
    assert parse("train", run_config=path).learning_rate == 1.0e-5
    assert parse("spectra", run_config=path).rho_min == 0.125


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (None, "does not exist"),
        ("{not json", "is not valid JSON or YAML"),
        ("[1, 2]", "expected a mapping of sections"),
        (
            '{"training": {"max_updates": 0}}',
            "config key training.max_updates: 0 is less than the minimum of 1",
        ),
        ('{"training": {"max_updates": 1e5}}', "expected an integer: write 100000"),
        ('{"model": {"sigma2": NaN}}', "config key model.sigma2: .nan is not a finite number"),
        ('{"training": {"optimizer": "sgd"}}', "'optimizer' was unexpected"),
    ],
)
def test_a_bad_run_configuration_is_one_line(tmp_path, capsys, content, words):
    path = tmp_path / "train.json"
    if content is not None:
        path.write_text(content)
    argv = ["train", *REQUIRED["train"], "--out", str(tmp_path / "p.nc")]
    assert main([*argv, "--run-config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"collapse-spectroscopy train: error: --run-config {str(path)!r}")
    assert words in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ([path.name] if content else [])


def test_a_command_reads_only_its_own_sections(tmp_path):
    """train ignores a bad spectra section: it is neither its setting nor its trigger."""
    path = tmp_path / "run.json"
    path.write_text('{"spectra": {"rho_min": 7}, "model": {"latents": 3}}')
    assert parse("train", run_config=path).latents == 3


def test_an_option_outside_its_stage_is_refused():
    parser = build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]
    with pytest.raises(ValueError, match="outside its stage"):
        config_option(train, "spectra.rho_min", "--rho-min", type=float, help="x")


# runs that leave most keys to the schema, of each family and source kind (the test's
# own: the shipped config/config.yaml is the user's to edit)
SPARSE_RUNS = {
    "runs": {
        "linear": {
            "dataset": {"source": "synthetic"},
            "model": {"latents": 4},
            "scan": {"temperatures": [0.01, 0.1]},
        },
        "mlp": {
            "dataset": {"source": "synthetic", "synthetic_kind": "manifold"},
            "model": {"kind": "mlp", "hidden": [16, 16]},
            "scan": {"temperatures": {"min": 0.01, "max": 0.5, "num": 4}, "seeds": [0, 1]},
        },
        "table": {
            "dataset": {"source": "table", "path": "x.csv", "split_column": "split"},
            "training": {"max_updates": 1000, "average": "ema"},
            "scan": {"temperatures": {"min": 0.001, "max": 1.0, "num": 7}},
            "spectra": {"rho_min": 0.1},
        },
    }
}


@pytest.mark.parametrize("source", ["sparse runs", ".test/config/config.yaml"])
def test_resolve_run_fills_in_what_snakemake_validate_does(source):
    if source == "sparse runs":
        raw = copy.deepcopy(SPARSE_RUNS)
    else:
        raw = yaml.safe_load((ROOT / source).read_text())
    validated = copy.deepcopy(raw)
    validate(validated, schema=str(settings.SCHEMA_PATH))
    for name, run in raw["runs"].items():
        assert settings.resolve_run(run) == validated["runs"][name]
    assert settings.resolve_run(raw["runs"][name]) != raw["runs"][name]  # it filled in some


def test_engine_names_are_the_registry():
    schema_names = settings.key_schema("training.engine")["enum"]
    assert schema_names == ["auto", *ENGINES]
    engine = next(a for a in subparser("train")._actions if a.dest == "engine")
    assert list(engine.choices) == schema_names


def test_dataset_sources_are_the_registry():
    """The schema's dataset.source enum is the sources the library implements
    (datasets.sources.SOURCES, which the prepare command checks --source against)."""
    from collapse_spectroscopy.datasets.sources import SOURCES

    schema_names = settings.key_schema("dataset.source")["enum"]
    assert sorted(schema_names) == sorted(SOURCES)


def test_library_defaults_are_the_schema_defaults():
    """Library functions callable without the workflow default to the schema's values."""
    import inspect

    from collapse_spectroscopy.datasets import sources, split
    from collapse_spectroscopy.training.scan_point import train_scan_point

    sig = inspect.signature(train_scan_point).parameters
    model = settings.section_defaults("model")
    assert sig["latents"].default == model["latents"]
    assert sig["sigma2"].default == model["sigma2"]
    s = settings.section_defaults("split")
    assert (split.DEFAULT_BLOCK_KM, list(split.DEFAULT_FRACTIONS), split.DEFAULT_SEED) == (
        s["block_km"],
        s["fractions"],
        s["seed"],
    )
    d = settings.section_defaults("dataset")
    opts = sources.SourceOptions()
    assert (opts.resolution, opts.synthetic_seed) == (d["resolution"], d["synthetic_seed"])
