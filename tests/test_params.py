"""params.yaml schema: the shipped file is valid, and every kind of bad input is one clear line."""

from pathlib import Path

import pytest
import yaml

from xornet.config.presets import PRESETS
from xornet.config.schema import load_params, parse_override
from xornet.errors import ParamsError

REPO_ROOT = Path(__file__).resolve().parents[1]
PARAMS = REPO_ROOT / "params.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def with_change(tmp_path: Path, section: str, key: str, value) -> Path:
    data = yaml.safe_load(PARAMS.read_text())
    if value is KeyError:
        del data[section][key]
    else:
        data[section][key] = value
    return write(tmp_path, yaml.safe_dump(data))


def test_shipped_params_are_valid_and_complete():
    params = load_params(PARAMS)
    flat = params.flat()
    for key in (
        "data.kind data.n_samples data.test_fraction data.noise data.n_bits data.seed "
        "model.hidden model.activation model.init model.init_scale model.seed "
        "train.loss train.optimizer train.learning_rate train.epochs train.batch_size "
        "train.snapshot_every evaluate.threshold tracking.enabled tracking.experiment"
    ).split():
        assert key in flat
    assert set(params.model_dump()) >= {"data", "model", "train", "evaluate", "plot", "tracking"}


def test_every_key_in_params_yaml_has_a_comment():
    for line in PARAMS.read_text().splitlines():
        if line.startswith("  ") and ":" in line:
            assert "#" in line, f"uncommented parameter line: {line!r}"


def test_overrides_are_applied_and_typed():
    params = load_params(PARAMS, ("model.hidden=[3, 5]", "train.learning_rate=0.25"))
    assert params.model.hidden == [3, 5]
    assert params.train.learning_rate == 0.25


def test_tutorial_preset_is_the_tutorial_setting():
    params = load_params(PARAMS, PRESETS["tutorial"])
    assert params.model.hidden == [2]
    assert params.model.activation == "sigmoid"
    assert params.model.init == "normal" and params.model.init_scale == 0.01
    assert params.model.bias_scale == 0.0
    assert (params.train.loss, params.train.optimizer) == ("bce", "gd")
    assert params.train.learning_rate == 0.01


BAD_VALUES = [
    # (section, key, value, words the one-line message must contain)
    ("train", "epochs", "ten", ["train.epochs", "'ten'", "integer"]),
    ("model", "hidden", [4, "x"], ["model.hidden[1]", "'x'", "integer"]),
    ("train", "learning_rate", 0, ["train.learning_rate", "0", "greater than 0"]),
    ("train", "learning_rate", -0.5, ["train.learning_rate", "-0.5", "greater than 0"]),
    ("train", "epochs", 0, ["train.epochs", "0", "greater than or equal to 1"]),
    ("model", "hidden", [4, 0], ["model.hidden[1]", "0", "greater than or equal to 1"]),
    ("model", "hidden", [], ["model.hidden", "at least 1"]),
    ("data", "test_fraction", 0.0, ["data.test_fraction", "0.0", "greater than 0"]),
    ("data", "test_fraction", 1.0, ["data.test_fraction", "1.0", "less than 1"]),
    ("data", "n_samples", 2, ["data.n_samples", "2", "too small to split"]),
    ("data", "noise", -0.1, ["data.noise", "-0.1", "greater than or equal to 0"]),
    (
        "model",
        "activation",
        "swish",
        ["model.activation", "'swish'", "'sigmoid', 'tanh' or 'relu'"],
    ),
    ("train", "loss", "hinge", ["train.loss", "'hinge'", "'bce' or 'mse'"]),
    ("train", "optimizer", "sgd", ["train.optimizer", "'sgd'", "'gd', 'momentum' or 'adam'"]),
    ("model", "init", "zeros", ["model.init", "'zeros'", "'normal', 'xavier' or 'he'"]),
    ("data", "kind", "and", ["data.kind", "'and'", "'xor', 'noisy_xor' or 'parity'"]),
    ("tracking", "enabled", "maybe", ["tracking.enabled", "'maybe'", "boolean"]),
    ("train", "learning_rte", 0.1, ["unknown key", "train.learning_rte", "learning_rate"]),
    ("train", "epochs", KeyError, ["missing key", "train.epochs"]),
]


@pytest.mark.parametrize(("section", "key", "value", "words"), BAD_VALUES)
def test_bad_values_give_one_line_naming_key_value_and_allowed(
    tmp_path, section, key, value, words
):
    path = with_change(tmp_path, section, key, value)
    with pytest.raises(ParamsError) as info:
        load_params(path)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


def test_missing_section(tmp_path):
    data = yaml.safe_load(PARAMS.read_text())
    del data["train"]
    with pytest.raises(ParamsError, match="missing section 'train'"):
        load_params(write(tmp_path, yaml.safe_dump(data)))


def test_unknown_section(tmp_path):
    data = yaml.safe_load(PARAMS.read_text())
    data["trian"] = {"epochs": 3}
    with pytest.raises(ParamsError, match="unknown section 'trian'.*allowed: data, model, train"):
        load_params(write(tmp_path, yaml.safe_dump(data)))


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("data: [1, 2\n", r"YAML syntax error at line \d+"),
        ("", "params file is empty"),
        ("# only a comment\n", "params file is empty"),
        ("- just\n- a list\n", "expected a mapping of sections"),
    ],
)
def test_unreadable_files(tmp_path, text, pattern):
    with pytest.raises(ParamsError, match=pattern):
        load_params(write(tmp_path, text))


def test_missing_file(tmp_path):
    with pytest.raises(ParamsError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    "text", ["train.epochs", "epochs=3", "train.=3", ".epochs=3", "train.epochs=", "a.b.c=1"]
)
def test_malformed_set(text):
    with pytest.raises(ParamsError, match="malformed --set"):
        parse_override(text)


def test_set_unknown_key_names_allowed_keys():
    with pytest.raises(ParamsError, match="unknown key 'train.learning_rte'.*learning_rate"):
        load_params(PARAMS, ("train.learning_rte=0.1",))


def test_set_values_are_validated_like_the_file():
    with pytest.raises(ParamsError, match="train.epochs = 'ten'"):
        load_params(PARAMS, ("train.epochs=ten",))


@pytest.mark.parametrize(("text", "value"), [("1e-8", 1e-8), ("1E6", 1e6), ("-2.5e-3", -2.5e-3)])
def test_exponent_floats_without_a_dot_are_floats(text, value):
    assert parse_override(f"train.eps={text}")[2] == value


# ------------------------------------------------------------- hostile params (issue 14)
@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("train.learning_rate=.inf", ["train.learning_rate", "inf", "finite"]),
        ("train.learning_rate=.nan", ["train.learning_rate", "nan", "finite"]),
        ("data.noise=.inf", ["data.noise", "inf", "finite"]),
        ("data.noise=-.inf", ["data.noise", "-inf", "finite"]),
        ("data.noise=1e300", ["data.noise", "1e+300", "less than or equal to 10"]),
        ("model.init_scale=1e300", ["model.init_scale", "less than or equal to 100"]),
        ("model.bias_scale=.inf", ["model.bias_scale", "finite"]),
        ("train.eps=1e300", ["train.eps", "less than or equal to 1"]),
        ("train.momentum=1.0", ["train.momentum", "less than 1"]),
        ("train.beta1=.nan", ["train.beta1", "finite"]),
        ("train.beta2=1.0", ["train.beta2", "less than 1"]),
        ("evaluate.threshold=.nan", ["evaluate.threshold", "finite"]),
        ("evaluate.threshold=1.5", ["evaluate.threshold", "less than 1"]),
        ("data.test_fraction=.nan", ["data.test_fraction", "finite"]),
        ("study.plateau_tol=.inf", ["study.plateau_tol", "finite"]),
        ("model.seed=18446744073709551616", ["model.seed", "less than or equal to 4294967295"]),
        ("train.learning_rate={a: 1}", ["train.learning_rate", "{'a': 1}", "valid number"]),
        ("train.epochs={a: 1}", ["train.epochs", "{'a': 1}", "integer"]),
    ],
)
def test_floats_are_finite_and_in_range(override, words):
    with pytest.raises(ParamsError) as info:
        load_params(PARAMS, (override,))
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"


def test_duplicate_keys_are_refused_at_any_depth(tmp_path):
    text = PARAMS.read_text()
    for doubled in ("  epochs: 1000", "data:", "  seed: 0 "):
        at = text.index(doubled)
        line = text[at : text.index("\n", at)]
        if doubled == "data:":  # a whole section twice
            broken = text + "\ndata:\n  kind: xor\n"
        else:
            broken = text.replace(line, line + "\n" + line.split("#")[0], 1)
        with pytest.raises(ParamsError, match=r"line \d+.*duplicate key '(epochs|data|seed)'"):
            load_params(write(tmp_path, broken))


def test_duplicate_keys_inside_values_are_refused():
    with pytest.raises(ParamsError, match="duplicate key 'model.hidden'"):
        parse_override("study.grid={model.hidden: [[2]], model.hidden: [[4]]}")


def test_merge_keys_may_override_what_they_merge(tmp_path):
    text = PARAMS.read_text().replace("tracking:\n", "tracking:\n  <<: {enabled: false}\n", 1)
    assert load_params(write(tmp_path, text)).tracking.enabled is True


def billion_laughs(levels: int = 9) -> str:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (billion_laughs(), ["expands to more than", "aliases"]),
        ("a: &r [1, *r]\n", ["recursive alias"]),
        ("a: " + "[" * 5000 + "]" * 5000 + "\n", ["nested deeper than"]),
        ("".join(f"a{i}: &a{i} [{f'*a{i - 1}' if i else 1}]\n" for i in range(60)), ["deeper"]),
    ],
    ids=["alias bomb", "recursive", "deep", "deep through aliases"],
)
def test_yaml_that_would_expand_is_refused_quickly(tmp_path, text, words):
    import resource
    import time

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.monotonic()
    with pytest.raises(ParamsError) as info:
        load_params(write(tmp_path, text))
    assert time.monotonic() - start < 5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KiB
    for word in words:
        assert word in str(info.value)


def test_alias_bomb_in_set_is_refused():
    with pytest.raises(ParamsError, match="malformed --set.*expands to more than"):
        parse_override("study.grid=" + billion_laughs().replace("\n", ", ").join("{}"))


def test_params_file_size_is_bounded(tmp_path):
    with pytest.raises(ParamsError, match="params file larger than"):
        load_params(write(tmp_path, "# padding\n" * 200_000))


def test_values_in_messages_are_cut_short():
    with pytest.raises(ParamsError) as info:
        load_params(PARAMS, ("train.learning_rate=" + "x" * 10_000,))
    assert len(str(info.value)) < 300
