"""Each stage by hand: --help, --set overrides, --init-from, and one-line exit-2 errors
that leave every output untouched."""

import hashlib
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import OUTPUTS, REPO_ROOT, TerminalStage, base_env

STAGES = REPO_ROOT / "stages"
SMALL = ("--set", "train.epochs=60", "--set", "data.n_samples=200")


def stage(name: str, *args: str, cwd: Path, env=None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(STAGES / f"{name}.py"), *args],
        cwd=cwd,
        env=env or base_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    shutil.copy(REPO_ROOT / "params.yaml", tmp_path / "params.yaml")
    return tmp_path


@pytest.fixture(scope="module")
def finished_once(tmp_path_factory) -> Path:
    """generate, train and evaluate run once for the module (small settings)."""
    folder = tmp_path_factory.mktemp("finished")
    shutil.copy(REPO_ROOT / "params.yaml", folder / "params.yaml")
    for name in ("generate", "train", "evaluate"):
        proc = stage(name, *SMALL, cwd=folder)
        assert proc.returncode == 0, proc.stderr
    return folder


@pytest.fixture
def finished(finished_once: Path, tmp_path: Path) -> Path:
    """A work dir of its own in which generate, train and evaluate have run."""
    folder = tmp_path / "finished"
    shutil.copytree(finished_once, folder)
    return folder


def assert_one_line_error(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in lines[0], f"{word!r} not in {lines[0]!r}"


@pytest.mark.parametrize("name", ["generate", "train", "evaluate", "plot"])
def test_help_describes_inputs_outputs_and_options(name, workdir):
    proc = stage(name, "--help", cwd=workdir)
    assert proc.returncode == 0
    for word in ("Reads", "Writes", "--params", "--set", "--preset"):
        assert word in proc.stdout


def test_stages_by_hand_write_their_outputs(finished):
    for path in OUTPUTS:
        if not path.startswith("plots/"):
            assert (finished / path).is_file(), path
    history = (finished / "metrics/history.csv").read_text().splitlines()
    assert history[0] == "epoch,train_loss,val_loss,val_accuracy"
    assert len(history) == 1 + 60  # --set train.epochs=60 took effect
    with np.load(finished / "data/train.npz", allow_pickle=False) as data:
        assert data["X"].shape == (2, 160)  # --set data.n_samples=200, test_fraction 0.2
    predictions = (finished / "metrics/predictions.csv").read_text().splitlines()
    assert predictions[0] == "actual,predicted" and len(predictions) == 41


def test_output_is_quiet_when_not_a_terminal(workdir):
    stage("generate", *SMALL, cwd=workdir)
    proc = stage("train", *SMALL, cwd=workdir)
    assert proc.returncode == 0
    assert proc.stderr == ""  # no progress bar in logs
    summary, diagnosis = proc.stdout.splitlines()  # the final metrics, then the diagnosis
    assert summary.startswith("train: epochs=") and diagnosis.startswith("train: diagnosis: ")


def test_preset_tutorial_stays_on_the_ln2_plateau(workdir):
    stage("generate", *SMALL, cwd=workdir)
    proc = stage("train", "--preset", "tutorial", "--set", "train.epochs=300", cwd=workdir)
    assert proc.returncode == 0, proc.stderr
    last = (workdir / "metrics/history.csv").read_text().splitlines()[-1].split(",")
    assert abs(float(last[1]) - np.log(2)) < 0.01  # label imbalance moves it slightly


def test_init_from_continues_training(finished):
    first = (finished / "metrics/history.csv").read_text().splitlines()
    shutil.copy(finished / "models/model.npz", finished / "start.npz")
    proc = stage("train", *SMALL, "--init-from", "start.npz", cwd=finished)
    assert proc.returncode == 0, proc.stderr
    second = (finished / "metrics/history.csv").read_text().splitlines()
    assert float(second[1].split(",")[1]) < float(first[1].split(",")[1])
    assert float(second[1].split(",")[1]) == pytest.approx(float(first[-1].split(",")[1]), rel=0.2)


def test_init_from_with_other_architecture_is_a_clear_error(finished):
    shutil.copy(finished / "models/model.npz", finished / "start.npz")
    before = digest(finished)
    proc = stage(
        "train", *SMALL, "--set", "model.hidden=[3]", "--init-from", "start.npz", cwd=finished
    )
    assert_one_line_error(proc, "start.npz", "2-8-1 tanh", "2-3-1 tanh", "does not match")
    assert digest(finished) == before


BAD_PARAMS = [
    (("--set", "train.learning_rte=0.1"), ["unknown key", "train.learning_rte"]),
    (("--set", "train.epochs=ten"), ["train.epochs", "'ten'"]),
    (("--set", "model.hidden=[4, x]"), ["model.hidden[1]", "'x'"]),
    (("--set", "train.learning_rate=0"), ["train.learning_rate", "greater than 0"]),
    (("--set", "train.epochs=0"), ["train.epochs"]),
    (("--set", "model.hidden=[0]"), ["model.hidden[0]"]),
    (("--set", "data.test_fraction=1"), ["data.test_fraction"]),
    (("--set", "data.n_samples=2"), ["data.n_samples", "too small"]),
    (("--set", "data.noise=-1"), ["data.noise"]),
    (("--set", "model.activation=swish"), ["model.activation", "'swish'", "'relu'"]),
    (("--set", "train.loss=hinge"), ["train.loss", "'hinge'"]),
    (("--set", "train.optimizer=sgd"), ["train.optimizer", "'sgd'"]),
    (("--set", "model.init=zeros"), ["model.init", "'zeros'"]),
    (("--set", "data.kind=and"), ["data.kind", "'and'"]),
    (("--set", "epochs"), ["malformed --set", "section.key=value"]),
    (("--set", "train.epochs="), ["malformed --set"]),
    (("--params", "missing.yaml"), ["missing.yaml", "not found"]),
    (("--preset", "keras"), ["--preset", "keras", "tutorial"]),
    (("--no-such-option",), ["--no-such-option"]),
]


@pytest.mark.parametrize(("args", "words"), BAD_PARAMS, ids=lambda v: str(v)[:40])
def test_bad_params_and_options(finished, args, words):
    before = digest(finished)
    proc = stage("train", *args, cwd=finished)
    assert_one_line_error(proc, *words)
    assert digest(finished) == before


@pytest.mark.parametrize("name", ["generate", "evaluate", "plot"])
@pytest.mark.parametrize(("args", "words"), [BAD_PARAMS[0], BAD_PARAMS[14], BAD_PARAMS[18]])
def test_bad_params_in_every_stage(finished, name, args, words):
    before = digest(finished)
    assert_one_line_error(stage(name, *args, cwd=finished), *words)
    assert digest(finished) == before


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("data: [1, 2\n", ["YAML syntax error", "line"]),
        ("", ["empty"]),
        ("train:\n  epochs: 3\n", ["missing section"]),
    ],
)
def test_broken_params_files(finished, text, words):
    (finished / "params.yaml").write_text(text)
    before = digest(finished)
    for name in ("generate", "train", "evaluate", "plot"):
        assert_one_line_error(stage(name, cwd=finished), "params.yaml", *words)
    assert digest(finished) == before


def corrupt(path: Path, how: str) -> None:
    if how == "missing":
        path.unlink()
    elif how == "truncated":
        path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    elif how == "garbage":
        path.write_bytes(b"this is not an npz file")
    elif how == "wrong shape":
        with np.load(path, allow_pickle=False) as data:
            X, y = data["X"], data["y"]
        np.savez(path, X=X, y=y[:, :-1])
    elif how == "bad labels":
        with np.load(path, allow_pickle=False) as data:
            X, y = data["X"], data["y"]
        np.savez(path, X=X, y=y + 2)


@pytest.mark.parametrize("how", ["missing", "truncated", "garbage", "wrong shape", "bad labels"])
@pytest.mark.parametrize(
    ("name", "victim"), [("train", "data/train.npz"), ("evaluate", "data/test.npz")]
)
def test_bad_data_files(finished, how, name, victim):
    corrupt(finished / victim, how)
    before = digest(finished)
    proc = stage(name, *SMALL, cwd=finished)
    assert_one_line_error(proc, victim)
    assert digest(finished) == before


@pytest.mark.parametrize("how", ["missing", "truncated", "garbage"])
@pytest.mark.parametrize("name", ["evaluate", "plot"])
def test_bad_model_file(finished, how, name):
    corrupt(finished / "models/model.npz", how)
    before = digest(finished)
    proc = stage(name, *SMALL, cwd=finished)
    assert_one_line_error(proc, "models/model.npz")
    assert digest(finished) == before


def test_divergence_is_one_line_and_writes_nothing(finished):
    before = digest(finished)
    proc = stage(
        "train",
        *SMALL,
        "--set",
        "train.learning_rate=1e308",
        cwd=finished,
    )
    assert proc.returncode == 1
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "diverged at epoch" in proc.stderr and "Traceback" not in proc.stderr
    assert digest(finished) == before


def test_sigterm_during_training_leaves_previous_outputs(finished):
    before = digest(finished)
    args = ["--set", "train.epochs=1000000", "--set", "data.n_samples=200"]
    stage = TerminalStage([sys.executable, str(STAGES / "train.py"), *args], finished, base_env())
    stage.wait_for_training()
    stage.proc.send_signal(signal.SIGTERM)
    err = stage.finish()
    assert stage.proc.returncode == 143
    assert err.strip().splitlines()[-1] == "train: error: terminated"
    assert "Traceback" not in err
    assert digest(finished) == before
    assert not [p for p in finished.rglob("*.tmp")]


def test_params_file_outside_cwd(finished, tmp_path):
    other = tmp_path / "elsewhere.yaml"
    data = yaml.safe_load((finished / "params.yaml").read_text())
    data["evaluate"]["threshold"] = 0.9
    other.write_text(yaml.safe_dump(data))
    proc = stage("evaluate", "--params", str(other), cwd=finished)
    assert proc.returncode == 0, proc.stderr
