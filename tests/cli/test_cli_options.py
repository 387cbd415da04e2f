"""Every option that sets a configuration key is generated from the key's schema (issue 21).

- its help holds the key's description (and names the key), its default is the schema's,
  its choices are the key's enum, its type and nargs follow the key's type; the few
  options where a command overrides one of these are listed here, so that a new override
  fails until it is listed;
- every option a run configuration sets (``--run-config``) is such an option;
- no description of a key is written twice: no option's help text in ``cli/*.py`` repeats
  a long piece (:data:`WINDOW` characters) of a description in the schema.
"""

import argparse
import ast
from pathlib import Path

import pytest

from collapse_spectroscopy.cli import build_parser
from collapse_spectroscopy.cli.runconfig import scalar_argv
from collapse_spectroscopy.cli.schema_options import (
    schema_argument,
    schema_default,
    schema_kwargs,
)
from collapse_spectroscopy.config import settings

CLI = Path(__file__).resolve().parents[2] / "src" / "collapse_spectroscopy" / "cli"

# (command, option) whose default is the command's own, not the schema's: the key has
# none (dataset.source is required in a run; a list option takes none as empty), the
# option is not the key's value (training.gpu -> a torch device), or the value is required
DEFAULT_OVERRIDES = {
    ("prepare", "--source"): "synthetic",
    ("prepare", "--path"): [],
    ("prepare", "--drop-columns"): [],
    ("train", "--device"): "auto",
    ("autoencoder", "--device"): "auto",
    # model.kind's default is linear, which has no autoencoder baseline
    ("autoencoder", "--kind"): "mlp",
    ("study", "--rho-min"): None,
}
# (command, option) whose enum the command checks itself, with a message naming the key:
# argparse has no choices, and the help lists the enum
CHECKED_BY_THE_COMMAND = {
    ("prepare", "--source"),
    ("prepare", "--resolution"),
    ("fetch", "--resolution"),
}
# (command, option) whose type is not the key's: training.gpu (a boolean) sets --device
TYPE_OVERRIDES = {("train", "--device"), ("autoencoder", "--device")}


def subparsers() -> dict[str, argparse.ArgumentParser]:
    return build_parser()._subparsers._group_actions[0].choices


def schema_actions() -> list[tuple[str, argparse.Action]]:
    """(command, action) of every option generated from the schema."""
    return [
        (command, action)
        for command, parser in subparsers().items()
        for action in parser._actions
        if getattr(action, "schema_key", None)
    ]


ACTIONS = schema_actions()
IDS = [f"{command} {action.option_strings[0]}" for command, action in ACTIONS]


def one_line(text: str) -> str:
    return " ".join(text.split())


def expanded_help(command: str, action: argparse.Action) -> str:
    """The help as ``--help`` prints it, on one line (``%(default)s`` filled in)."""
    formatter = subparsers()[command]._get_formatter()
    return one_line(formatter._expand_help(action))


def test_the_options_are_found():
    """The tests below would pass on none: every command's key options are here."""
    counts = {}
    for command, _ in ACTIONS:
        counts[command] = counts.get(command, 0) + 1
    assert counts == {
        "prepare": 20,
        "fetch": 3,
        "train": 18,
        "refine": 5,
        "autoencoder": 17,
        "spectra": 4,
        "figures": 5,
        "maps": 4,
        "hysteresis": 4,
        "study": 1,
        "beta": 1,
    }


@pytest.mark.parametrize("command", settings.STAGES)
def test_every_option_a_run_configuration_sets_is_generated_from_the_schema(command):
    parser = subparsers()[command]
    by_flag = {a.option_strings[0]: a for a in parser._actions if a.option_strings}
    options = parser.get_default("config_options")
    assert options
    for option in options:
        assert getattr(by_flag[option.flag], "schema_key", None) == option.key, option.flag


@pytest.mark.parametrize(("command", "action"), ACTIONS, ids=IDS)
def test_help_is_the_keys_description(command, action):
    key = action.schema_key
    text = expanded_help(command, action)
    about = one_line(settings.key_schema(key)["description"])
    assert text.startswith(about), (text, about)
    assert f"({key}" in text


@pytest.mark.parametrize(("command", "action"), ACTIONS, ids=IDS)
def test_default_is_the_schemas(command, action):
    where = (command, action.option_strings[0])
    overridden = "default" in action.schema_overrides
    assert overridden == (where in DEFAULT_OVERRIDES), "list (or drop) the override here"
    if overridden:
        assert action.default == DEFAULT_OVERRIDES[where]
        return
    prop = settings.key_schema(action.schema_key)  # section.name, or deeper
    assert action.default == schema_default(action.schema_key)
    if "default" not in prop:
        assert action.default is None
        return
    default = prop["default"]
    value = action.default
    if isinstance(value, str) and action.type is not None:
        value = action.type(value)  # as argparse converts it
    assert value == ([str(v) for v in default] if isinstance(default, list) else default)
    # and the help shows it as typed
    shown = " ".join(action.default) if isinstance(default, list) else str(action.default)
    assert f"default: {shown})" in expanded_help(command, action)


@pytest.mark.parametrize(("command", "action"), ACTIONS, ids=IDS)
def test_choices_are_the_enum(command, action):
    enum = settings.key_schema(action.schema_key).get("enum")
    where = (command, action.option_strings[0])
    if enum is None:
        assert action.choices is None
    elif where in CHECKED_BY_THE_COMMAND:
        assert action.choices is None
        assert "one of " + ", ".join(map(str, enum)) in expanded_help(command, action)
    else:
        assert list(action.choices) == enum
    assert (where in CHECKED_BY_THE_COMMAND) == ("choices" in action.schema_overrides)


@pytest.mark.parametrize(("command", "action"), ACTIONS, ids=IDS)
def test_type_and_nargs_follow_the_schema(command, action):
    prop = settings.key_schema(action.schema_key)
    kind = prop.get("type")
    if (command, action.option_strings[0]) in TYPE_OVERRIDES:
        assert kind == "boolean" and action.type is None
        return
    if kind == "array" or any(alt.get("type") == "array" for alt in prop.get("oneOf", ())):
        # the items stay text, as the default is given: the command converts them
        assert action.nargs in ("+", "*") and action.type is None
        return
    assert action.nargs is None
    if kind == "integer":
        # int, holding the schema's bounds (split.seed: minimum 0)
        assert action.type is int or action.type.__name__ == "int"
        assert action.type("3") == 3
        if "minimum" in prop:
            with pytest.raises(argparse.ArgumentTypeError, match=">="):
                action.type(str(prop["minimum"] - 1))
    elif kind == "number":
        # float, or a stricter float the command chose (positive_float, patience)
        assert action.type is not None and isinstance(action.type("0.5"), float)
        assert action.type("0.5") == 0.5
    elif kind == "object":  # JSON (model.options)
        assert action.type('{"a": 1}') == {"a": 1}
        with pytest.raises(argparse.ArgumentTypeError, match="expected a JSON object"):
            action.type("[1]")
    else:  # text or an enum: argparse's own str
        assert action.type is None


def test_the_generator_takes_everything_from_the_schema():
    hidden = schema_kwargs("model.hidden")
    assert hidden["nargs"] == "+" and hidden["default"] == ["64", "64"]
    assert hidden["help"].startswith(settings.key_schema("model.hidden")["description"])
    assert hidden["help"].endswith("(model.hidden; default: 64 64)")
    kind = schema_kwargs("model.kind")
    assert kind["choices"] == ["linear", "mlp", "custom"] and "type" not in kind
    latents, block_km = (
        schema_kwargs("model.latents")["type"],
        schema_kwargs("split.block_km")["type"],
    )
    assert latents("12") == 12 and isinstance(latents("12"), int)
    with pytest.raises(argparse.ArgumentTypeError, match=">= 1"):  # the schema's minimum
        latents("0")
    assert isinstance(block_km("500"), float)
    # a suffix follows the description; a help= would be a second description
    assert "; in km (split.block_km" in schema_kwargs("split.block_km", suffix="; in km")["help"]
    with pytest.raises(TypeError, match="schema's description"):
        schema_kwargs("model.latents", help="K")


def test_a_boolean_key_is_a_true_false_option():
    """No option sets a boolean key as its value today (training.gpu sets --device), but
    the generator makes one that a run configuration's value reaches: --gpu=True."""
    parser = argparse.ArgumentParser(prog="x")
    action = schema_argument(parser, "training.gpu", "--gpu")
    assert action.default is False and action.schema_key == "training.gpu"
    assert parser.parse_args([]).gpu is False
    assert parser.parse_args(scalar_argv("--gpu", True)).gpu is True
    assert parser.parse_args(["--gpu", "false"]).gpu is False
    with pytest.raises(SystemExit):
        parser.parse_args(["--gpu", "maybe"])


# ---- no description of a key written twice ---------------------------------------------

WINDOW = 40
# the calls that declare an option, and the keywords that carry an option's help text
OPTION_CALLS = {"add_argument", "config_option", "schema_argument", "add_tolerances_option"}
HELP_KEYWORDS = {"help", "suffix"}


def descriptions() -> dict[str, str]:
    """Every description of the schema (keys, sections, alternatives), on one line."""
    out = {}

    def walk(node, path):
        if isinstance(node, dict):
            if isinstance(node.get("description"), str):
                out[".".join(path) or "(top)"] = one_line(node["description"]).lower()
            for k, v in node.items():
                walk(v, [*path, k] if k not in ("properties", "$defs", "oneOf") else path)
        elif isinstance(node, list):
            for v in node:
                walk(v, path)

    walk(settings.load_schema(), [])
    return out


def help_literals(source: str) -> list[tuple[int, str]]:
    """(line, text) of every string literal that is an option's help in ``source``: the
    strings of a call declaring an option, or of a help=/suffix= keyword, with the
    module-level constants they name (``help=RESOLUTION_HELP``)."""
    tree = ast.parse(source)
    constants = {
        target.id: node.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    roots = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name in OPTION_CALLS:
                roots += [*node.args, *(k.value for k in node.keywords)]
            else:
                roots += [k.value for k in node.keywords if k.arg in HELP_KEYWORDS]
    out, seen = [], set()
    while roots:
        root = roots.pop()
        for sub in ast.walk(root):
            if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
                out.append((sub.lineno, sub.value))
            elif isinstance(sub, ast.Name) and sub.id in constants and sub.id not in seen:
                seen.add(sub.id)
                roots.append(constants[sub.id])
    return out


def repeated_descriptions(source: str, about: dict[str, str]) -> list[str]:
    """'line: key: text' for each help literal of ``source`` repeating a description."""
    problems = []
    for line, text in help_literals(source):
        text = one_line(text).lower()
        for key, description in about.items():
            pieces = (description[i : i + WINDOW] for i in range(len(description) - WINDOW + 1))
            piece = next((p for p in pieces if p in text), None)
            if piece:
                problems.append(f"{line}: {key}: {piece!r}")
    return problems


def test_the_check_sees_a_repeated_description():
    """The check below would pass on nothing: a copied description, or a piece of one,
    in a help= or a suffix=, or in a constant a help names, is found."""
    about = descriptions()
    copied = one_line(settings.key_schema("training.engine")["description"])
    for source in (
        f"p.add_argument('--engine', help={copied!r})",
        f"config_option(p, 'training.engine', '--engine', suffix='; {copied[30:90]}')",
        f"HELP = 'x ' + {copied[10:70].upper()!r}\np.add_argument('--engine', help=HELP)",
    ):
        assert repeated_descriptions(source, about), source
    assert not repeated_descriptions("p.add_argument('--x', help='something else')", about)


@pytest.mark.parametrize("path", sorted(CLI.glob("*.py")), ids=lambda p: p.name)
def test_no_description_of_a_key_is_written_twice(path):
    problems = repeated_descriptions(path.read_text(), descriptions())
    assert not problems, f"{path.name} repeats the schema (give suffix= instead): " + "; ".join(
        problems
    )
